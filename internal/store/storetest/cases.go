package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"nixpki/internal/store"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
func isConflict(err error) bool { return errors.Is(err, store.ErrConflict) }

func testNotFound(t *testing.T, a, _ Store) {
	checks := map[string]error{}
	_, checks["GetCert"] = a.GetCert(ctx, "aa")
	_, checks["RevokeCert"] = a.RevokeCert(ctx, "aa", now(), 1)
	_, checks["GetACMEAccount"] = a.GetACMEAccount(ctx, "x")
	_, checks["GetACMEAccountByKey"] = a.GetACMEAccountByKey(ctx, "acme", "x")
	_, checks["GetACMEEABKey"] = a.GetACMEEABKey(ctx, "acme", "x")
	_, checks["GetACMEOrder"] = a.GetACMEOrder(ctx, "x")
	_, _, checks["GetACMEOrderCert"] = a.GetACMEOrderCert(ctx, "aa")
	_, checks["GetACMEAuthz"] = a.GetACMEAuthz(ctx, "x")
	_, _, checks["StartACMEChallenge"] = a.StartACMEChallenge(ctx, "x", "http-01", now(), nil)
	_, checks["UpdateACMEAccount"] = a.UpdateACMEAccount(ctx, "x", nil, "deactivated", nil)
	checks["ChangeACMEAccountKey"] = a.ChangeACMEAccountKey(ctx, "x", "a", "b", []byte("{}"), nil)
	_, checks["ConsumeNixToken"] = a.ConsumeNixToken(ctx, []byte("h"), now(), nil)
	_, checks["GetNixCert"] = a.GetNixCert(ctx, "aa")
	checks["ConsumeNixChallenge"] = a.ConsumeNixChallenge(ctx, "x", now())
	_, checks["GetACMEOrderByCert"] = a.GetACMEOrderByCert(ctx, "aa")
	checks["DeactivateACMEAuthz"] = a.DeactivateACMEAuthz(ctx, "x", nil, nil)
	checks["SetNixTokenSerial"] = a.SetNixTokenSerial(ctx, "x", "aa")
	checks["ReleaseNixToken"] = a.ReleaseNixToken(ctx, "x")
	for name, err := range checks {
		if !isNotFound(err) {
			t.Errorf("%s of a missing record: %v, want ErrNotFound", name, err)
		}
	}
	st, err := a.GetCRL(ctx, "tls")
	if err != nil || st.Number != 0 || st.DER != nil {
		t.Errorf("GetCRL before any: %+v, %v; want a zero state", st, err)
	}
}

