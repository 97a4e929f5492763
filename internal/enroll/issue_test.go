package enroll

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// clock is a settable clock safe to read from server goroutines.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time           { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Set(offset time.Duration) { c.offset.Store(int64(offset)) }
func (c *clock) Reset()                   { c.offset.Store(0) }

// env is a real CA (ca.Init in a temp dir) with an Authority behind an HTTPS
// server whose certificate the CA's TLS intermediate issued.
type env struct {
	t      *testing.T
	ca     *ca.CA
	auth   *Authority
	clock  *clock
	srv    *httptest.Server
	client *Client
	sshCA  ssh.Signer
}

// openCA initialises a CA in dir and opens it.
func openCA(t *testing.T, dir string) *ca.CA {
	t.Helper()
	cfg := config.Defaults()
	cfg.Name = "NixTest"
	cfg.DNSNames = []string{"ca.internal"}
	cfg.IPAddresses = []string{"127.0.0.1"}
	cfg.ExternalURL = "http://127.0.0.1:1"
	if _, err := ca.Init(context.Background(), ca.InitOptions{Dir: dir, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	c, err := ca.Open(context.Background(), dir, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newEnv(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	c := openCA(t, filepath.Join(t.TempDir(), "ca"))
	e := &env{t: t, ca: c, clock: &clock{}}
	c.Now = e.clock.Now

	// An SSH user CA, and a principal map.
	_, caKey, _ := edKeyPair(t)
	e.sshCA, _ = ssh.NewSignerFromKey(caKey)
	c.Config.Nix.SSHUserCAs = []string{string(ssh.MarshalAuthorizedKey(e.sshCA.PublicKey()))}
	c.Config.Nix.SSHPrincipals = []config.NixSSHPrincipal{
		{Principal: "alice", Subject: "alice", Targets: []string{"lab-*"}},
		{Principal: "ci-builder", Subject: "builder1", Targets: []string{"*"}, Scope: "content-addressed"},
		{Principal: "ops", Subject: "ops1", Targets: []string{"prod-*"}},
		{Principal: "ops-alt", Subject: "ops2", Targets: []string{"prod-*"}},
	}
	// Tests make many requests from one address; the rate limit has its own test.
	c.Config.Nix.RatePerMinute, c.Config.Nix.RateBurst = 600000, 100000
	if mutate != nil {
		mutate(&c.Config)
	}
	e.auth = NewAuthority(c)
	if err := e.auth.ConfigError(); err != nil {
		t.Fatal(err)
	}

	key := ecKey(t)
	iss, err := c.IssueTLS(context.Background(), ca.TLSRequest{Names: []string{"127.0.0.1"}, PublicKey: key.Public(), Meta: ca.Meta{Method: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(e.auth.Handler())
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{iss.Cert.Raw, iss.Chain[1].Raw}, PrivateKey: key}}}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	e.client = NewClient(e.srv.URL, c.Root)
	e.client.Now = e.clock.Now
	return e
}

func edKeyPair(t testing.TB) (signing.SecretKey, any, error) {
	k := edKey(t)
	return signing.SecretKey{Name: "x", Key: k}, k, nil
}

func (e *env) key(name string) signing.SecretKey {
	k, err := signing.GenerateKey(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

// nixCerts counts certificates the Nix intermediate has issued.
func (e *env) nixCerts() int {
	certs, err := e.ca.DB.ListCerts(context.Background(), store.CertFilter{Issuer: ca.IssuerNix, IncludeRevoked: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(certs)
}

// lastAttempt returns the newest recorded attempt.
func (e *env) lastAttempt() *store.NixAttempt {
	as, err := e.ca.DB.ListNixAttempts(context.Background(), 1)
	if err != nil || len(as) == 0 {
		e.t.Fatalf("no attempt recorded: %v", err)
	}
	return as[0]
}

// refused asserts that err names want, that nothing was issued, and that the refusal
// was recorded with its reason.
func (e *env) refused(err error, want string, before int) {
	e.t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		e.t.Fatalf("error %v, want one containing %q", err, want)
	}
	if n := e.nixCerts(); n != before {
		e.t.Errorf("%d certificates issued by a refused request", n-before)
	}
	a := e.lastAttempt()
	if a.Outcome != "refused" || !strings.Contains(a.Reason, want) || a.Serial != "" {
		e.t.Errorf("recorded attempt %+v, want a refusal with reason containing %q", a, want)
	}
}

func (e *env) verifier() *nixcert.Verifier {
	v := nixcert.NewVerifier(e.ca.Root)
	if err := v.AddIntermediate(e.ca.Nix.Cert); err != nil {
		e.t.Fatal(err)
	}
	return v
}

func TestCertifyOffline(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	alice := e.key("alice-1")
	scope, _ := nixcert.ParseScope("content-addressed,myapp-*")
	iss, err := e.auth.Certify(ctx, CertifyRequest{PublicKey: []byte(alice.Public().String()), Subject: "alice", Targets: []string{"lab-*"}, Scope: scope, Requester: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.verifier().Verify(iss.Cert, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !id.Key.Equal(alice.Public()) || id.Constraints.Subject != "alice" || id.Constraints.Scope.String() != "content-addressed,myapp-*" || !id.AllowsTarget("lab-7") {
		t.Errorf("identity %+v", id)
	}
	if d := iss.Cert.NotAfter.Sub(iss.Cert.NotBefore); d < 7*24*time.Hour || d > 7*24*time.Hour+2*time.Minute {
		t.Errorf("default validity %s, want 7 days", d)
	}
	rec, err := e.ca.DB.GetCert(ctx, id.Serial())
	if err != nil || rec.Issuer != ca.IssuerNix || rec.Method != "nix-cli" || rec.Requester != "alice" {
		t.Errorf("inventory record %+v %v", rec, err)
	}
	if a := e.lastAttempt(); a.Outcome != "issued" || a.Serial != id.Serial() || a.Method != MethodCLI || a.KeyFingerprint != alice.Public().String() {
		t.Errorf("attempt %+v", a)
	}
	// The same key may be certified again (e.g. for other targets).
	if _, err := e.auth.Certify(ctx, CertifyRequest{PublicKey: []byte(alice.Public().String()), Subject: "alice", Targets: []string{"lab-1"}}); err != nil {
		t.Errorf("same key again: %v", err)
	}

	// Bad input: each refused with a clear reason, nothing issued, attempt recorded.
	other := e.key("alice-1") // same name, another key
	for _, tc := range []struct {
		name string
		req  CertifyRequest
		want string
	}{
		{"malformed key", CertifyRequest{PublicKey: []byte("alice-1:not-base64!"), Subject: "alice", Targets: []string{"lab"}}, "malformed Nix public key"},
		{"short key", CertifyRequest{PublicKey: []byte("alice-1:AAAA"), Subject: "alice", Targets: []string{"lab"}}, "malformed Nix public key"},
		{"secret key given", CertifyRequest{PublicKey: []byte(alice.String()), Subject: "alice", Targets: []string{"lab"}}, "malformed Nix public key"},
		{"key name mismatch", CertifyRequest{PublicKey: []byte(e.key("bob-1").Public().String()), Subject: "alice", Targets: []string{"lab"}}, `key name "bob-1" does not match subject "alice"`},
		{"prefix is not enough", CertifyRequest{PublicKey: []byte(e.key("alicex").Public().String()), Subject: "alice", Targets: []string{"lab"}}, "does not match subject"},
		{"name taken", CertifyRequest{PublicKey: []byte(other.Public().String()), Subject: "alice", Targets: []string{"lab"}}, "already certified for another key"},
		{"no targets", CertifyRequest{PublicKey: []byte(e.key("alice-2").Public().String()), Subject: "alice"}, "no targets"},
		{"bad target", CertifyRequest{PublicKey: []byte(e.key("alice-2").Public().String()), Subject: "alice", Targets: []string{"a b"}}, "contains ' '"},
		{"bad subject", CertifyRequest{PublicKey: []byte(e.key("alice-2").Public().String()), Subject: "-alice", Targets: []string{"x"}}, "must start with a letter"},
		{"too long", CertifyRequest{PublicKey: []byte(e.key("alice-2").Public().String()), Subject: "alice", Targets: []string{"x"}, Validity: 31 * 24 * time.Hour}, "exceeds nix.max_validity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.nixCerts()
			_, err := e.auth.Certify(ctx, tc.req)
			e.t = t
			e.refused(err, tc.want, before)
		})
	}
	e.t = t
}

func TestTokenEnrollment(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	alice := e.key("alice-1")
	scope, _ := nixcert.ParseScope("content-addressed")
	tok, rec, err := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"lab-*"}, Scope: scope, Validity: 48 * time.Hour, CreatedBy: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || rec.ExpiresAt.Sub(rec.CreatedAt) != 15*time.Minute {
		t.Fatalf("token %q, record %+v", tok, rec)
	}
	// Only the hash is stored.
	toks, _ := e.ca.DB.ListNixTokens(ctx)
	if len(toks) != 1 || bytes.Contains(toks[0].Hash, []byte(tok)) || len(toks[0].Hash) != 32 {
		t.Fatalf("stored tokens %+v", toks)
	}
	got, err := e.client.EnrollToken(ctx, alice, tok, EnrollOptions{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	id := got.Identity
	if !id.Key.Equal(alice.Public()) || id.Constraints.Scope.String() != "content-addressed" || !id.AllowsTarget("lab-1") {
		t.Errorf("identity %+v", id)
	}
	if d := id.Cert.NotAfter.Sub(id.Cert.NotBefore); d > 48*time.Hour+2*time.Minute || d < 48*time.Hour {
		t.Errorf("validity %s, the token grants 48h", d)
	}
	if a := e.lastAttempt(); a.Outcome != "issued" || a.TokenID != rec.ID || a.Method != MethodToken || a.Subject != "alice" || !strings.HasPrefix(a.Remote, "127.0.0.1:") {
		t.Errorf("attempt %+v", a)
	}
	toks, _ = e.ca.DB.ListNixTokens(ctx)
	if toks[0].UsedAt == nil || toks[0].UsedSerial != id.Serial() {
		t.Errorf("token after use %+v", toks[0])
	}

	// Bad input.
	before := e.nixCerts()
	_, err = e.client.EnrollToken(ctx, e.key("alice-2"), tok, EnrollOptions{})
	e.refused(err, "was already used", before)

	expiring, _, _ := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"x"}, TTL: time.Minute})
	e.clock.Set(2 * time.Minute)
	_, err = e.client.EnrollToken(ctx, e.key("alice-2"), expiring, EnrollOptions{})
	e.refused(err, "expired at", before)
	e.clock.Reset()

	bobs, _, _ := e.auth.CreateToken(ctx, TokenRequest{Subject: "bob", Targets: []string{"x"}})
	_, err = e.client.EnrollToken(ctx, e.key("alice-2"), bobs, EnrollOptions{Subject: "alice"})
	e.refused(err, `the token was issued for another subject, "bob", not "alice"`, before)
	_, err = e.client.EnrollToken(ctx, e.key("alice-2"), bobs, EnrollOptions{})
	e.refused(err, `key name "alice-2" does not match subject "bob"`, before)
	// Those refusals did not spend bob's token.
	if _, err := e.client.EnrollToken(ctx, e.key("bob-1"), bobs, EnrollOptions{}); err != nil {
		t.Fatalf("bob's token after refusals: %v", err)
	}
	before = e.nixCerts()

	pinned, _, _ := e.auth.CreateToken(ctx, TokenRequest{Subject: "carol", KeyName: "carol-7", Targets: []string{"x"}})
	_, err = e.client.EnrollToken(ctx, e.key("carol-1"), pinned, EnrollOptions{})
	e.refused(err, `key name "carol-1" does not match the token, which is for key name "carol-7"`, before)

	_, err = e.client.EnrollToken(ctx, e.key("alice-2"), TokenPrefix+"AAAA", EnrollOptions{})
	e.refused(err, "unknown token", before)
	_, err = e.client.EnrollToken(ctx, e.key("alice-2"), "hunter2", EnrollOptions{})
	e.refused(err, "malformed token", before)

	long, _, _ := e.auth.CreateToken(ctx, TokenRequest{Subject: "dave", Targets: []string{"x"}, Validity: time.Hour})
	_, err = e.client.EnrollToken(ctx, e.key("dave-1"), long, EnrollOptions{Validity: 2 * time.Hour})
	e.refused(err, "exceeds the validity the token grants, 1h0m0s", before)
	if _, err := e.client.EnrollToken(ctx, e.key("dave-1"), long, EnrollOptions{Validity: 30 * time.Minute}); err != nil {
		t.Fatalf("a token given back after a refused validity: %v", err)
	}
	before = e.nixCerts()

	// A key name already certified for another key.
	fresh, _, _ := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"x"}})
	_, err = e.client.EnrollToken(ctx, e.key("alice-1"), fresh, EnrollOptions{})
	e.refused(err, `key name "alice-1" is already certified for another key`, before)

	// A malformed key in the CSR (ECDSA, not Ed25519), and a CSR whose signature is bad.
	ecCSR, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice-3"}}, ecKey(t))
	err = e.postEnroll(EnrollJSON{CSR: ecCSR, Token: fresh})
	e.refused(err, "malformed key: the CSR's key is *ecdsa.PublicKey", before)
	good, _ := CreateCSR(e.key("alice-3"))
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1
	err = e.postEnroll(EnrollJSON{CSR: bad, Token: fresh})
	e.refused(err, "signature does not verify", before)
	noName, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, edKey(t))
	err = e.postEnroll(EnrollJSON{CSR: noName, Token: fresh})
	e.refused(err, "common name must be the Nix key name", before)
	err = e.postEnroll(EnrollJSON{CSR: []byte("junk"), Token: fresh})
	e.refused(err, "malformed CSR", before)
}

// postEnroll posts a raw enrollment request and returns the refusal as an error.
func (e *env) postEnroll(req EnrollJSON) error {
	var out IssuedJSON
	return e.client.post(context.Background(), "/nix/enroll", req, &out)
}

func TestTokenSingleUseUnderConcurrency(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	tok, _, err := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var ok, used atomic.Int32
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.client.EnrollToken(ctx, e.key(fmt.Sprintf("alice-%d", 10+i)), tok, EnrollOptions{})
			switch {
			case err == nil:
				ok.Add(1)
			case strings.Contains(err.Error(), "already used"):
				used.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || used.Load() != 7 || e.nixCerts() != 1 {
		t.Fatalf("%d enrollments succeeded, %d saw the token used, %d certificates", ok.Load(), used.Load(), e.nixCerts())
	}
}

// sshCert makes an SSH user certificate for a fresh key, signed by signer.
func sshCert(t *testing.T, signer ssh.Signer, principals []string, from, to time.Time, mutate func(*ssh.Certificate)) ssh.Signer {
	t.Helper()
	k := edKey(t)
	user, _ := ssh.NewSignerFromKey(k)
	cert := &ssh.Certificate{
		Key: user.PublicKey(), Serial: 42, CertType: ssh.UserCert, KeyId: "alice@laptop",
		ValidPrincipals: principals, ValidAfter: uint64(from.Unix()), ValidBefore: uint64(to.Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if mutate != nil {
		mutate(cert)
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(cert, user)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestSSHEnrollment(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	now := time.Now()
	good := sshCert(t, e.sshCA, []string{"alice", "wheel"}, now.Add(-time.Hour), now.Add(time.Hour), nil)
	got, err := e.client.EnrollSSH(ctx, e.key("alice-1"), good, EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := got.Identity.Constraints; c.Subject != "alice" || c.Targets[0] != "lab-*" || !c.Scope.IsAny() {
		t.Errorf("constraints %+v", c)
	}
	if a := e.lastAttempt(); a.Outcome != "issued" || a.Method != MethodSSH || !strings.Contains(a.SSHIdentity, `key ID "alice@laptop" serial 42`) {
		t.Errorf("attempt %+v", a)
	}
	// A builder principal maps to a content-addressed-only scope.
	builder := sshCert(t, e.sshCA, []string{"ci-builder"}, now.Add(-time.Hour), now.Add(time.Hour), func(c *ssh.Certificate) { c.KeyId = "ci" })
	got, err = e.client.EnrollSSH(ctx, e.key("builder1-2"), builder, EnrollOptions{Subject: "builder1"})
	if err != nil || !got.Identity.Constraints.Scope.ContentAddressedOnly {
		t.Fatalf("builder: %v %+v", err, got)
	}
	before := e.nixCerts()

	_, otherCAKey, _ := edKeyPair(t)
	otherCA, _ := ssh.NewSignerFromKey(otherCAKey)
	for _, tc := range []struct {
		name   string
		signer ssh.Signer
		opts   EnrollOptions
		key    string
		want   string
	}{
		{"unknown CA", sshCert(t, otherCA, []string{"alice"}, now.Add(-time.Hour), now.Add(time.Hour), nil), EnrollOptions{}, "alice-2", "is signed by an unknown CA"},
		{"expired", sshCert(t, e.sshCA, []string{"alice"}, now.Add(-2*time.Hour), now.Add(-time.Hour), nil), EnrollOptions{}, "alice-2", "expired at"},
		{"not yet valid", sshCert(t, e.sshCA, []string{"alice"}, now.Add(time.Hour), now.Add(2*time.Hour), nil), EnrollOptions{}, "alice-2", "is not valid before"},
		{"no mapped principal", sshCert(t, e.sshCA, []string{"mallory", "wheel"}, now.Add(-time.Hour), now.Add(time.Hour), nil), EnrollOptions{}, "alice-2", "none of the SSH certificate's principals (mallory, wheel) is mapped to a Nix subject"},
		{"no principals", sshCert(t, e.sshCA, nil, now.Add(-time.Hour), now.Add(time.Hour), nil), EnrollOptions{}, "alice-2", "names no principals"},
		{"other subject", good, EnrollOptions{Subject: "bob"}, "alice-2", `is mapped to subject "bob"`},
		{"key name mismatch", good, EnrollOptions{}, "bob-1", `key name "bob-1" does not match subject "alice"`},
		{"ambiguous", sshCert(t, e.sshCA, []string{"ops", "ops-alt"}, now.Add(-time.Hour), now.Add(time.Hour), nil), EnrollOptions{}, "ops1-1", "map to several subjects (ops1, ops2)"},
		{"host certificate", sshCert(t, e.sshCA, []string{"alice"}, now.Add(-time.Hour), now.Add(time.Hour), func(c *ssh.Certificate) { c.CertType = ssh.HostCert }), EnrollOptions{}, "alice-2", "is a host certificate"},
		{"unknown critical option", sshCert(t, e.sshCA, []string{"alice"}, now.Add(-time.Hour), now.Add(time.Hour), func(c *ssh.Certificate) {
			c.CriticalOptions = map[string]string{"verify-required": ""}
		}), EnrollOptions{}, "alice-2", `unsupported critical option "verify-required"`},
		{"source-address", sshCert(t, e.sshCA, []string{"alice"}, now.Add(-time.Hour), now.Add(time.Hour), func(c *ssh.Certificate) {
			c.CriticalOptions = map[string]string{"source-address": "10.0.0.0/8"}
		}), EnrollOptions{}, "alice-2", "source-address 10.0.0.0/8 does not include the client address 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			_, err := e.client.EnrollSSH(ctx, e.key(tc.key), tc.signer, tc.opts)
			e.refused(err, tc.want, before)
		})
	}
	e.t = t
	// source-address that includes the client is honoured.
	local := sshCert(t, e.sshCA, []string{"alice"}, now.Add(-time.Hour), now.Add(time.Hour), func(c *ssh.Certificate) {
		c.CriticalOptions = map[string]string{"source-address": "10.0.0.0/8,127.0.0.1/32"}
	})
	if _, err := e.client.EnrollSSH(ctx, e.key("alice-3"), local, EnrollOptions{}); err != nil {
		t.Fatalf("source-address including the client: %v", err)
	}
	before = e.nixCerts()

	// Raw protocol abuse: a signature over another challenge, a replayed challenge,
	// a signature by another key, SHA-1 RSA.
	sec := e.key("alice-4")
	csr, _ := CreateCSR(sec)
	cert := good.PublicKey().(*ssh.Certificate)
	ch1, _ := e.client.Challenge(ctx)
	ch2, _ := e.client.Challenge(ctx)
	sig, _ := SignSSH(good, ch1, csr)
	req := EnrollJSON{CSR: csr, SSHCertificate: string(ssh.MarshalAuthorizedKey(cert)), SSHSignature: ssh.Marshal(sig), Challenge: ch2}
	e.refused(e.postEnroll(req), "the SSH signature does not verify", before)
	otherCSR, _ := CreateCSR(e.key("alice-5"))
	req.Challenge, req.CSR = ch1, otherCSR
	e.refused(e.postEnroll(req), "the SSH signature does not verify", before)
	req.CSR = csr
	if err := e.postEnroll(req); err != nil {
		t.Fatalf("correct raw request: %v", err)
	}
	before = e.nixCerts()
	e.refused(e.postEnroll(req), "unknown, used or expired challenge", before)
	ch3, _ := e.client.Challenge(ctx)
	e.clock.Set(10 * time.Minute)
	sig3, _ := SignSSH(good, ch3, csr)
	req.Challenge, req.SSHSignature = ch3, ssh.Marshal(sig3)
	e.clock.Set(6 * time.Minute)
	e.refused(e.postEnroll(req), "unknown, used or expired challenge", before)
	e.clock.Reset()
	req.SSHCertificate = "ssh-ed25519 AAAA"
	e.refused(e.postEnroll(req), "malformed SSH certificate", before)
	req.SSHCertificate = string(ssh.MarshalAuthorizedKey(good.PublicKey().(*ssh.Certificate).Key))
	e.refused(e.postEnroll(req), "is not an SSH certificate", before)
}

func TestSSHRSAAndConfig(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	rsaKey, err := rsaKeyForTest()
	if err != nil {
		t.Fatal(err)
	}
	user, _ := ssh.NewSignerFromKey(rsaKey)
	now := time.Now()
	cert := &ssh.Certificate{Key: user.PublicKey(), CertType: ssh.UserCert, KeyId: "rsa", ValidPrincipals: []string{"alice"},
		ValidAfter: uint64(now.Add(-time.Hour).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix())}
	if err := cert.SignCert(rand.Reader, e.sshCA); err != nil {
		t.Fatal(err)
	}
	cs, _ := ssh.NewCertSigner(cert, user)
	if _, err := e.client.EnrollSSH(ctx, e.key("alice-1"), cs, EnrollOptions{}); err != nil {
		t.Fatalf("RSA SSH key: %v", err)
	}
	// SHA-1 signatures are refused.
	csr, _ := CreateCSR(e.key("alice-1"))
	ch, _ := e.client.Challenge(ctx)
	sig, _ := cs.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, SSHSignedData(ch, csr), ssh.KeyAlgoRSA)
	before := e.nixCerts()
	e.refused(e.postEnroll(EnrollJSON{CSR: csr, SSHCertificate: string(ssh.MarshalAuthorizedKey(cert)), SSHSignature: ssh.Marshal(sig), Challenge: ch}), "SHA-1", before)

	// Configuration errors disable SSH enrollment with a clear message.
	for _, tc := range []struct {
		mutate func(*config.Nix)
		want   string
	}{
		{func(n *config.Nix) { n.SSHUserCAs = []string{"ssh-ed25519 garbage"} }, "nix.ssh_user_cas[0]"},
		{func(n *config.Nix) { n.SSHPrincipals[0].Subject = "" }, "subject is empty"},
		{func(n *config.Nix) { n.SSHPrincipals[0].Scope = "any,x" }, "cannot be combined"},
		{func(n *config.Nix) { n.SSHPrincipals[0].Targets = nil }, "no targets"},
		{func(n *config.Nix) { n.SSHUserCAs = nil }, "nix.ssh_user_cas is empty"},
	} {
		cfg := e.ca.Config.Nix
		cfg.SSHPrincipals = append([]config.NixSSHPrincipal(nil), cfg.SSHPrincipals...)
		tc.mutate(&cfg)
		if _, err := newSSHAuth(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config error %v, want %q", err, tc.want)
		}
	}
	broken := NewAuthority(e.ca)
	broken.sshErr = errors.New("broken")
	if _, err := broken.EnrollSSH(ctx, EnrollRequest{CSR: csr}); err == nil || !strings.Contains(err.Error(), "configuration error") {
		t.Errorf("EnrollSSH with a broken config: %v", err)
	}
}

func TestRenewal(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Nix.RenewMaxAge = config.Duration(10 * 24 * time.Hour) })
	ctx := context.Background()
	alice := e.key("alice-1")
	tok, _, _ := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"lab-*"}})
	first, err := e.client.EnrollToken(ctx, alice, tok, EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	authAt := first.Identity.Cert.NotBefore.Add(time.Minute)

	// Six days later the certificate is renewed; the renewal ends 10 days after the
	// token, not 7 days after renewing.
	e.clock.Set(6 * 24 * time.Hour)
	renewed, err := e.client.Renew(ctx, alice, first.Chain, EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if na := renewed.Identity.Cert.NotAfter; na.After(authAt.Add(10*24*time.Hour+time.Minute)) || na.Before(authAt.Add(10*24*time.Hour-2*time.Minute)) {
		t.Errorf("renewed certificate ends %s, want 10 days after %s", na, authAt)
	}
	if c := renewed.Identity.Constraints; c.Subject != "alice" || c.KeyName != "alice-1" || c.Targets[0] != "lab-*" {
		t.Errorf("renewed constraints %+v", c)
	}
	rec, _ := e.ca.DB.GetNixCert(ctx, renewed.Identity.Serial())
	if rec.RenewedFrom != first.Identity.Serial() || rec.AuthMethod != MethodToken || rec.AuthAt.Sub(authAt).Abs() > 2*time.Second {
		t.Errorf("renewal record %+v", rec)
	}
	if a := e.lastAttempt(); a.Method != MethodRenew || a.Outcome != "issued" {
		t.Errorf("attempt %+v", a)
	}
	before := e.nixCerts()
	// Asking for more than is left is refused.
	_, err = e.client.Renew(ctx, alice, renewed.Chain, EnrollOptions{Validity: 5 * 24 * time.Hour})
	e.refused(err, "exceeds the renewal limit", before)
	// Another key with the certificate is refused.
	_, err = e.client.Renew(ctx, e.key("alice-1"), renewed.Chain, EnrollOptions{})
	e.refused(err, "is not the certificate's key", before)

	// Past the limit, renewal is refused.
	e.clock.Set(9*24*time.Hour + 23*time.Hour + 59*time.Minute + 30*time.Second)
	_, err = e.client.Renew(ctx, alice, renewed.Chain, EnrollOptions{})
	e.refused(err, "older than nix.renew_max_age 240h0m0s", before)

	// An expired certificate cannot be renewed.
	e.clock.Set(8 * 24 * time.Hour)
	_, err = e.client.Renew(ctx, alice, first.Chain, EnrollOptions{})
	e.refused(err, "expired at", before)

	// Nor a revoked one.
	if _, err := e.auth.Revoke(ctx, renewed.Identity.Serial(), 1); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.Renew(ctx, alice, renewed.Chain, EnrollOptions{})
	e.refused(err, "was revoked at", before)

	// Nor a certificate from another CA.
	e.clock.Reset()
	other := newEnv(t, nil)
	foreign, err := other.auth.Certify(ctx, CertifyRequest{PublicKey: []byte(alice.Public().String()), Subject: "alice", Targets: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client.Renew(ctx, alice, foreign.Chain, EnrollOptions{})
	e.refused(err, "not signed by the root", before)
}

func TestRevocationAndCRL(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var serials []string
	for _, name := range []string{"alice-1", "alice-2", "bob-1"} {
		subject, _, _ := strings.Cut(name, "-")
		iss, err := e.auth.Certify(ctx, CertifyRequest{PublicKey: []byte(e.key(name).Public().String()), Subject: subject, Targets: []string{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, x509util.SerialHex(iss.Cert.SerialNumber))
	}
	revoked, err := e.auth.RevokeSubject(ctx, "alice", 1)
	if err != nil || len(revoked) != 2 {
		t.Fatalf("RevokeSubject: %v %d", err, len(revoked))
	}
	if _, err := e.auth.RevokeSubject(ctx, "alice", 1); err == nil || !strings.Contains(err.Error(), "no unrevoked") {
		t.Errorf("second RevokeSubject: %v", err)
	}
	tlsKey := ecKey(t)
	tlsCert, _ := e.ca.IssueTLS(ctx, ca.TLSRequest{Names: []string{"x.internal"}, PublicKey: tlsKey.Public()})
	if _, err := e.auth.Revoke(ctx, x509util.SerialHex(tlsCert.Cert.SerialNumber), 0); err == nil || !strings.Contains(err.Error(), "not the Nix one") {
		t.Errorf("revoking a TLS certificate as Nix: %v", err)
	}
	der, err := e.auth.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v := e.verifier()
	if ok, err := v.AddCRL(der); !ok || err != nil {
		t.Fatalf("AddCRL(the CA's CRL): %v %v", ok, err)
	}
	for i, s := range serials {
		rec, _ := e.ca.DB.GetCert(ctx, s)
		cert, _ := x509.ParseCertificate(rec.DER)
		_, err := v.Verify(cert, nil, time.Now())
		if want := i < 2; errors.Is(err, nixcert.ErrRevoked) != want {
			t.Errorf("certificate %d: %v", i, err)
		}
	}
	// A newer CRL after another revocation replaces it.
	if _, err := e.auth.Revoke(ctx, serials[2], 0); err != nil {
		t.Fatal(err)
	}
	der2, _ := e.auth.CRL(ctx)
	if ok, err := v.AddCRL(der2); !ok || err != nil {
		t.Fatalf("newer CRL: %v %v", ok, err)
	}
	if ok, _ := v.AddCRL(der); ok {
		t.Error("older CRL accepted after a newer one")
	}
}

// TestHandlerErrors checks the HTTP surface's answers to malformed requests.
func TestHandlerErrors(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		method, path, ctype, body string
		status                    int
		want                      string
	}{
		{"POST", "/nix/enroll", "application/json", `{`, 400, "malformed request"},
		{"POST", "/nix/enroll", "text/plain", `{}`, 415, "send Content-Type application/json"},
		{"POST", "/nix/enroll", "application/jsonx", `{}`, 415, `not "application/jsonx"`},
		{"POST", "/nix/enroll", "application/json-seq", `{}`, 415, "send Content-Type application/json"},
		{"POST", "/nix/enroll", "", `{}`, 415, "the request has none"},
		{"POST", "/nix/enroll", "application/json; charset=utf-8", `{"csr":"AA=="}`, 400, "no authentication"},
		{"POST", "/nix/enroll", "application/json", `{"csr":"AA=="}`, 400, "no authentication"},
		{"POST", "/nix/enroll", "application/json", `{"token":"x","ssh_certificate":"y"}`, 400, "not both"},
		{"POST", "/nix/enroll", "application/json", `{"token":"x","validity":"-1h"}`, 400, "positive duration"},
		{"POST", "/nix/enroll", "application/json", `{"token":"` + strings.Repeat("x", maxRequestBody) + `"}`, 413, "larger than"},
		{"POST", "/nix/renew", "application/json", `{"certificate":"x"}`, 400, "no PEM CERTIFICATE"},
		{"GET", "/nix/enroll", "", ``, 405, ""},
		{"GET", "/nix/other", "", ``, 404, "no such Nix endpoint"},
	} {
		req, _ := http.NewRequest(tc.method, e.srv.URL+tc.path, strings.NewReader(tc.body))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := e.client.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var p struct{ Detail string }
		json.Unmarshal(body, &p)
		if resp.StatusCode != tc.status || !strings.Contains(p.Detail, tc.want) {
			t.Errorf("%s %s %s: %d %s", tc.method, tc.path, tc.body[:min(len(tc.body), 40)], resp.StatusCode, body)
		}
	}
}

func rsaKeyForTest() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) }

// Issuances racing for one key name with different keys: exactly one certificate is
// live for the name afterwards, whichever wins; the others are refused by name.
func TestKeyNameUniqueUnderConcurrency(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	var ok, taken atomic.Int32
	for range n {
		k := e.key("alice-1")
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.auth.Certify(ctx, CertifyRequest{PublicKey: []byte(k.Public().String()), Subject: "alice", Targets: []string{"lab"}})
			switch {
			case err == nil:
				ok.Add(1)
			case strings.Contains(err.Error(), `key name "alice-1" is already certified for another key`):
				taken.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	live, err := e.ca.DB.ListNixCerts(ctx, store.NixCertFilter{KeyName: "alice-1", LiveAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 1 || taken.Load() != n-1 || len(live) != 1 {
		t.Fatalf("%d certified, %d refused, %d live certificates for alice-1; want 1, %d, 1", ok.Load(), taken.Load(), len(live), n-1)
	}
	// A certificate signed but refused at the record is revoked, never live.
	all, err := e.ca.DB.ListCerts(ctx, store.CertFilter{Issuer: ca.IssuerNix, IncludeRevoked: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		if c.Serial != live[0].Serial && c.RevokedAt == nil {
			t.Errorf("certificate %s for a refused request is not revoked", c.Serial)
		}
	}
	t.Logf("%d refused before signing, %d signed then refused and revoked", n-len(all), len(all)-1)
}

// A token's validity bound holds for the renewals of what it enrolled: a renewal
// lasts no longer than the certificate it renews.
func TestRenewalKeepsTokenValidity(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Nix.RenewMaxAge = config.Duration(10 * 24 * time.Hour) })
	ctx := context.Background()
	alice := e.key("alice-1")
	tok, _, err := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"lab-*"}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.client.EnrollToken(ctx, alice, tok, EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Set(30 * time.Minute)
	renewed, err := e.client.Renew(ctx, alice, first.Chain, EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := renewed.Identity.Cert
	if life := c.NotAfter.Sub(c.NotBefore); life > time.Hour+keys.Backdate {
		t.Errorf("the renewal of a 1h token's certificate lasts %s", life)
	}
	before := e.nixCerts()
	_, err = e.client.Renew(ctx, alice, renewed.Chain, EnrollOptions{Validity: 2 * time.Hour})
	e.refused(err, "the validity of the certificate renewed, 1h0m0s", before)
}
