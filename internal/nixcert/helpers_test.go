package nixcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"nixpki/internal/x509util"
)

// testPKI is a root with a Nix-signing and a TLS intermediate, made directly with
// crypto/x509 so tests can bend every rule.
type testPKI struct {
	root, nix, tls          *x509.Certificate
	rootKey, nixKey, tlsKey crypto.Signer
	now                     time.Time
}

var serialCounter int64 = 0x4000

func nextSerial() *big.Int {
	serialCounter++
	return big.NewInt(serialCounter)
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func caTemplate(cn string, now time.Time, unknownEKU []asn1.ObjectIdentifier) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    unknownEKU,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{now: time.Now().UTC().Truncate(time.Second)}
	rk, nk, tk := ecKey(t), ecKey(t), ecKey(t)
	p.rootKey, p.nixKey, p.tlsKey = rk, nk, tk
	rt := caTemplate("Test Root CA", p.now, nil)
	p.root = mustCert(t, rt, rt, rk.Public(), rk)
	nt := caTemplate("Test Nix Signing Intermediate CA", p.now, []asn1.ObjectIdentifier{x509util.OIDNixStoreSigning})
	nt.MaxPathLenZero = true
	p.nix = mustCert(t, nt, p.root, nk.Public(), rk)
	tt := caTemplate("Test TLS Intermediate CA", p.now, nil)
	tt.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	p.tls = mustCert(t, tt, p.root, tk.Public(), rk)
	return p
}

func testConstraints() Constraints {
	return Constraints{KeyName: "alice-1", Subject: "alice", Targets: []string{"lab-*", "build1"}, Scope: Scope{}}
}

// leaf issues a Nix leaf for pub from the Nix intermediate; mutate may bend the
// template first.
func (p *testPKI) leaf(t testing.TB, c Constraints, pub crypto.PublicKey, mutate func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl, err := Template(c)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = nextSerial()
	tmpl.NotBefore = p.now.Add(-time.Minute)
	tmpl.NotAfter = p.now.Add(7 * 24 * time.Hour)
	parent, key := p.nix, p.nixKey
	if mutate != nil {
		mutate(tmpl)
	}
	return mustCert(t, tmpl, parent, pub, key)
}

func edKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// crl signs a CRL by the Nix intermediate revoking serials.
func (p *testPKI) crl(t testing.TB, number int64, thisUpdate time.Time, issuer *x509.Certificate, key crypto.Signer, serials ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(7 * 24 * time.Hour)}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate, ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
