package acme

import (
	"testing"

	"nixpki/internal/config"
	"nixpki/internal/store"
)

// FuzzParseJWS feeds request bodies to the JWS envelope and header parser: it must
// never panic, and whatever it accepts has an allowed algorithm, a url and exactly
// one of jwk and kid. Seeds: testdata/fuzz/FuzzParseJWS.
func FuzzParseJWS(f *testing.F) {
	f.Add([]byte(`{"protected":"eyJhbGciOiJFUzI1NiJ9","payload":"","signature":"AA"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		sig, h, err := parseJWS(body)
		if err != nil {
			return
		}
		if !allowedAlg(h.Alg) || h.URL == "" || (h.KID != "") == (len(h.JWK) > 0) || len(sig.Signatures) != 1 {
			t.Fatalf("accepted a bad header: %+v", h)
		}
		if len(h.JWK) > 0 {
			headerKey(sig) // must not panic on whatever key the header holds
		}
	})
}

// FuzzCheckCSR feeds DER to the finalize CSR checks: no panics, and an accepted CSR
// names exactly the order's identifiers. Seeds: testdata/fuzz/FuzzCheckCSR.
func FuzzCheckCSR(f *testing.F) {
	der, _ := csr(f, "app.test", "127.0.0.1")
	f.Add(der)
	prov, err := compileProvisioner(config.ACMEProvisioner{Name: "acme"}, config.Defaults().Policy)
	if err != nil {
		f.Fatal(err)
	}
	idents := []store.ACMEIdentifier{{Type: "dns", Value: "app.test"}, {Type: "ip", Value: "127.0.0.1"}}
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := checkCSR(der, idents, prov)
		if err != nil {
			return
		}
		if len(c.DNSNames)+len(c.IPAddresses) != 2 && c.Subject.CommonName == "" {
			t.Fatalf("accepted a CSR with names %v %v", c.DNSNames, c.IPAddresses)
		}
	})
}
