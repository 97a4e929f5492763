package signing

import (
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

const cacheNixosOrgKey = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="

func TestCacheNixosOrgKey(t *testing.T) {
	k, err := ParsePublicKey([]byte(cacheNixosOrgKey))
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "cache.nixos.org-1" || len(k.Key) != ed25519.PublicKeySize {
		t.Fatalf("parsed %q, %d-byte key", k.Name, len(k.Key))
	}
	if k.String() != cacheNixosOrgKey {
		t.Errorf("String() = %q", k.String())
	}
	// Tolerances: trailing newline, missing padding, embedded newline.
	for _, s := range []string{
		cacheNixosOrgKey + "\n",
		strings.TrimSuffix(cacheNixosOrgKey, "="),
		"cache.nixos.org-1:6NCHdD59X431o0gWypbMr\nAURkbJ16ZPMQFGspcDShjY=",
	} {
		k2, err := ParsePublicKey([]byte(s))
		if err != nil || !k2.Equal(k) {
			t.Errorf("ParsePublicKey(%q) = %v, %v", s, k2, err)
		}
	}
}

func TestGenerateSignVerify(t *testing.T) {
	sec, err := GenerateKey("test.example-1")
	if err != nil {
		t.Fatal(err)
	}
	text, err := sec.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(text), "test.example-1:") || strings.HasSuffix(string(text), "\n") {
		t.Errorf("MarshalText = %q", text)
	}
	sec2, err := ParseSecretKey(text)
	if err != nil || sec2.String() != sec.String() {
		t.Fatalf("ParseSecretKey(MarshalText) = %v, %v", sec2, err)
	}
	pub := sec.Public()
	pubText, _ := pub.MarshalText()
	pub2, err := ParsePublicKey(pubText)
	if err != nil || !pub2.Equal(pub) {
		t.Fatalf("ParsePublicKey(MarshalText) = %v, %v", pub2, err)
	}

	// The key is usable as a crypto.Signer.
	var _ crypto.Signer = sec.Key

	fp := "1;/nix/store/00000000000000000000000000000000-x;sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73;8;"
	sig := Sign(sec, fp)
	if !pub.Verify(fp, sig) {
		t.Fatal("signature does not verify")
	}
	sig2, err := ParseSignature(sig.String())
	if err != nil || !pub.Verify(fp, sig2) {
		t.Fatalf("ParseSignature(%q) = %v, %v", sig, sig2, err)
	}
	if pub.Verify(fp+"x", sig) {
		t.Error("signature verifies over another message")
	}
	renamed := sig
	renamed.Name = "other-1"
	if pub.Verify(fp, renamed) {
		t.Error("signature under another key name verifies")
	}
	other, _ := GenerateKey("test.example-1")
	if other.Public().Verify(fp, sig) {
		t.Error("signature verifies with another key of the same name")
	}
	var u PublicKey
	if err := u.UnmarshalText(pubText); err != nil || !u.Equal(pub) {
		t.Errorf("UnmarshalText: %v", err)
	}
}

func TestParseKeyErrors(t *testing.T) {
	sec, _ := GenerateKey("k")
	b64 := base64.StdEncoding.EncodeToString(sec.Key)
	// Swap the public half for another key's.
	other, _ := GenerateKey("k")
	mixed := append(append([]byte{}, sec.Key[:32]...), other.Key[32:]...)

	for _, c := range []struct {
		in, errPart string
	}{
		{"", "missing ':'"},
		{"k" + b64, "missing ':'"},
		{":" + b64, "empty"},
		{"a b:" + b64, "whitespace"},
		{"a\tb:" + b64, "whitespace"},
		{"k:", "empty key data"},
		{"k:" + b64[:40], "bytes, want 64"},
		{"k:" + base64.StdEncoding.EncodeToString(append(sec.Key, 1, 2, 3)), "bytes, want 64"},
		{"k:" + b64 + "x", "base64"},
		{"k:" + b64 + "=", "padding"},
		{"k:" + b64 + "\r", "base64"},
		{"k:" + base64.StdEncoding.EncodeToString(mixed), "does not match"},
		{"k:-" + b64[1:], "base64"},
	} {
		_, err := ParseSecretKey([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.errPart) {
			t.Errorf("ParseSecretKey(%q) error = %v, want one mentioning %q", c.in, err, c.errPart)
		}
	}
	if _, err := ParsePublicKey([]byte("k:" + b64)); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Errorf("ParsePublicKey(secret key) error = %v", err)
	}
	if _, err := ParseSignature("k:AAAA"); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("ParseSignature(short) error = %v", err)
	}
	for _, name := range []string{"", "a:b", "a b", "a\nb", "a\x00b", strings.Repeat("x", MaxKeyNameLen+1), "\xff"} {
		if err := ValidateKeyName(name); err == nil {
			t.Errorf("ValidateKeyName(%q) = nil", name)
		}
		if _, err := GenerateKey(name); err == nil {
			t.Errorf("GenerateKey(%q) succeeded", name)
		}
	}
}
