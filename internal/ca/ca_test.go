package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/x509util"
)

func testConfig() config.Config {
	c := config.Defaults()
	c.Name = "Test"
	c.DNSNames = []string{"ca.internal"}
	c.IPAddresses = []string{"127.0.0.1"}
	c.ExternalURL = "http://127.0.0.1:1"
	return c
}

// newCA initialises a CA in a temp dir (after mutating the config) and opens it.
func newCA(t *testing.T, mutate func(*config.Config)) *CA {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := Init(context.Background(), InitOptions{Dir: dir, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(context.Background(), dir, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func leafKeyF(f *testing.F) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

func leafKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func verifyChain(t *testing.T, c *CA, iss *Issued, eku x509.ExtKeyUsage) {
	t.Helper()
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(c.Root)
	inter.AddCert(iss.Chain[1])
	if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
		t.Fatalf("chain does not verify: %v", err)
	}
}

func TestInitLayoutAndKeysEncrypted(t *testing.T) {
	for _, kt := range keys.Types {
		t.Run(string(kt), func(t *testing.T) {
			c := newCA(t, func(cfg *config.Config) { cfg.KeyType = string(kt) })
			if got := keys.TypeOf(c.Root.PublicKey); got != kt {
				t.Fatalf("root key type %s, want %s", got, kt)
			}
			for _, f := range []string{"secrets/root.key", "secrets/tls-intermediate.key", "secrets/nix-intermediate.key", "secrets/password"} {
				p := filepath.Join(c.Dir, f)
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
				}
				if strings.HasSuffix(f, ".key") {
					data, _ := os.ReadFile(p)
					if !bytes.HasPrefix(data, []byte("-----BEGIN ENCRYPTED PRIVATE"+" KEY-----")) {
						t.Errorf("%s is not an encrypted PKCS#8 PEM", f)
					}
				}
			}
			if c.Root.NotAfter.Sub(c.Root.NotBefore) < 10*365*24*time.Hour {
				t.Errorf("root valid for %s, want 10 years", c.Root.NotAfter.Sub(c.Root.NotBefore))
			}
			iss, err := c.IssueTLS(context.Background(), TLSRequest{Names: []string{"web.internal"}, PublicKey: leafKey(t).Public()})
			if err != nil {
				t.Fatal(err)
			}
			verifyChain(t, c, iss, x509.ExtKeyUsageServerAuth)
		})
	}
}

func TestIntermediatesCannotMintEachOthersKind(t *testing.T) {
	c := newCA(t, nil)
	// A TLS server certificate signed by the Nix intermediate must not verify for TLS.
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "web.internal"}, DNSNames: []string{"web.internal"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	iss, err := c.Sign(context.Background(), c.Nix, tmpl, leafKey(t).Public(), time.Hour, Meta{Requester: "t", Method: "test"})
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(c.Root)
	inter.AddCert(c.Nix.Cert)
	if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("a TLS certificate from the Nix intermediate verified for serverAuth")
	}
	if !hasEKU(c.Nix.Cert, x509util.OIDNixStoreSigning) || len(c.Nix.Cert.ExtKeyUsage) != 0 {
		t.Fatalf("Nix intermediate EKUs: %v %v", c.Nix.Cert.ExtKeyUsage, c.Nix.Cert.UnknownExtKeyUsage)
	}
	if hasEKU(c.TLS.Cert, x509util.OIDNixStoreSigning) {
		t.Fatal("TLS intermediate allows Nix store signing")
	}
}

func hasEKU(c *x509.Certificate, oid []int) bool {
	for _, u := range c.UnknownExtKeyUsage {
		if u.Equal(oid) {
			return true
		}
	}
	return false
}

func TestInitRefusesExistingAndLeavesNothingOnFailure(t *testing.T) {
	c := newCA(t, nil)
	_, err := Init(context.Background(), InitOptions{Dir: c.Dir, Config: testConfig()})
	if err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Fatalf("re-init: %v", err)
	}
	// A failing init (unreadable password file) leaves no directory behind.
	parent := t.TempDir()
	dir := filepath.Join(parent, "ca")
	pw := filepath.Join(parent, "pw")
	os.WriteFile(pw, []byte("secret"), 0o644)
	_, err = Init(context.Background(), InitOptions{Dir: dir, Config: testConfig(), PasswordFile: pw})
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("loose password file: %v", err)
	}
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if e.Name() != "pw" {
			t.Errorf("failed init left %s behind", e.Name())
		}
	}
	// Non-empty, uninitialised directories are refused too.
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "stray"), nil, 0o644)
	if _, err := Init(context.Background(), InitOptions{Dir: dir, Config: testConfig()}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("non-empty dir: %v", err)
	}
}

