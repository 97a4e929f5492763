package nixcert

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"nixpki/internal/nix/signing"

	"nixpki/internal/x509util"
)

func TestScopeParseAndString(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		scope    Scope
	}{
		{"any", "any", Scope{}},
		{" any ", "any", Scope{}},
		{"content-addressed", "content-addressed", Scope{ContentAddressedOnly: true}},
		{"myapp-*,*-myapp-*", "myapp-*,*-myapp-*", Scope{NamePatterns: []string{"myapp-*", "*-myapp-*"}}},
		{"content-addressed, myapp-*", "content-addressed,myapp-*", Scope{ContentAddressedOnly: true, NamePatterns: []string{"myapp-*"}}},
		{"a,a", "a", Scope{NamePatterns: []string{"a"}}},
	} {
		s, err := ParseScope(tc.in)
		if err != nil {
			t.Fatalf("ParseScope(%q): %v", tc.in, err)
		}
		if s.String() != tc.want || s.ContentAddressedOnly != tc.scope.ContentAddressedOnly || strings.Join(s.NamePatterns, ",") != strings.Join(tc.scope.NamePatterns, ",") {
			t.Errorf("ParseScope(%q) = %+v (%q), want %+v (%q)", tc.in, s, s, tc.scope, tc.want)
		}
		again, err := ParseScope(s.String())
		if err != nil || again.String() != s.String() {
			t.Errorf("round trip of %q: %v %v", s, again, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty scope"},
		{"any,foo", "cannot be combined"},
		{"foo/bar", "contains '/'"},
		{"[a", "not a valid glob"},
		{"a b", "contains ' '"},
		{"x,,y", "empty store-path name pattern"},
	} {
		if _, err := ParseScope(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseScope(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
	if _, err := ParseScope("[a"); !errors.Is(err, path.ErrBadPattern) {
		t.Errorf("ParseScope of a bad glob: %v, want it to wrap path.ErrBadPattern", err)
	}
}

func TestAllowsTargetAndPath(t *testing.T) {
	id := &Identity{Constraints: Constraints{Targets: []string{"lab-*", "build1"}}}
	for name, want := range map[string]bool{"lab-1": true, "lab-": true, "build1": true, "build2": false, "prod-lab-1": false, "": false, "LAB-1": false} {
		if got := id.AllowsTarget(name); got != want {
			t.Errorf("AllowsTarget(%q) = %v", name, got)
		}
	}
	const h = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-"
	check := func(scope string, p string, caPath, want bool) {
		t.Helper()
		s, err := ParseScope(scope)
		if err != nil {
			t.Fatal(err)
		}
		id := &Identity{Constraints: Constraints{Scope: s}}
		if got := id.AllowsPath(p, caPath); got != want {
			t.Errorf("scope %q: AllowsPath(%q, ca=%v) = %v", scope, p, caPath, got)
		}
	}
	check("any", h+"sudo-1.9", false, true)
	check("content-addressed", h+"sudo-1.9", false, false)
	check("content-addressed", h+"sudo-1.9", true, true)
	check("myapp-*", h+"myapp-1.0", false, true)
	check("myapp-*", "0123456789abcdfghijklmnpqrsvwxyz-myapp-1.0", false, true)
	check("myapp-*", h+"sudo-1.9", false, false)
	check("*-myapp-*", h+"python3-myapp-1.0", false, true)
	check("content-addressed,myapp-*", h+"myapp-1.0", false, false)
	check("content-addressed,myapp-*", h+"myapp-1.0", true, true)
	check("myapp-*", "/nix/store/short", false, false)
	check("*", h+"a/../b", false, false)
}

func TestConstraintsRoundTrip(t *testing.T) {
	for _, c := range []Constraints{
		testConstraints(),
		{KeyName: "builder-x86.lab-2024", Subject: "builder-x86.lab", Targets: []string{"*"}, Scope: Scope{ContentAddressedOnly: true}},
		{KeyName: "bob", Subject: "bob", Targets: []string{"gate"}, Scope: Scope{NamePatterns: []string{"hello-*", "*-myapp-*"}}},
		{KeyName: "carol-ü", Subject: "carol", Targets: []string{"m[0-9]"}, Scope: Scope{ContentAddressedOnly: true, NamePatterns: []string{"x"}}},
	} {
		der, err := MarshalConstraints(c)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		got, err := ParseConstraints(der)
		if err != nil {
			t.Fatalf("%+v: ParseConstraints: %v", c, err)
		}
		again, _ := MarshalConstraints(got)
		if !bytes.Equal(der, again) || got.KeyName != c.KeyName || got.Subject != c.Subject || got.Scope.String() != c.Scope.String() || strings.Join(got.Targets, " ") != strings.Join(c.Targets, " ") {
			t.Errorf("round trip of %+v gave %+v", c, got)
		}
	}
	// A known encoding, as documented in docs/nix-certificates.md.
	der, _ := MarshalConstraints(Constraints{KeyName: "alice-1", Subject: "alice", Targets: []string{"lab-*"}, Scope: Scope{ContentAddressedOnly: true}})
	want := []byte{0x30, 0x1e, 0x0c, 0x07, 'a', 'l', 'i', 'c', 'e', '-', '1', 0x0c, 0x05, 'a', 'l', 'i', 'c', 'e',
		0x30, 0x07, 0x0c, 0x05, 'l', 'a', 'b', '-', '*', 0x30, 0x03, 0x01, 0x01, 0xff}
	if !bytes.Equal(der, want) {
		t.Errorf("encoding\n% x\nwant\n% x", der, want)
	}
}

func TestParseConstraintsRejects(t *testing.T) {
	good, _ := MarshalConstraints(testConstraints())
	str := func(tag byte, v string) []byte { return append([]byte{tag, byte(len(v))}, v...) }
	seq := func(parts ...[]byte) []byte {
		var body []byte
		for _, p := range parts {
			body = append(body, p...)
		}
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	u := func(v string) []byte { return str(0x0c, v) }
	for name, der := range map[string][]byte{
		"empty":            nil,
		"trailing":         append(append([]byte{}, good...), 0),
		"not a sequence":   {0x04, 0x00},
		"BER false bool":   seq(u("a"), u("a"), seq(u("x")), seq([]byte{0x01, 0x01, 0x00})),
		"bool not 0xff":    seq(u("a"), u("a"), seq(u("x")), seq([]byte{0x01, 0x01, 0x01})),
		"no targets":       seq(u("a"), u("a"), seq(), seq()),
		"empty patterns":   seq(u("a"), u("a"), seq(u("x")), seq(seq())),
		"patterns first":   seq(u("a"), u("a"), seq(u("x")), seq(seq(u("p")), []byte{0x01, 0x01, 0xff})),
		"bad key name":     seq(u(":"), u("a"), seq(u("x")), seq()),
		"bad subject":      seq(u("a"), u("-"), seq(u("x")), seq()),
		"printable string": seq(str(0x13, "a"), u("a"), seq(u("x")), seq()),
		"bad utf8":         seq(u("\xff"), u("a"), seq(u("x")), seq()),
		"long length":      append([]byte{0x30, 0x81, 0x0d}, seq(u("a"), u("a"), seq(u("x")), seq())[2:]...),
		"extra field":      seq(u("a"), u("a"), seq(u("x")), seq(), []byte{0x05, 0x00}),
		"bad target glob":  seq(u("a"), u("a"), seq(u("[")), seq()),
		"missing scope":    seq(u("a"), u("a"), seq(u("x"))),
	} {
		if c, err := ParseConstraints(der); err == nil {
			t.Errorf("%s: accepted as %+v", name, c)
		}
	}
	// The minimal valid encoding parses.
	if _, err := ParseConstraints(seq(u("a"), u("a"), seq(u("x")), seq())); err != nil {
		t.Errorf("minimal encoding: %v", err)
	}
}

func TestParseCertificateProfile(t *testing.T) {
	p := newTestPKI(t)
	k := edKey(t)
	id, err := ParseCertificate(p.leaf(t, testConstraints(), k.Public(), nil))
	if err != nil {
		t.Fatal(err)
	}
	sk := signing.SecretKey{Name: "alice-1", Key: k}
	if !id.Key.Equal(sk.Public()) {
		t.Errorf("identity key %v, want %v", id.Key, sk.Public())
	}
	if id.Serial() != x509util.SerialHex(id.Cert.SerialNumber) || id.Cert.Subject.CommonName != "alice" {
		t.Errorf("serial %s, CN %q", id.Serial(), id.Cert.Subject.CommonName)
	}
	cons := testConstraints()
	for _, tc := range []struct {
		name   string
		pub    any
		mutate func(*x509.Certificate)
		want   string
	}{
		{"ecdsa key", ecKey(t).Public(), nil, "not Ed25519"},
		{"no EKU", nil, func(c *x509.Certificate) { c.UnknownExtKeyUsage = nil }, "no Nix store-signing extended key usage"},
		{"any EKU", nil, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }, "anyExtendedKeyUsage"},
		{"CA", nil, func(c *x509.Certificate) { c.IsCA = true }, "CA certificate"},
		{"key usage", nil, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }, "digitalSignature"},
		{"no extension", nil, func(c *x509.Certificate) { c.ExtraExtensions = nil }, "no Nix constraints extension"},
		{"not critical", nil, func(c *x509.Certificate) { c.ExtraExtensions[0].Critical = false }, "not marked critical"},
		{"garbage", nil, func(c *x509.Certificate) { c.ExtraExtensions[0].Value = []byte{0x05, 0x00} }, "malformed"},
		{"CN differs", nil, func(c *x509.Certificate) { c.Subject.CommonName = "mallory" }, "differs"},
	} {
		pub := tc.pub
		if pub == nil {
			pub = k.Public()
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: panic %v", tc.name, r)
				}
			}()
			leaf := p.leaf(t, cons, pub, tc.mutate)
			if _, err := ParseCertificate(leaf); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: ParseCertificate = %v, want error containing %q", tc.name, err, tc.want)
			}
		}()
	}
}

