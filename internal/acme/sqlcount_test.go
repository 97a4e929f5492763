package acme

import (
	"context"
	"strings"
	"testing"

	"nixpki/internal/store"
)

// TestSQLPerOrder logs the database work of one complete order (new order →
// authorization → challenge → finalize → download, x/crypto/acme) on a warm server,
// and bounds it so that a regression shows: the account comes from the cache, each
// state change is one transaction, and only the certificate's is synced.
func TestSQLPerOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.client("acme")
	e.issue(cl, http01, "warm.test") // accounts cached, statements prepared
	db := e.ca.DB
	before := db.Stats()
	e.issue(cl, http01, "count.test")
	after := db.Stats()
	d := store.Stats{
		Statements:    after.Statements - before.Statements,
		Transactions:  after.Transactions - before.Transactions,
		Commits:       after.Commits - before.Commits,
		SyncedCommits: after.SyncedCommits - before.SyncedCommits,
	}
	t.Logf("one order: %d ACME statements, %d write transactions in %d commits (%d synced)",
		d.Statements, d.Transactions, d.Commits, d.SyncedCommits)
	if d.SyncedCommits != 1 {
		t.Errorf("%d synced commits per order, want 1 (the certificate)", d.SyncedCommits)
	}
	if d.Statements > 30 || d.Transactions > 12 {
		t.Errorf("one order took %d statements and %d transactions: more than expected", d.Statements, d.Transactions)
	}
}

// TestAccountCacheReplicaSafe changes an account behind the server's back, as another
// server on the same database would: requests signed for the cached account must then
// fail (unauthorized) and change nothing, their nonces included.
func TestAccountCacheReplicaSafe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	newOrder := map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "replica.test"}}}
	for _, change := range []string{"deactivate", "rekey"} {
		for _, req := range []string{"read", "new-order"} {
			s := &signer{key: newKey(t), alg: "ES256"}
			e.register(s)
			r := e.post(s, e.url("new-order"), newOrder)
			if r.status != 201 {
				t.Fatalf("new order: %d %s", r.status, r.body)
			}
			orderURL := r.header.Get("Location")
			if r := e.post(s, orderURL, nil); r.status != 200 { // the account is cached now
				t.Fatalf("order: %d %s", r.status, r.body)
			}
			id := s.kid[strings.LastIndex(s.kid, "/")+1:]
			a, err := e.ca.DB.GetACMEAccount(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			switch change {
			case "deactivate":
				_, err = e.ca.DB.UpdateACMEAccount(ctx, id, nil, "deactivated", nil)
			case "rekey":
				err = e.ca.DB.ChangeACMEAccountKey(ctx, id, a.Thumbprint, "other-"+id, jwkJSON(t, newKey(t).Public()), nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			before := e.rowCounts()
			if req == "read" {
				e.post(s, orderURL, nil).wantProblem(t, 403, "unauthorized")
			} else {
				e.post(s, e.url("new-order"), map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "other.test"}}}).wantProblem(t, 403, "unauthorized")
			}
			// The failure dropped the cached account: it is read from the database again,
			// and, as without a cache, a deactivated account is unauthorized and the old
			// key does not verify.
			if change == "deactivate" {
				e.post(s, orderURL, nil).wantProblem(t, 403, "unauthorized")
			} else {
				e.post(s, orderURL, nil).wantProblem(t, 400, "malformed")
			}
			if after := e.rowCounts(); after != before {
				t.Fatalf("%s, %s: requests of a stale cached account wrote state:\nbefore %s\nafter  %s", change, req, before, after)
			}
		}
	}
}