func TestOpenWrongPasswordAndLoosePermissions(t *testing.T) {
	c := newCA(t, nil)
	c.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("wrong\n"), 0o600)
	if _, err := Open(context.Background(), c.Dir, bad, log); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("wrong password: %v", err)
	}
	key := filepath.Join(c.Dir, "secrets/tls-intermediate.key")
	os.Chmod(key, 0o644)
	_, err := Open(context.Background(), c.Dir, "", log)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+key) {
		t.Fatalf("loose key: %v", err)
	}
}

func TestPolicy(t *testing.T) {
	c := newCA(t, func(cfg *config.Config) {
		cfg.PermittedDNS = []string{"internal"}
		cfg.PermittedIP = []string{"100.64.0.0/10", "127.0.0.0/8"}
		cfg.Policy.MaxValidity = config.Duration(48 * time.Hour)
		cfg.Policy.DefaultValidity = config.Duration(24 * time.Hour)
	})
	ctx := context.Background()
	pub := leafKey(t).Public()
	for _, tc := range []struct {
		names []string
		valid time.Duration
		want  string // substring of the error; "" = success
	}{
		{[]string{"web.internal", "100.64.0.3"}, 0, ""},
		{[]string{"WEB.Internal."}, 0, ""},
		{[]string{"[::1]"}, 0, "outside the CA's name constraints"},
		{[]string{"example.com"}, 0, "example.com is outside the CA's name constraints"},
		{[]string{"100.128.0.1"}, 0, "100.128.0.1 is outside"},
		{[]string{"*.web.internal"}, 0, "wildcard"},
		{[]string{"bad_name!.internal"}, 0, "not allowed in a DNS name"},
		{[]string{"-x.internal"}, 0, "must not start or end"},
		{[]string{""}, 0, "no subject alternative names"},
		{[]string{"web.internal"}, 72 * time.Hour, "exceeds policy.max_validity"},
	} {
		iss, err := c.IssueTLS(ctx, TLSRequest{Names: tc.names, PublicKey: pub, Validity: tc.valid})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.names, err)
				continue
			}
			if got := iss.Cert.NotAfter.Sub(iss.Cert.NotBefore); got != 24*time.Hour+keys.Backdate {
				t.Errorf("default validity gave %s", got)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want error containing %q", tc.names, err, tc.want)
		}
	}
	// Nothing was recorded for refused requests: only the two good leaves (+server none).
	certs, _ := c.DB.ListCerts(ctx, storeFilterTLS())
	if len(certs) != 2 {
		t.Errorf("recorded %d TLS certificates, want 2", len(certs))
	}
}

