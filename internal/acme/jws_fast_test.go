package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// verifyFlat (the kid fast path) must accept exactly what go-jose accepts for each
// allowed algorithm, and refuse tampering, another key and a mismatched algorithm.
func TestVerifyFlatMatchesGoJose(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		alg jose.SignatureAlgorithm
		key crypto.Signer
	}{{jose.ES256, p256}, {jose.ES384, p384}, {jose.RS256, rk}, {jose.EdDSA, ek}}
	for _, c := range cases {
		for _, payload := range []string{"", `{"status":"deactivated"}`} {
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: c.alg, Key: c.key}, &jose.SignerOptions{
				ExtraHeaders: map[jose.HeaderKey]any{"kid": "https://ca/acme/a/account/x", "url": "https://ca/u", "nonce": "n"},
			})
			if err != nil {
				t.Fatal(err)
			}
			js, err := signer.Sign([]byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			body := js.FullSerialize()
			f, h, err := parseEnvelope([]byte(body))
			if err != nil {
				t.Fatalf("%s: %v", c.alg, err)
			}
			got, ok := verifyFlat(f, h, c.key.Public())
			if !ok || string(got) != payload {
				t.Fatalf("%s: a good signature does not verify (%v, %q)", c.alg, ok, got)
			}
			if _, ok := verifyFlat(f, h, other.Public()); ok {
				t.Fatalf("%s: verified with another key", c.alg)
			}
			// Tampered payload.
			t2 := *f
			pl := b64([]byte(payload + " "))
			t2.Payload = &pl
			if _, ok := verifyFlat(&t2, h, c.key.Public()); ok {
				t.Fatalf("%s: verified a changed payload", c.alg)
			}
			// The header's alg must match the key.
			h2 := *h
			h2.Alg = map[bool]string{true: "RS256", false: "ES256"}[strings.HasPrefix(string(c.alg), "ES")]
			if _, ok := verifyFlat(f, &h2, c.key.Public()); ok {
				t.Fatalf("%s: verified under alg %s", c.alg, h2.Alg)
			}
			h3 := *h
			h3.Crit = []byte(`["b64"]`)
			if _, ok := verifyFlat(f, &h3, c.key.Public()); ok {
				t.Fatalf("%s: accepted a crit header", c.alg)
			}
			// go-jose agrees on the good one.
			sig, err := parseJose([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sig.Verify(c.key.Public()); err != nil {
				t.Fatalf("%s: go-jose: %v", c.alg, err)
			}
		}
	}
}
