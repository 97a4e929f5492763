package enroll

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
	"golang.org/x/crypto/ssh"

	"nixpki/internal/config"
	"nixpki/internal/store"
)

// dbBytes is the size of the CA's database with its WAL.
func (e *env) dbBytes() int64 {
	var n int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(filepath.Join(e.ca.Dir, "nixpki.db") + suffix); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// A flood of unauthenticated enrollment requests with 60 KB fields is rate-limited
// (429 with Retry-After) and grows the database by a bounded amount.
func TestUnauthenticatedFloodIsCheap(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Nix.RatePerMinute, c.Nix.RateBurst = 60, 20 })
	big := strings.Repeat("A", 60<<10)
	body, _ := json.Marshal(EnrollJSON{CSR: []byte("x"), Subject: big, Token: TokenPrefix + big[:1000]})
	before := e.dbBytes()
	start := time.Now()
	const n = 1000
	var limited, other int
	var retryAfter string
	for range n {
		resp, err := e.client.HTTP.Post(e.srv.URL+"/nix/enroll", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			retryAfter = resp.Header.Get("Retry-After")
		} else {
			other++
		}
	}
	// The burst passes, then one request a second.
	allowed := 20 + int(time.Since(start).Seconds()) + 1
	if other > allowed || limited != n-other || retryAfter == "" {
		t.Errorf("%d of %d requests limited (Retry-After %q), %d answered", limited, n, retryAfter, other)
	}
	// Challenge creation shares the address's bucket: at most a refilled token passes.
	challenges := 0
	for range 3 {
		resp, err := e.client.HTTP.Post(e.srv.URL+"/nix/challenge", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			challenges++
		}
	}
	if challenges > 2 {
		t.Errorf("%d of 3 challenges created right after the flood, want them limited", challenges)
	}
	// 60 MB sent; what the attempts keep is bounded per row and the rows are few (the
	// growth is mostly SQLite's write-ahead log, a few pages per commit).
	const maxGrowth = 1 << 20
	if grown := e.dbBytes() - before; grown > maxGrowth {
		t.Errorf("the database grew by %d bytes for %d requests of %d bytes, want at most %d", grown, n, len(body), maxGrowth)
	}
	as, err := e.ca.DB.ListNixAttempts(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Subject != "" || a.KeyName != "" || len(a.Reason) > maxAttemptReason+3 {
			t.Fatalf("an unauthenticated attempt kept request fields: subject %d bytes, key name %q, reason %d bytes", len(a.Subject), a.KeyName, len(a.Reason))
		}
	}
}

// The attempt log is capped; what it drops is counted.
func TestAttemptLogBounded(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Nix.AttemptsMax = 50 })
	ctx := context.Background()
	const n = 300
	for range n {
		if _, err := e.client.EnrollToken(ctx, e.key("alice-1"), TokenPrefix+"unknown", EnrollOptions{}); err == nil {
			t.Fatal("an unknown token enrolled")
		}
	}
	as, _ := e.ca.DB.ListNixAttempts(ctx, 0)
	dropped, err := e.ca.DB.NixCounter(ctx, store.NixAttemptsDropped)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) > 50+pruneEvery || int(dropped)+len(as) != n {
		t.Errorf("%d attempts kept, %d counted as dropped, of %d", len(as), dropped, n)
	}
}

