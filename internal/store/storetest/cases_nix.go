package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"nixpki/internal/store"
)

// issuance is a Nix issuance of serial for key, bound to subject and the signers.
func issuance(serial, name, subject string, key byte, signers ...string) *store.NixIssuance {
	c := cert(serial)
	c.Issuer, c.Method = "nix", "nix-ssh"
	nc := nixCert(serial, name, key)
	nc.Subject = subject
	return &store.NixIssuance{Cert: c, Nix: nc, Signers: signers,
		Attempt: &store.NixAttempt{At: now(), Method: "ssh", Outcome: "issued", Subject: subject, KeyName: name, Serial: serial}}
}

// attempts counts the attempt log.
func attempts(t *testing.T, s Store) int {
	t.Helper()
	l, err := s.ListNixAttempts(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

// wantNothingOf checks that a refused issuance left no certificate behind.
func wantNothingOf(t *testing.T, s Store, serial string) {
	t.Helper()
	if _, err := s.GetCert(ctx, serial); !isNotFound(err) {
		t.Errorf("refused issuance %s stored its certificate: %v", serial, err)
	}
	if _, err := s.GetNixCert(ctx, serial); !isNotFound(err) {
		t.Errorf("refused issuance %s stored its details: %v", serial, err)
	}
}

func testIssueNixCert(t *testing.T, a, b Store) {
	spentToken(t, a)
	r := issuance("n1", "cache-1", "builder", 1, "SHA256:one")
	r.TokenID = "t1"
	if err := a.IssueNixCert(ctx, r); err != nil {
		t.Fatal(err)
	}
	if c, err := b.GetCert(ctx, "n1"); err != nil || c.Issuer != "nix" {
		t.Fatalf("issued certificate reads %+v, %v", c, err)
	}
	if nc, err := b.GetNixCert(ctx, "n1"); err != nil || nc.KeyName != "cache-1" {
		t.Fatalf("issued details read %+v, %v", nc, err)
	}
	if l, err := b.ListNixAttempts(ctx, 0); err != nil || len(l) != 1 || l[0].Serial != "n1" || l[0].ID <= 0 || r.Attempt.ID != l[0].ID {
		t.Fatalf("attempts after an issuance: %+v, %v (attempt ID %d)", l, err, r.Attempt.ID)
	}
	if toks, err := b.ListNixTokens(ctx); err != nil || len(toks) != 1 || toks[0].UsedSerial != "n1" {
		t.Fatalf("token after its issuance: %+v, %v", toks, err)
	}
	if err := b.ReleaseNixToken(ctx, "t1"); !isConflict(err) {
		t.Errorf("ReleaseNixToken of a token a certificate was issued with: %v, want ErrConflict", err)
	}

	// Each refusal stores nothing: no certificate, no details, no attempt.
	dup := issuance("n1", "cache-9", "builder", 9)
	if err := b.IssueNixCert(ctx, dup); !isConflict(err) {
		t.Errorf("IssueNixCert of an existing serial: %v, want ErrConflict", err)
	}
	var taken *store.KeyNameTakenError
	if err := b.IssueNixCert(ctx, issuance("n2", "cache-1", "builder", 2)); !isConflict(err) || !errors.As(err, &taken) || taken.Serial != "n1" {
		t.Errorf("IssueNixCert of a key name bound to another key: %v", err)
	}
	wantNothingOf(t, a, "n2")
	var bound *store.SignerBoundError
	if err := b.IssueNixCert(ctx, issuance("n3", "cache-3", "other", 3, "SHA256:one")); !errors.As(err, &bound) || bound.Subject != "builder" || bound.Signer != "SHA256:one" {
		t.Errorf("IssueNixCert with a signer bound to another subject: %v", err)
	}
	wantNothingOf(t, a, "n3")
	if n := attempts(t, a); n != 1 {
		t.Errorf("%d attempts after refused issuances, want the 1 issued (refusals are recorded by their caller)", n)
	}

	// A signer a multi-subject mapping enrolled may enroll for another subject of it.
	if err := a.IssueNixCert(ctx, multi(issuance("m1", "multi-1", "web", 11, "SHA256:multi"))); err != nil {
		t.Fatal(err)
	}
	if err := b.IssueNixCert(ctx, multi(issuance("m2", "multi-2", "db", 12, "SHA256:multi"))); err != nil {
		t.Errorf("a multi-subject signer refused for its second subject: %v", err)
	}
	if err := b.IssueNixCert(ctx, issuance("m3", "multi-3", "mail", 13, "SHA256:multi")); !errors.As(err, &bound) {
		t.Errorf("a multi-subject signer enrolled outside a multi-subject mapping: %v", err)
	}

	// A blocked key gets no certificate again; blocking twice keeps the first record.
	at := now().Add(-time.Minute)
	if err := a.BlockNixKey(ctx, []byte{1, 2, 3}, "n1", at); err != nil {
		t.Fatal(err)
	}
	if err := b.BlockNixKey(ctx, []byte{1, 2, 3}, "n9", now()); err != nil {
		t.Fatal(err)
	}
	var blocked *store.KeyBlockedError
	if err := b.IssueNixCert(ctx, issuance("n4", "cache-4", "builder", 1)); !errors.As(err, &blocked) || blocked.Serial != "n1" || !blocked.BlockedAt.Equal(at) {
		t.Errorf("IssueNixCert for a blocked key: %v, want *KeyBlockedError naming n1 at %s", err, at)
	}
	wantNothingOf(t, a, "n4")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.IssueNixCert(cctx, issuance("n5", "cache-5", "builder", 5)); !errors.Is(err, context.Canceled) {
		t.Errorf("IssueNixCert with a cancelled context: %v", err)
	}
	if err := a.BlockNixKey(cctx, []byte{5, 2, 3}, "n5", now()); !errors.Is(err, context.Canceled) {
		t.Errorf("BlockNixKey with a cancelled context: %v", err)
	}
	wantNothingOf(t, b, "n5")
	if err := b.IssueNixCert(ctx, issuance("n5", "cache-5", "builder", 5)); err != nil {
		t.Errorf("a key whose blocking was cancelled is refused: %v", err)
	}
}

// spentToken stores token t1 (hash1) and spends it.
func spentToken(t *testing.T, s Store) *store.NixToken {
	t.Helper()
	tok := &store.NixToken{ID: "t1", Hash: []byte("hash1"), Subject: "builder", CreatedAt: now(), ExpiresAt: now().Add(time.Hour)}
	if err := s.PutNixToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeNixToken(ctx, tok.Hash, now(), nil); err != nil {
		t.Fatal(err)
	}
	return tok
}

func multi(r *store.NixIssuance) *store.NixIssuance { r.MultiSubject = true; return r }

// Two servers issuing at once: one key name goes to one key, one SSH signer to one
// subject, and a key blocked on one server is refused on the other.
func testIssueNixCertRace(t *testing.T, a, b Store) {
	errs := race(a, b, 10, func(i int, s Store) error {
		return s.IssueNixCert(ctx, issuance(id("k", i), "cache-1", "builder", byte(i)))
	})
	var taken *store.KeyNameTakenError
	if ok := count(t, errs, func(err error) bool { return errors.As(err, &taken) }); ok != 1 {
		t.Fatalf("key name issued to %d keys", ok)
	}
	errs = race(a, b, 10, func(i int, s Store) error {
		return s.IssueNixCert(ctx, issuance(id("s", i), id("signer-", i), id("subject-", i), byte(20+i), "SHA256:shared"))
	})
	var bound *store.SignerBoundError
	if ok := count(t, errs, func(err error) bool { return errors.As(err, &bound) }); ok != 1 {
		t.Fatalf("one SSH signer enrolled for %d subjects", ok)
	}
	if n := attempts(t, b); n != 2 {
		t.Errorf("%d attempts recorded for 2 issuances", n)
	}
	errs = race(a, b, 10, func(i int, s Store) error {
		if i == 0 {
			return s.BlockNixKey(ctx, []byte{99, 2, 3}, "b0", now())
		}
		return s.IssueNixCert(ctx, issuance(id("b", i), "blocked-name", "builder", 99))
	})
	var blocked *store.KeyBlockedError
	count(t, errs, func(err error) bool { return errors.As(err, &blocked) })
	if err := a.IssueNixCert(ctx, issuance("b-after", "blocked-name", "builder", 99)); !errors.As(err, &blocked) {
		t.Errorf("issuance after the block committed: %v, want *KeyBlockedError", err)
	}
}

func testNixTokenSerial(t *testing.T, a, b Store) {
	tok := spentToken(t, a)
	// An issuance that failed gives its token back, on any server.
	if err := b.ReleaseNixToken(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ConsumeNixToken(ctx, tok.Hash, now(), nil); err != nil {
		t.Fatalf("a released token cannot be spent: %v", err)
	}
	if err := b.SetNixTokenSerial(ctx, "t1", "0abc"); err != nil {
		t.Fatal(err)
	}
	if toks, err := a.ListNixTokens(ctx); err != nil || len(toks) != 1 || toks[0].UsedSerial != "0abc" || toks[0].UsedAt == nil {
		t.Fatalf("token with its serial: %+v, %v", toks, err)
	}
	if err := a.ReleaseNixToken(ctx, "t1"); !isConflict(err) {
		t.Errorf("ReleaseNixToken after its certificate was recorded: %v, want ErrConflict", err)
	}
	if _, err := b.ConsumeNixToken(ctx, tok.Hash, now(), nil); !errors.Is(err, store.ErrTokenUsed) {
		t.Errorf("token spent on a certificate spent again: %v", err)
	}
}

func testPruneNixAttempts(t *testing.T, a, b Store) {
	old := now().Add(-48 * time.Hour)
	for i := 0; i < 30; i++ {
		at := now()
		if i < 4 {
			at = old
		}
		if err := a.AddNixAttempt(ctx, &store.NixAttempt{At: at, Method: "cli", Outcome: "refused", Subject: id("s", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.NixCounter(ctx, store.NixAttemptsDropped); err != nil || n != 0 {
		t.Fatalf("counter before any prune: %d, %v; want 0", n, err)
	}
	n, err := b.PruneNixAttempts(ctx, 100, now().Add(-time.Hour))
	if err != nil || n != 4 {
		t.Fatalf("pruning by age deleted %d, %v; want the 4 old ones", n, err)
	}
	// Two servers pruning at once delete each attempt once and count it once.
	var deleted [2]int64
	errs := race(a, b, 2, func(i int, s Store) error {
		var err error
		deleted[i], err = s.PruneNixAttempts(ctx, 10, old)
		return err
	})
	count(t, errs, func(error) bool { return false })
	if deleted[0]+deleted[1] != 16 {
		t.Errorf("concurrent prunes deleted %d and %d, want 16 in all", deleted[0], deleted[1])
	}
	l, err := a.ListNixAttempts(ctx, 0)
	if err != nil || len(l) != 10 || l[0].Subject != id("s", 29) || l[9].Subject != id("s", 20) {
		t.Fatalf("attempts kept: %d, %v; want the newest 10", len(l), err)
	}
	if n, err := a.NixCounter(ctx, store.NixAttemptsDropped); err != nil || n != 20 {
		t.Errorf("dropped counter %d, %v; want 20", n, err)
	}
	if n, err := b.PruneNixAttempts(ctx, 10, old); err != nil || n != 0 {
		t.Errorf("pruning a log within bounds deleted %d, %v", n, err)
	}
	if n, err := a.NixCounter(ctx, "never-set"); err != nil || n != 0 {
		t.Errorf("a counter never set reads %d, %v; want 0", n, err)
	}
}
