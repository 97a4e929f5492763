package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"nixpki/internal/store"
)

// Every server on the database ends up with the first secret stored.
func testACMESecret(t *testing.T, a, b Store) {
	var results [8][]byte
	errs := race(a, b, len(results), func(i int, s Store) error {
		var err error
		results[i], err = s.ACMESecret(ctx, "nonce-hmac", func() ([]byte, error) { return []byte(fmt.Sprint("secret-", i)), nil })
		return err
	})
	count(t, errs, func(error) bool { return false })
	for i, r := range results {
		if len(r) == 0 || !bytes.Equal(r, results[0]) {
			t.Fatalf("server %d got secret %q, server 0 %q: one secret for all", i, r, results[0])
		}
	}
	again, err := b.ACMESecret(ctx, "nonce-hmac", func() ([]byte, error) { return nil, errors.New("not called") })
	if err != nil || !bytes.Equal(again, results[0]) {
		t.Errorf("stored secret reads %q, %v", again, err)
	}
	failed := errors.New("no entropy")
	if _, err := a.ACMESecret(ctx, "other", func() ([]byte, error) { return nil, failed }); !errors.Is(err, failed) {
		t.Errorf("a failing generator: %v, want its error", err)
	}
	if v, err := b.ACMESecret(ctx, "other", func() ([]byte, error) { return []byte("second"), nil }); err != nil || string(v) != "second" {
		t.Errorf("a secret whose generator failed was stored: %q, %v", v, err)
	}
}

