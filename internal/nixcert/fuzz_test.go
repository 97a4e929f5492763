package nixcert

import (
	"bytes"
	"crypto/x509"
	"testing"

	"nixpki/internal/x509util"
)

// FuzzParseConstraints: the extension parser never panics, accepts only what it
// would write itself (DER is canonical), and what it accepts is valid.
func FuzzParseConstraints(f *testing.F) {
	for _, c := range []Constraints{
		testConstraints(),
		{KeyName: "b", Subject: "b", Targets: []string{"*"}, Scope: Scope{ContentAddressedOnly: true}},
		{KeyName: "c-1", Subject: "c", Targets: []string{"x", "y[0-9]"}, Scope: Scope{ContentAddressedOnly: true, NamePatterns: []string{"app-*"}}},
	} {
		der, err := MarshalConstraints(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := ParseConstraints(der)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed constraints do not validate: %v", err)
		}
		again, err := MarshalConstraints(c)
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("accepted a non-canonical encoding:\n% x\nre-encodes as\n% x (%v)", der, again, err)
		}
		if s, err := ParseScope(c.Scope.String()); err != nil || s.String() != c.Scope.String() {
			t.Fatalf("scope %q does not round-trip: %v", c.Scope, err)
		}
	})
}

// FuzzVerifyChain: PEM chains of any shape never panic the parser, the profile
// checks or the verifier, and nothing but the real leaf verifies.
func FuzzVerifyChain(f *testing.F) {
	p := newTestPKI(f)
	leaf := p.leaf(f, testConstraints(), edKey(f).Public(), nil)
	f.Add(x509util.ChainPEM(leaf, p.nix))
	f.Add(x509util.ChainPEM(leaf))
	f.Add(x509util.ChainPEM(p.nix, leaf))
	f.Add(x509util.ChainPEM(p.tls))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	v := NewVerifier(p.root)
	if err := v.AddIntermediate(p.nix); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseChainPEM(data)
		if err != nil {
			return
		}
		for _, c := range certs {
			ParseCertificate(c)
		}
		id, err := v.Verify(certs[0], certs[1:], p.now)
		if err == nil && !id.Cert.Equal(leaf) {
			t.Fatalf("verified a certificate the test PKI never issued: %x", certs[0].Raw)
		}
		v.IsRevoked(certs[0])
		v.AddCRL(certs[0].Raw)
	})
}

// FuzzAddCRL: CRL input never panics and only validly signed CRLs are taken.
func FuzzAddCRL(f *testing.F) {
	p := newTestPKI(f)
	f.Add(p.crl(f, 1, p.now, p.nix, p.nixKey, nextSerial()))
	f.Add(p.crl(f, 2, p.now, p.tls, p.tlsKey))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		v := NewVerifier(p.root)
		if err := v.AddIntermediate(p.nix); err != nil {
			t.Fatal(err)
		}
		ok, err := v.AddCRL(der)
		if ok {
			l, perr := x509.ParseRevocationList(der)
			if err != nil || perr != nil || l.CheckSignatureFrom(p.nix) != nil {
				t.Fatalf("accepted a CRL not signed by the Nix intermediate: %v %v", err, perr)
			}
		}
	})
}