func TestValidityClampedToIssuer(t *testing.T) {
	c := newCA(t, func(cfg *config.Config) { cfg.Policy.MaxValidity = 0 })
	iss, err := c.IssueTLS(context.Background(), TLSRequest{Names: []string{"a.internal"}, PublicKey: leafKey(t).Public(), Validity: 20 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !iss.Cert.NotAfter.Equal(c.TLS.Cert.NotAfter) {
		t.Fatalf("leaf notAfter %s, issuer %s", iss.Cert.NotAfter, c.TLS.Cert.NotAfter)
	}
	if len(iss.Notes) == 0 || !strings.Contains(iss.Notes[0], "clamped") {
		t.Fatalf("no clamp note: %v", iss.Notes)
	}
	if d := time.Since(iss.Cert.NotBefore); d > keys.Backdate+5*time.Second {
		t.Fatalf("backdated by %s", d)
	}
}

func TestNewSerial(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		s, _ := newSerial()
		if s.BitLen() < 64 || seen[s.String()] {
			t.Fatalf("weak or repeated serial %x", s)
		}
		seen[s.String()] = true
	}
}

func TestRevocationCRLAndOCSP(t *testing.T) {
	c := newCA(t, nil)
	ctx := context.Background()
	good, _ := c.IssueTLS(ctx, TLSRequest{Names: []string{"good.internal"}, PublicKey: leafKey(t).Public()})
	bad, _ := c.IssueTLS(ctx, TLSRequest{Names: []string{"bad.internal"}, PublicKey: leafKey(t).Public()})

	crl1, err := c.CRL(ctx, IssuerTLS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(ctx, strings.ToUpper(x509util.SerialHex(bad.Cert.SerialNumber)), ocsp.KeyCompromise); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(ctx, x509util.SerialHex(bad.Cert.SerialNumber), 0); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := c.Revoke(ctx, "abcdef", 0); err == nil || !strings.Contains(err.Error(), "no certificate with serial abcdef") {
		t.Fatalf("unknown serial: %v", err)
	}
	crl2, err := c.CRL(ctx, IssuerTLS)
	if err != nil {
		t.Fatal(err)
	}
	rl1, _ := x509.ParseRevocationList(crl1)
	rl2, err := x509.ParseRevocationList(crl2)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl2.CheckSignatureFrom(c.TLS.Cert); err != nil {
		t.Fatal(err)
	}
	if rl2.Number.Cmp(rl1.Number) <= 0 {
		t.Fatalf("CRL number did not increase: %v then %v", rl1.Number, rl2.Number)
	}
	if len(rl2.RevokedCertificateEntries) != 1 || rl2.RevokedCertificateEntries[0].SerialNumber.Cmp(bad.Cert.SerialNumber) != 0 ||
		rl2.RevokedCertificateEntries[0].ReasonCode != ocsp.KeyCompromise {
		t.Fatalf("CRL entries: %+v", rl2.RevokedCertificateEntries)
	}
	// Cached while nothing changes.
	crl3, _ := c.CRL(ctx, IssuerTLS)
	if !bytes.Equal(crl2, crl3) {
		t.Error("CRL rebuilt without a change")
	}

	status := func(cert *x509.Certificate) int {
		req, err := ocsp.CreateRequest(cert, c.TLS.Cert, nil)
		if err != nil {
			t.Fatal(err)
		}
		der, err := c.OCSP(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ocsp.ParseResponseForCert(der, cert, c.TLS.Cert)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	if s := status(good.Cert); s != ocsp.Good {
		t.Errorf("good cert OCSP status %d", s)
	}
	if s := status(bad.Cert); s != ocsp.Revoked {
		t.Errorf("revoked cert OCSP status %d", s)
	}
	stranger := *good.Cert
	stranger.SerialNumber = big.NewInt(12345)
	if s := status(&stranger); s != ocsp.Unknown {
		t.Errorf("unknown serial OCSP status %d", s)
	}
	if der, _ := c.OCSP(ctx, []byte("garbage")); !bytes.Equal(der, ocsp.MalformedRequestErrorResponse) {
		t.Error("garbage OCSP request not answered malformedRequest")
	}
}

// TestConcurrentProcesses issues and revokes from two independent handles of the
// same data directory at once, as `serve` and a CLI command do.
func TestConcurrentProcesses(t *testing.T) {
	a := newCA(t, nil)
	b, err := Open(context.Background(), a.Dir, "", a.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	serials := make(chan string, 40)
	for i := 0; i < 20; i++ {
		for _, c := range []*CA{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				iss, err := c.IssueTLS(ctx, TLSRequest{Names: []string{"x.internal"}, PublicKey: leafKey(t).Public()})
				if err != nil {
					errs <- err
					return
				}
				serials <- x509util.SerialHex(iss.Cert.SerialNumber)
				if _, err := c.CRL(ctx, IssuerTLS); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	close(serials)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	for s := range serials {
		if n%2 == 0 {
			if _, err := b.Revoke(ctx, s, 0); err != nil {
				t.Error(err)
			}
		}
		n++
	}
	der, err := a.CRL(ctx, IssuerTLS)
	if err != nil {
		t.Fatal(err)
	}
	rl, _ := x509.ParseRevocationList(der)
	if len(rl.RevokedCertificateEntries) != 20 {
		t.Fatalf("CRL from the other handle lists %d revocations, want 20", len(rl.RevokedCertificateEntries))
	}
}

func TestTrustSnippetAndBundle(t *testing.T) {
	c := newCA(t, nil)
	s := NixOSTrustSnippet(c.Root)
	if !strings.Contains(s, "security.pki.certificates = [ ''\n-----BEGIN CERTIFICATE-----") {
		t.Fatalf("snippet:\n%s", s)
	}
	sys := filepath.Join(t.TempDir(), "sys.pem")
	other := newCA(t, nil)
	os.WriteFile(sys, x509util.ChainPEM(other.Root), 0o644)
	t.Setenv("SSL_CERT_FILE", sys)
	b, err := Bundle(c.Root, true)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := x509util.ParseCertsPEM(b)
	if err != nil || len(certs) != 2 || !certs[0].Equal(c.Root) || !certs[1].Equal(other.Root) {
		t.Fatalf("bundle: %d certs, %v", len(certs), err)
	}
	t.Setenv("SSL_CERT_FILE", filepath.Join(t.TempDir(), "missing"))
	if _, err := Bundle(c.Root, true); err == nil || !errors.Is(err, err) || !strings.Contains(err.Error(), "no system CA bundle") {
		t.Fatalf("missing system bundle: %v", err)
	}
}