func testEABKeyListing(t *testing.T, a, b Store) {
	for i, prov := range []string{"acme", "internal", "acme"} {
		k := &store.ACMEEABKey{KID: id("kid", i), Provisioner: prov, Key: []byte("k"), Note: prov, CreatedAt: now().Add(time.Duration(i) * time.Second)}
		if err := a.CreateACMEEABKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	ks, err := b.ListACMEEABKeys(ctx, "acme")
	if err != nil || len(ks) != 2 || ks[0].KID != "kid0000" || ks[1].KID != "kid0002" {
		t.Fatalf("one provisioner's keys, oldest first: %+v, %v", ks, err)
	}
	if ks, err := b.ListACMEEABKeys(ctx, ""); err != nil || len(ks) != 3 {
		t.Fatalf("every provisioner's keys: %d, %v", len(ks), err)
	}
	if ks, err := b.ListACMEEABKeys(ctx, "none"); err != nil || len(ks) != 0 {
		t.Fatalf("keys of a provisioner without any: %d, %v", len(ks), err)
	}
}

func testOrderListing(t *testing.T, a, b Store) {
	mustAccount(t, a, "acct")
	mustAccount(t, a, "other")
	for i := 0; i < 5; i++ {
		o, az := order(id("o", i), "acct", id("n", i)+".test")
		o.CreatedAt = now().Add(time.Duration(i) * time.Second)
		if _, _, err := a.CreateACMEOrder(ctx, o, az, store.NewOrderOptions{Now: now()}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var pages [][]string
	for off := 0; off < 6; off += 2 {
		ids, err := b.ListACMEOrders(ctx, "acct", 2, off)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, ids)
	}
	if fmt.Sprint(pages) != "[[o0004 o0003] [o0002 o0001] [o0000]]" {
		t.Errorf("orders by pages of 2, newest first: %v", pages)
	}
	if ids, err := b.ListACMEOrders(ctx, "other", 10, 0); err != nil || len(ids) != 0 {
		t.Errorf("orders of an account without any: %v, %v", ids, err)
	}

	// The order that produced a certificate, once it is valid.
	readyOrder(t, a, "fin")
	if _, err := b.GetACMEOrderByCert(ctx, "0f1f"); !isNotFound(err) {
		t.Errorf("GetACMEOrderByCert before the order is finalized: %v", err)
	}
	for _, z := range []string{"fin-a0", "fin-a1"} {
		if err := a.FinishACMEChallenge(ctx, z, nil, now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.PutCert(ctx, cert("0f1f")); err != nil {
		t.Fatal(err)
	}
	if err := a.FinalizeACMEOrder(ctx, "fin", "0f1f", nil); err != nil {
		t.Fatal(err)
	}
	if o, err := b.GetACMEOrderByCert(ctx, "0f1f"); err != nil || o.ID != "fin" || o.Status != "valid" {
		t.Errorf("GetACMEOrderByCert: %+v, %v", o, err)
	}
}

func testDeactivateAuthz(t *testing.T, a, b Store) {
	pendingOrder(t, a)
	// The client's request reaches two servers at once: one deactivates.
	errs := race(a, b, 6, func(i int, s Store) error {
		return s.DeactivateACMEAuthz(ctx, "o1-a0", []byte(`{"type":"unauthorized"}`), nonce(id("n", i)))
	})
	if ok := count(t, errs, isConflict); ok != 1 {
		t.Fatalf("authorization deactivated %d times", ok)
	}
	if z, err := b.GetACMEAuthz(ctx, "o1-a0"); err != nil || z.Status != "deactivated" {
		t.Errorf("deactivated authorization reads %+v, %v", z, err)
	}
	if got, err := b.GetACMEOrder(ctx, "o1"); err != nil || got.Status != "invalid" || len(got.Error) == 0 {
		t.Errorf("order of a deactivated authorization: %+v, %v; want invalid with the problem", got, err)
	}
	if err := a.DeactivateACMEAuthz(ctx, "o1-a0", nil, nonce("n-again")); !isConflict(err) {
		t.Errorf("deactivating a deactivated authorization: %v, want ErrConflict", err)
	}
	// A refused request does not spend its nonce.
	if res, err := a.SpendNonces(ctx, []store.Nonce{*nonce("n-again")}, time.Time{}); err != nil || res[0] != nil {
		t.Errorf("nonce of a refused deactivation was spent: %v %v", res, err)
	}
}

// A validation whose server stopped is taken over by exactly one other server.
func testStaleChallenge(t *testing.T, a, b Store) {
	pendingOrder(t, a)
	started := now().Add(-10 * time.Minute)
	if _, ok, err := a.StartACMEChallenge(ctx, "o1-a0", "http-01", started, nil); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if l, err := b.StaleACMEChallenges(ctx, started, 10); err != nil || len(l) != 0 {
		t.Fatalf("validations started before their start: %d, %v", len(l), err)
	}
	l, err := b.StaleACMEChallenges(ctx, now().Add(-time.Minute), 10)
	if err != nil || len(l) != 1 || l[0].ID != "o1-a0" || !l[0].StartedAt.Equal(started) || l[0].ChallType != "http-01" {
		t.Fatalf("stale validations: %+v, %v", l, err)
	}
	errs := race(a, b, 8, func(i int, s Store) error {
		won, err := s.ClaimACMEChallenge(ctx, "o1-a0", started, now())
		if err == nil && !won {
			return errLost
		}
		return err
	})
	if ok := count(t, errs, func(err error) bool { return err == errLost }); ok != 1 {
		t.Fatalf("a stale validation claimed by %d servers", ok)
	}
	if l, err := a.StaleACMEChallenges(ctx, now().Add(-time.Minute), 10); err != nil || len(l) != 0 {
		t.Errorf("a claimed validation is still stale: %d, %v", len(l), err)
	}
	if won, err := a.ClaimACMEChallenge(ctx, "missing", started, now()); err != nil || won {
		t.Errorf("claiming a missing authorization: %v, %v", won, err)
	}
}

var errLost = errors.New("lost the claim")

// pendingOrder makes account acct and its order o1 for a.test, with one pending
// authorization, o1-a0.
func pendingOrder(t *testing.T, s Store) {
	t.Helper()
	mustAccount(t, s, "acct")
	o, az := order("o1", "acct", "a.test")
	if _, _, err := s.CreateACMEOrder(ctx, o, az, store.NewOrderOptions{Now: now()}, nil); err != nil {
		t.Fatal(err)
	}
}