func TestVerifyRules(t *testing.T) {
	p := newTestPKI(t)
	k := edKey(t)
	good := p.leaf(t, testConstraints(), k.Public(), nil)
	v := NewVerifier(p.root)

	// Without the intermediate, the chain cannot be built unless the caller gives it.
	if _, err := v.Verify(good, nil, p.now); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("no intermediate: %v", err)
	}
	id, err := v.Verify(good, []*x509.Certificate{p.nix}, p.now)
	if err != nil {
		t.Fatalf("with an extra intermediate: %v", err)
	}
	if len(id.Chain) != 3 || !id.Chain[1].Equal(p.nix) || !id.Chain[2].Equal(p.root) {
		t.Errorf("chain %v", id.Chain)
	}
	if err := v.AddIntermediate(p.tls); err == nil || !strings.Contains(err.Error(), "lacks the Nix store-signing") {
		t.Errorf("AddIntermediate(TLS intermediate) = %v", err)
	}
	if err := v.AddIntermediate(p.nix); err != nil {
		t.Fatal(err)
	}
	if err := v.AddIntermediate(p.nix); err != nil || len(v.Intermediates()) != 1 {
		t.Fatalf("adding twice: %v, %d", err, len(v.Intermediates()))
	}
	if id, err = v.Verify(good, nil, p.now); err != nil {
		t.Fatalf("good leaf: %v", err)
	}
	if id.Key.Name != "alice-1" || !id.AllowsTarget("lab-3") || id.AllowsTarget("prod") {
		t.Errorf("identity %+v", id)
	}

	// Another root's intermediate, and a leaf from it.
	other := newTestPKI(t)
	if err := v.AddIntermediate(other.nix); err == nil || !strings.Contains(err.Error(), "not signed by the root") {
		t.Errorf("AddIntermediate(foreign) = %v", err)
	}
	foreign := other.leaf(t, testConstraints(), k.Public(), nil)
	if _, err := v.Verify(foreign, []*x509.Certificate{other.nix}, p.now); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "not signed by the root") {
		t.Errorf("foreign leaf: %v", err)
	}

	// A leaf with the Nix profile issued by the TLS intermediate.
	tlsTmpl, _ := Template(testConstraints())
	tlsTmpl.SerialNumber, tlsTmpl.NotBefore, tlsTmpl.NotAfter = nextSerial(), p.now.Add(-time.Minute), p.now.Add(time.Hour)
	fromTLS := mustCert(t, tlsTmpl, p.tls, k.Public(), p.tlsKey)
	if _, err := v.Verify(fromTLS, []*x509.Certificate{p.tls}, p.now); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "lacks the Nix store-signing") {
		t.Errorf("leaf from the TLS intermediate: %v", err)
	}
	// A Nix leaf signed by the root directly.
	rootTmpl, _ := Template(testConstraints())
	rootTmpl.SerialNumber, rootTmpl.NotBefore, rootTmpl.NotAfter = nextSerial(), p.now.Add(-time.Minute), p.now.Add(time.Hour)
	fromRoot := mustCert(t, rootTmpl, p.root, k.Public(), p.rootKey)
	if _, err := v.Verify(fromRoot, nil, p.now); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "not a Nix-signing intermediate") {
		t.Errorf("leaf from the root: %v", err)
	}

	// Validity.
	if _, err := v.Verify(good, nil, good.NotAfter.Add(time.Second)); !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("expired: %v", err)
	}
	if _, err := v.Verify(good, nil, good.NotBefore.Add(-time.Second)); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("not yet valid: %v", err)
	}
	// An intermediate that is expired at `at` (leaf valid) fails the chain.
	shortInter := caTemplate("Short Nix CA", p.now, []asn1.ObjectIdentifier{x509util.OIDNixStoreSigning})
	shortInter.NotAfter = p.now.Add(time.Hour)
	sk := ecKey(t)
	short := mustCert(t, shortInter, p.root, sk.Public(), p.rootKey)
	lt, _ := Template(testConstraints())
	lt.SerialNumber, lt.NotBefore, lt.NotAfter = nextSerial(), p.now.Add(-time.Minute), p.now.Add(24*time.Hour)
	underShort := mustCert(t, lt, short, k.Public(), sk)
	if _, err := v.Verify(underShort, []*x509.Certificate{short}, p.now.Add(2*time.Hour)); !errors.Is(err, ErrUntrusted) {
		t.Errorf("leaf under an expired intermediate: %v", err)
	}
	if _, err := v.Verify(underShort, []*x509.Certificate{short}, p.now); err != nil {
		t.Errorf("leaf under a valid extra intermediate: %v", err)
	}

	// Profile failures come first and say so.
	noExt := p.leaf(t, testConstraints(), k.Public(), func(c *x509.Certificate) { c.ExtraExtensions = nil })
	if _, err := v.Verify(noExt, nil, p.now); !errors.Is(err, ErrProfile) {
		t.Errorf("no extension: %v", err)
	}
	if _, err := v.Verify(nil, nil, p.now); !errors.Is(err, ErrProfile) {
		t.Errorf("nil leaf: %v", err)
	}

	// Revocation through CRLs.
	v.RequireCRL = true
	if _, err := v.Verify(good, nil, p.now); !errors.Is(err, ErrNoCRL) {
		t.Errorf("RequireCRL without a CRL: %v", err)
	}
	v.RequireCRL = false
	if ok, err := v.AddCRL(p.crl(t, 1, p.now.Add(-time.Hour), other.nix, other.nixKey, good.SerialNumber)); ok || err == nil || !strings.Contains(err.Error(), "not signed by a known") {
		t.Errorf("foreign CRL: %v %v", ok, err)
	}
	if ok, err := v.AddCRL([]byte("junk")); ok || err == nil {
		t.Errorf("junk CRL: %v %v", ok, err)
	}
	// A CRL claiming the Nix intermediate's name but signed by another key.
	forged := p.crl(t, 9, p.now, &x509.Certificate{Subject: p.nix.Subject, RawSubject: p.nix.RawSubject, SubjectKeyId: p.nix.SubjectKeyId, KeyUsage: x509.KeyUsageCRLSign}, other.nixKey, good.SerialNumber)
	if ok, err := v.AddCRL(forged); ok || err == nil {
		t.Errorf("forged CRL: %v %v", ok, err)
	}
	if ok, err := v.AddCRL(p.crl(t, 2, p.now.Add(-time.Hour), p.nix, p.nixKey)); !ok || err != nil {
		t.Fatalf("empty CRL 2: %v %v", ok, err)
	}
	if tu, ok := v.CRLThisUpdate(p.nix); !ok || !tu.Equal(p.now.Add(-time.Hour)) {
		t.Errorf("CRLThisUpdate = %v %v", tu, ok)
	}
	if _, err := v.Verify(good, nil, p.now); err != nil {
		t.Errorf("after an empty CRL: %v", err)
	}
	v.RequireCRL = true
	if _, err := v.Verify(good, nil, p.now); err != nil {
		t.Errorf("RequireCRL with a CRL: %v", err)
	}
	revoking := p.crl(t, 3, p.now.Add(-time.Minute), p.nix, p.nixKey, good.SerialNumber)
	if ok, err := v.AddCRL(revoking); !ok || err != nil {
		t.Fatalf("CRL 3: %v %v", ok, err)
	}
	_, err = v.Verify(good, nil, p.now)
	if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "keyCompromise") || !strings.Contains(err.Error(), "number 3") || strings.Contains(err.Error(), "\n") {
		t.Errorf("revoked: %v", err)
	}
	// Revocation is retroactive: checking at a time before revocation still fails.
	if _, err := v.Verify(good, nil, good.NotBefore.Add(time.Second)); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked, checked before the revocation time: %v", err)
	}
	if !v.IsRevoked(good) {
		t.Error("IsRevoked = false")
	}
	if at, reason, ok := v.Revocation(good); !ok || reason != 1 || at.IsZero() {
		t.Errorf("Revocation = %v %v %v", at, reason, ok)
	}
	if v.IsRevoked(foreign) {
		t.Error("a foreign certificate with the same serial counts as revoked")
	}
	// Older or equal CRLs are not taken: a rollback cannot unrevoke.
	for _, der := range [][]byte{
		p.crl(t, 2, p.now, p.nix, p.nixKey),                   // lower number
		p.crl(t, 3, p.now, p.nix, p.nixKey),                   // same number
		p.crl(t, 4, p.now.Add(-2*time.Hour), p.nix, p.nixKey), // higher number, older thisUpdate
		revoking,
	} {
		if ok, err := v.AddCRL(der); ok || err != nil {
			t.Errorf("stale CRL accepted: %v %v", ok, err)
		}
	}
	if !v.IsRevoked(good) {
		t.Error("a stale CRL unrevoked the certificate")
	}
	// Other certificates stay good.
	k2 := edKey(t)
	bob := p.leaf(t, Constraints{KeyName: "bob-1", Subject: "bob", Targets: []string{"x"}}, k2.Public(), nil)
	if _, err := v.Verify(bob, nil, p.now); err != nil {
		t.Errorf("unrevoked leaf: %v", err)
	}
	// The caller's certificate is not modified by Verify.
	if len(good.UnhandledCriticalExtensions) != 1 {
		t.Errorf("UnhandledCriticalExtensions = %v", good.UnhandledCriticalExtensions)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	p := newTestPKI(t)
	v := NewVerifier(p.root)
	if err := v.AddIntermediate(p.nix); err != nil {
		t.Fatal(err)
	}
	leaf := p.leaf(t, testConstraints(), edKey(t).Public(), nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				if i == 0 {
					v.AddCRL(p.crl(t, int64(10+j), p.now.Add(time.Duration(j)*time.Second), p.nix, p.nixKey))
				}
				if _, err := v.Verify(leaf, nil, p.now); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestParseChainPEM(t *testing.T) {
	p := newTestPKI(t)
	leaf := p.leaf(t, testConstraints(), edKey(t).Public(), nil)
	data := append(x509util.ChainPEM(leaf, p.nix), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})...)
	certs, err := ParseChainPEM(data)
	if err != nil || len(certs) != 2 || !certs[0].Equal(leaf) {
		t.Fatalf("ParseChainPEM: %v %d", err, len(certs))
	}
	if _, err := ParseChainPEM([]byte("nothing")); err == nil {
		t.Error("no blocks accepted")
	}
	if _, err := ParseChainPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0}})); err == nil {
		t.Error("bad DER accepted")
	}
	var many []byte
	for range MaxChainCerts + 1 {
		many = append(many, x509util.ChainPEM(p.nix)...)
	}
	if _, err := ParseChainPEM(many); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("too many: %v", err)
	}
}