func testConflict(t *testing.T, a, b Store) {
	if err := a.PutCert(ctx, cert("aa")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutCert(ctx, cert("aa")); !isConflict(err) {
		t.Errorf("PutCert of an existing serial: %v", err)
	}
	mustAccount(t, a, "acct1")
	dup := account("acct2")
	dup.Thumbprint = "tp-acct1"
	if err := b.CreateACMEAccount(ctx, dup, nil); !isConflict(err) {
		t.Errorf("CreateACMEAccount with a key in use: %v", err)
	}
	mustAccount(t, a, "acct3")
	if err := b.ChangeACMEAccountKey(ctx, "acct3", "tp-acct3", "tp-acct1", []byte("{}"), nil); !isConflict(err) {
		t.Errorf("ChangeACMEAccountKey to a key in use: %v", err)
	}
	k := &store.ACMEEABKey{KID: "kid", Provisioner: "acme", Key: []byte("k"), CreatedAt: now()}
	if err := a.CreateACMEEABKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateACMEEABKey(ctx, k); !isConflict(err) {
		t.Errorf("CreateACMEEABKey twice: %v", err)
	}
	tok := &store.NixToken{ID: "t1", Hash: []byte("hash1"), Subject: "s", CreatedAt: now(), ExpiresAt: now().Add(time.Hour)}
	if err := a.PutNixToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := b.PutNixToken(ctx, tok); !isConflict(err) {
		t.Errorf("PutNixToken twice: %v", err)
	}
	if err := a.PutNixChallenge(ctx, "c", now().Add(time.Minute), now()); err != nil {
		t.Fatal(err)
	}
	if err := b.PutNixChallenge(ctx, "c", now().Add(time.Minute), now()); !isConflict(err) {
		t.Errorf("PutNixChallenge twice: %v", err)
	}
	if err := a.PutNixCert(ctx, nixCert("n1", "cache-1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := b.PutNixCert(ctx, nixCert("n1", "cache-1", 1)); !isConflict(err) {
		t.Errorf("PutNixCert twice: %v", err)
	}
	var taken *store.KeyNameTakenError
	if err := b.PutNixCert(ctx, nixCert("n2", "cache-1", 2)); !isConflict(err) || !errors.As(err, &taken) || taken.Serial != "n1" {
		t.Errorf("PutNixCert of a key name bound to another key: %v", err)
	}
}

func testRoundTrip(t *testing.T, a, b Store) {
	c := cert("0a1b")
	if err := a.PutCert(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetCert(ctx, "0a1b")
	if err != nil || got.Subject != c.Subject || len(got.SANs) != 2 || !bytes.Equal(got.DER, c.DER) || !got.NotAfter.Equal(c.NotAfter) || got.Revoked() {
		t.Fatalf("GetCert: %+v, %v", got, err)
	}
	acct := mustAccount(t, a, "acct")
	ga, err := b.GetACMEAccountByKey(ctx, "acme", acct.Thumbprint)
	if err != nil || ga.ID != "acct" || len(ga.Contacts) != 1 || string(ga.JWK) != string(acct.JWK) {
		t.Fatalf("GetACMEAccountByKey: %+v, %v", ga, err)
	}
	o, az := order("o1", "acct", "a.test")
	o.Identifiers = append(o.Identifiers, store.ACMEIdentifier{Type: "ip", Value: "10.0.0.1"})
	if _, reused, err := a.CreateACMEOrder(ctx, o, az, store.NewOrderOptions{Now: now()}, nil); err != nil || reused {
		t.Fatal(reused, err)
	}
	go2, err := b.GetACMEOrder(ctx, "o1")
	if err != nil || len(go2.Identifiers) != 2 || go2.Identifiers[1].Value != "10.0.0.1" || len(go2.AuthzIDs) != 1 || go2.Status != "pending" {
		t.Fatalf("GetACMEOrder: %+v, %v", go2, err)
	}
	gz, err := b.GetACMEAuthz(ctx, "o1-a0")
	if err != nil || gz.Identifier.Value != "a.test" || gz.Wildcard || gz.Token != "tok-o1" {
		t.Fatalf("GetACMEAuthz: %+v, %v", gz, err)
	}
	tok := &store.NixToken{ID: "t1", Hash: []byte("hash1"), Subject: "s", Targets: []string{"a", "b"}, Validity: time.Hour, CreatedAt: now(), ExpiresAt: now().Add(time.Hour)}
	if err := a.PutNixToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	toks, err := b.ListNixTokens(ctx)
	if err != nil || len(toks) != 1 || len(toks[0].Targets) != 2 || toks[0].Validity != time.Hour {
		t.Fatalf("ListNixTokens: %+v, %v", toks, err)
	}
	if err := a.PutNixCert(ctx, nixCert("n1", "cache-1", 1)); err != nil {
		t.Fatal(err)
	}
	nc, err := b.GetNixCert(ctx, "n1")
	if err != nil || nc.Targets[0] != "prod" || nc.RevokedAt != nil {
		t.Fatalf("GetNixCert: %+v, %v", nc, err)
	}
}

func testCancelled(t *testing.T, a, b Store) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.GetCert(cctx, "aa"); !errors.Is(err, context.Canceled) {
		t.Errorf("GetCert with a cancelled context: %v", err)
	}
	if err := a.PutCert(cctx, cert("aa")); !errors.Is(err, context.Canceled) {
		t.Errorf("PutCert with a cancelled context: %v", err)
	}
	if _, err := b.GetCert(ctx, "aa"); !isNotFound(err) {
		t.Errorf("a write with a cancelled context stored something: %v", err)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	if _, err := a.SpendNonces(dctx, []store.Nonce{*nonce("n")}, time.Time{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("SpendNonces past its deadline: %v", err)
	}
}

func testConcurrentWriters(t *testing.T, a, b Store) {
	const n = 40
	errs := race(a, b, n, func(i int, s Store) error { return s.PutCert(ctx, cert(id("c", i))) })
	if ok := count(t, errs, func(error) bool { return false }); ok != n {
		t.Fatalf("%d of %d distinct certificates stored", ok, n)
	}
	for _, s := range []Store{a, b} {
		l, err := s.ListCerts(ctx, store.CertFilter{})
		if err != nil || len(l) != n {
			t.Fatalf("ListCerts: %d, %v; want %d", len(l), err, n)
		}
	}
}

func testNonceOnce(t *testing.T, a, b Store) {
	errs := race(a, b, 16, func(i int, s Store) error {
		res, err := s.SpendNonces(ctx, []store.Nonce{*nonce("n1")}, time.Time{})
		if err != nil {
			return err
		}
		return res[0]
	})
	if ok := count(t, errs, func(err error) bool { return errors.Is(err, store.ErrNonceReused) }); ok != 1 {
		t.Fatalf("a nonce was accepted %d times", ok)
	}
	// A state change spends its nonce in its transaction: one of two wins.
	mustAccount(t, a, "acct")
	errs = race(a, b, 8, func(i int, s Store) error {
		_, err := s.UpdateACMEAccount(ctx, "acct", []string{"mailto:x@example.org"}, "", nonce("n2"))
		return err
	})
	if ok := count(t, errs, func(err error) bool { return errors.Is(err, store.ErrNonceReused) }); ok != 1 {
		t.Fatalf("a nonce carried %d account updates", ok)
	}
	bound := store.Nonce{Value: "n3", Expires: now().Add(time.Hour), AccountID: "acct", Thumbprint: "stale"}
	res, err := b.SpendNonces(ctx, []store.Nonce{bound}, time.Time{})
	if err != nil || !errors.Is(res[0], store.ErrAccountChanged) {
		t.Fatalf("nonce for a stale account key: %v %v", res, err)
	}
	bound.Thumbprint = "tp-acct"
	if res, err := a.SpendNonces(ctx, []store.Nonce{bound}, time.Time{}); err != nil || res[0] != nil {
		t.Fatalf("nonce refused as stale was spent: %v %v", res, err)
	}
}

func testSerialOnce(t *testing.T, a, b Store) {
	errs := race(a, b, 10, func(i int, s Store) error { return s.PutCert(ctx, cert("dd")) })
	if ok := count(t, errs, isConflict); ok != 1 {
		t.Fatalf("serial stored %d times", ok)
	}
}

func testRevokeOnce(t *testing.T, a, b Store) {
	if err := a.PutCert(ctx, cert("ee")); err != nil {
		t.Fatal(err)
	}
	errs := race(a, b, 10, func(i int, s Store) error { _, err := s.RevokeCert(ctx, "ee", now(), 1); return err })
	if ok := count(t, errs, func(err error) bool { return errors.Is(err, store.ErrAlreadyRevoked) }); ok != 1 {
		t.Fatalf("revoked %d times", ok)
	}
	st, err := b.GetCRL(ctx, "tls")
	if err != nil || st.Revision != 1 {
		t.Fatalf("CRL revision after one revocation: %+v, %v", st, err)
	}
	c, err := b.GetCert(ctx, "ee")
	if err != nil || !c.Revoked() || c.Reason != 1 {
		t.Fatalf("revoked certificate reads %+v, %v", c, err)
	}
}

func testCRLNumbers(t *testing.T, a, b Store) {
	if err := a.PutCert(ctx, cert("ff")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeCert(ctx, "ff", now(), 4); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[int64]bool{}
	errs := race(a, b, 20, func(i int, s Store) error {
		st, err := s.RebuildCRL(ctx, "tls", func(n int64, rev []store.RevokedEntry) ([]byte, time.Time, time.Time, error) {
			if len(rev) != 1 || rev[0].Serial != "ff" || rev[0].Reason != 4 {
				t.Errorf("revoked entries %+v", rev)
			}
			return []byte{byte(n)}, now(), now().Add(time.Hour), nil
		})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[st.Number] {
			t.Errorf("CRL number %d built twice", st.Number)
		}
		seen[st.Number] = true
		return nil
	})
	count(t, errs, func(error) bool { return false })
	st, err := b.GetCRL(ctx, "tls")
	if err != nil || st.Number != 20 || st.BuiltRevision != st.Revision || !bytes.Equal(st.DER, []byte{20}) {
		t.Fatalf("stored CRL after 20 builds: %+v, %v", st, err)
	}
}

func testKeyNameRace(t *testing.T, a, b Store) {
	errs := race(a, b, 10, func(i int, s Store) error { return s.PutNixCert(ctx, nixCert(id("k", i), "cache-1", byte(i))) })
	if ok := count(t, errs, isConflict); ok != 1 {
		t.Fatalf("key name bound to %d keys", ok)
	}
	live, err := b.ListNixCerts(ctx, store.NixCertFilter{KeyName: "cache-1", LiveAt: now()})
	if err != nil || len(live) != 1 {
		t.Fatalf("live certificates for the name: %d, %v", len(live), err)
	}
}

func testEABBindOnce(t *testing.T, a, b Store) {
	if err := a.CreateACMEEABKey(ctx, &store.ACMEEABKey{KID: "kid", Provisioner: "acme", Key: []byte("k"), CreatedAt: now()}); err != nil {
		t.Fatal(err)
	}
	errs := race(a, b, 10, func(i int, s Store) error {
		acct := account(id("acct", i))
		acct.EABKID = "kid"
		return s.CreateACMEAccount(ctx, acct, nil)
	})
	if ok := count(t, errs, func(err error) bool { return errors.Is(err, store.ErrEABUsed) }); ok != 1 {
		t.Fatalf("EAB key bound %d times", ok)
	}
	k, err := b.GetACMEEABKey(ctx, "acme", "kid")
	if err != nil || k.BoundAccount == "" {
		t.Fatalf("bound EAB key reads %+v, %v", k, err)
	}
}

func testTokenOnce(t *testing.T, a, b Store) {
	tok := &store.NixToken{ID: "t1", Hash: []byte("hash1"), Subject: "s", CreatedAt: now(), ExpiresAt: now().Add(time.Hour)}
	if err := a.PutNixToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	errs := race(a, b, 10, func(i int, s Store) error { _, err := s.ConsumeNixToken(ctx, []byte("hash1"), now(), nil); return err })
	if ok := count(t, errs, func(err error) bool { return errors.Is(err, store.ErrTokenUsed) }); ok != 1 {
		t.Fatalf("token consumed %d times", ok)
	}
}

func testChallengeOnce(t *testing.T, a, b Store) {
	if err := a.PutNixChallenge(ctx, "ch", now().Add(time.Minute), now()); err != nil {
		t.Fatal(err)
	}
	errs := race(a, b, 10, func(i int, s Store) error { return s.ConsumeNixChallenge(ctx, "ch", now()) })
	if ok := count(t, errs, isNotFound); ok != 1 {
		t.Fatalf("challenge consumed %d times", ok)
	}
}

func testOrderReuse(t *testing.T, a, b Store) {
	mustAccount(t, a, "acct")
	var mu sync.Mutex
	ids := map[string]int{}
	errs := race(a, b, 10, func(i int, s Store) error {
		o, az := order(id("o", i), "acct", "reuse.test")
		got, _, err := s.CreateACMEOrder(ctx, o, az, store.NewOrderOptions{Reuse: true, Now: now()}, nil)
		if err == nil {
			mu.Lock()
			ids[got.ID]++
			mu.Unlock()
		}
		return err
	})
	count(t, errs, func(error) bool { return false })
	if len(ids) != 1 {
		t.Fatalf("concurrent orders for one name made %d orders, want 1 reused: %v", len(ids), ids)
	}
}

func testRateLimit(t *testing.T, a, b Store) {
	mustAccount(t, a, "acct")
	errs := race(a, b, 10, func(i int, s Store) error {
		o, az := order(id("o", i), "acct", id("n", i)+".test")
		_, _, err := s.CreateACMEOrder(ctx, o, az, store.NewOrderOptions{MaxPerMinute: 3, Now: now()}, nil)
		return err
	})
	if ok := count(t, errs, func(err error) bool { return errors.Is(err, store.ErrRateLimited) }); ok != 3 {
		t.Fatalf("%d orders under a limit of 3 a minute", ok)
	}
}

func testReplacesOnce(t *testing.T, a, b Store) {
	mustAccount(t, a, "acct")
	errs := race(a, b, 10, func(i int, s Store) error {
		o, az := order(id("o", i), "acct", id("n", i)+".test")
		o.Replaces = "0abc"
		_, _, err := s.CreateACMEOrder(ctx, o, az, store.NewOrderOptions{Now: now()}, nil)
		return err
	})
	if ok := count(t, errs, func(err error) bool { return errors.Is(err, store.ErrAlreadyReplaced) }); ok != 1 {
		t.Fatalf("certificate replaced by %d orders", ok)
	}
}

// readyOrder makes an order of two authorizations and starts both challenges.
func readyOrder(t *testing.T, s Store, oid string) {
	t.Helper()
	o, az := order(oid, "acct", oid+".test")
	az2 := *az[0]
	az2.ID, az2.Identifier.Value, az2.Token = oid+"-a1", oid+"-2.test", "tok2-"+oid
	o.Identifiers = append(o.Identifiers, az2.Identifier)
	o.AuthzIDs = append(o.AuthzIDs, az2.ID)
	if _, _, err := s.CreateACMEOrder(ctx, o, append(az, &az2), store.NewOrderOptions{Now: now()}, nil); err != nil {
		t.Fatal(err)
	}
	for _, a := range o.AuthzIDs {
		if _, started, err := s.StartACMEChallenge(ctx, a, "http-01", now(), nil); err != nil || !started {
			t.Fatal(started, err)
		}
	}
}

func testLastAuthzReadies(t *testing.T, a, b Store) {
	mustAccount(t, a, "acct")
	for r := 0; r < 8; r++ {
		oid := id("o", r)
		readyOrder(t, a, oid)
		errs := race(a, b, 2, func(i int, s Store) error {
			return s.FinishACMEChallenge(ctx, oid+"-a"+string(rune('0'+i)), nil, now())
		})
		count(t, errs, func(error) bool { return false })
		o, err := b.GetACMEOrder(ctx, oid)
		if err != nil || o.Status != "ready" {
			t.Fatalf("order whose authorizations both validated at once is %q (%v), want ready", o.Status, err)
		}
	}
}

func testFinalizeOnce(t *testing.T, a, b Store) {
	mustAccount(t, a, "acct")
	readyOrder(t, a, "o1")
	for _, z := range []string{"o1-a0", "o1-a1"} {
		if err := a.FinishACMEChallenge(ctx, z, nil, now()); err != nil {
			t.Fatal(err)
		}
	}
	errs := race(a, b, 10, func(i int, s Store) error {
		if err := s.PutCert(ctx, cert(id("f", i))); err != nil {
			return err
		}
		return s.FinalizeACMEOrder(ctx, "o1", id("f", i), nonce(id("n", i)))
	})
	if ok := count(t, errs, isConflict); ok != 1 {
		t.Fatalf("order finalized %d times", ok)
	}
	o, err := b.GetACMEOrder(ctx, "o1")
	if err != nil || o.Status != "valid" || o.CertSerial == "" {
		t.Fatalf("finalized order %+v, %v", o, err)
	}
	if got, der, err := a.GetACMEOrderCert(ctx, o.CertSerial); err != nil || got.ID != "o1" || len(der) == 0 {
		t.Fatalf("GetACMEOrderCert: %v", err)
	}
}

func testAttemptIDs(t *testing.T, a, b Store) {
	var mu sync.Mutex
	ids := map[int64]bool{}
	errs := race(a, b, 20, func(i int, s Store) error {
		at := &store.NixAttempt{At: now(), Method: "cli", Outcome: "issued", Subject: id("s", i)}
		if err := s.AddNixAttempt(ctx, at); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if at.ID <= 0 || ids[at.ID] {
			t.Errorf("attempt ID %d reused or unset", at.ID)
		}
		ids[at.ID] = true
		return nil
	})
	count(t, errs, func(error) bool { return false })
	l, err := b.ListNixAttempts(ctx, 5)
	if err != nil || len(l) != 5 || l[0].ID < l[4].ID {
		t.Fatalf("ListNixAttempts(5): %d, %v", len(l), err)
	}
}