// After A was renewed to B, revoking A for key compromise revokes B and blocks the
// key for certify, token enrollment, SSH enrollment and renewal; revoking for
// another reason revokes the renewals descending from the certificate.
func TestKeyCompromiseStopsTheKey(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	alice := e.key("alice-1")
	tok, _, _ := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"x"}})
	a, err := e.client.EnrollToken(ctx, alice, tok, EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.client.Renew(ctx, alice, a.Chain, EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := e.auth.Revoke(ctx, a.Identity.Serial(), ocsp.KeyCompromise)
	if err != nil || len(revoked) != 2 {
		t.Fatalf("revoking A for key compromise: %d revoked, %v", len(revoked), err)
	}
	if rec, _ := e.ca.DB.GetNixCert(ctx, b.Identity.Serial()); rec.RevokedAt == nil {
		t.Fatal("B, renewed from A, is still valid after A was revoked for key compromise")
	}
	before := e.nixCerts()
	_, err = e.client.Renew(ctx, alice, b.Chain, EnrollOptions{})
	e.refused(err, "was revoked at", before)
	_, err = e.auth.Certify(ctx, CertifyRequest{PublicKey: []byte(alice.Public().String()), Subject: "alice", Targets: []string{"x"}})
	e.refused(err, "is blocked", before)
	tok2, _, _ := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"x"}})
	_, err = e.client.EnrollToken(ctx, alice, tok2, EnrollOptions{})
	e.refused(err, "is blocked", before)
	now := time.Now()
	good := sshCert(t, e.sshCA, []string{"alice"}, now.Add(-time.Hour), now.Add(time.Hour), nil)
	_, err = e.client.EnrollSSH(ctx, alice, good, EnrollOptions{})
	e.refused(err, "is blocked", before)
	// The token was given back: it still serves a new key.
	if _, err := e.client.EnrollToken(ctx, e.key("alice-2"), tok2, EnrollOptions{}); err != nil {
		t.Fatalf("a new key after the compromise: %v", err)
	}

	// Another reason: the renewal chain from the certificate down, not its ancestors.
	carol := e.key("carol-1")
	tok3, _, _ := e.auth.CreateToken(ctx, TokenRequest{Subject: "carol", Targets: []string{"x"}})
	c1, err := e.client.EnrollToken(ctx, carol, tok3, EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := e.client.Renew(ctx, carol, c1.Chain, EnrollOptions{})
	c3, err := e.client.Renew(ctx, carol, c2.Chain, EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err = e.auth.Revoke(ctx, c2.Identity.Serial(), ocsp.Superseded)
	if err != nil || len(revoked) != 2 || revoked[1].Serial != c3.Identity.Serial() {
		t.Fatalf("revoking C2 (superseded): %v %v", revoked, err)
	}
	if rec, _ := e.ca.DB.GetNixCert(ctx, c1.Identity.Serial()); rec.RevokedAt != nil {
		t.Error("C1, which C2 renewed, was revoked with it")
	}
}

// One person, one signer: an SSH key or key ID that enrolled for one subject cannot
// enroll for another, unless every mapping involved says multi_subject.
func TestOneSSHSignerOneSubject(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Nix.SSHPrincipals = append(c.Nix.SSHPrincipals,
			config.NixSSHPrincipal{Principal: "robot", Subject: "robot", Targets: []string{"*"}, MultiSubject: true},
			config.NixSSHPrincipal{Principal: "robot2", Subject: "robot2", Targets: []string{"*"}, MultiSubject: true})
	})
	ctx := context.Background()
	now := time.Now()
	both := sshCert(t, e.sshCA, []string{"ops", "ops-alt"}, now.Add(-time.Hour), now.Add(time.Hour), nil)
	if _, err := e.client.EnrollSSH(ctx, e.key("ops1"), both, EnrollOptions{Subject: "ops1"}); err != nil {
		t.Fatal(err)
	}
	before := e.nixCerts()
	_, err := e.client.EnrollSSH(ctx, e.key("ops2"), both, EnrollOptions{Subject: "ops2"})
	e.refused(err, `already enrolled for subject "ops1"`, before)
	// Another SSH key with the same key ID from the same CA is the same person.
	sameID := sshCert(t, e.sshCA, []string{"ops-alt"}, now.Add(-time.Hour), now.Add(time.Hour), nil)
	_, err = e.client.EnrollSSH(ctx, e.key("ops2"), sameID, EnrollOptions{})
	e.refused(err, `SSH key ID "alice@laptop"`, before)
	// The same signer enrolls again for its own subject.
	if _, err := e.client.EnrollSSH(ctx, e.key("ops1-2"), both, EnrollOptions{Subject: "ops1"}); err != nil {
		t.Fatalf("the same signer for its own subject: %v", err)
	}
	// Mappings that say multi_subject grant several subjects to one signer.
	robot := sshCert(t, e.sshCA, []string{"robot", "robot2"}, now.Add(-time.Hour), now.Add(time.Hour), func(c *ssh.Certificate) { c.KeyId = "robot" })
	if _, err := e.client.EnrollSSH(ctx, e.key("robot"), robot, EnrollOptions{Subject: "robot"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.EnrollSSH(ctx, e.key("robot2"), robot, EnrollOptions{Subject: "robot2"}); err != nil {
		t.Fatalf("a multi_subject signer's second subject: %v", err)
	}
}

// An SSH enrollment with a throwaway CA and a 40 KB key ID is answered and recorded
// in a bounded number of bytes.
func TestSSHEnrollmentWithHugeKeyIDIsBounded(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	throwaway, _ := ssh.NewSignerFromKey(edKey(t))
	now := time.Now()
	huge := strings.Repeat("k", 40<<10)
	signer := sshCert(t, throwaway, []string{strings.Repeat("p", 2<<10)}, now.Add(-time.Hour), now.Add(time.Hour), func(c *ssh.Certificate) { c.KeyId = huge })
	_, err := e.client.EnrollSSH(ctx, e.key("alice-1"), signer, EnrollOptions{Subject: strings.Repeat("s", 2<<10)})
	if err == nil || len(err.Error()) > 1024 {
		t.Fatalf("refusal of %d bytes: %.200v", len(err.Error()), err)
	}
	a := e.lastAttempt()
	if n := len(a.Subject) + len(a.SSHIdentity) + len(a.Reason) + len(a.KeyName); n > maxAttemptReason {
		t.Errorf("the attempt kept %d bytes of the request", n)
	}
}
