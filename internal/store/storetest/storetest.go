// Package storetest is the contract every implementation of nixpki's storage meets,
// as a test suite: Run it against an implementation with a function that opens fresh
// databases. It calls every method of the interfaces the store's users define and
// checks the not-found and conflict sentinels, concurrent writers on two handles (two
// servers on one database), context cancellation and uniqueness under races: nonces,
// key names, SSH signers, blocked keys, serials, EAB bindings, tokens, order reuse,
// rate limits, ARI replaces, CRL numbers, shared secrets, challenge takeovers and
// attempt-log pruning.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"nixpki/internal/acme"
	"nixpki/internal/ca"
	"nixpki/internal/doctor"
	"nixpki/internal/enroll"
	"nixpki/internal/monitor"
	"nixpki/internal/store"
)

// Store is every method the suite exercises: what the ACME server, the CA, Nix
// enrollment, monitoring and doctor need, and the listings of the command line.
type Store interface {
	acme.Store
	ca.Certs
	enroll.Store
	monitor.Store
	doctor.Store

	ListCerts(ctx context.Context, f store.CertFilter) ([]*store.Cert, error)
	ListACMEEABKeys(ctx context.Context, provisioner string) ([]*store.ACMEEABKey, error)

	ListNixTokens(ctx context.Context) ([]*store.NixToken, error)
	ListNixAttempts(ctx context.Context, limit int) ([]*store.NixAttempt, error)
	NixCounter(ctx context.Context, name string) (int64, error)
}

// Opener opens a fresh, empty, migrated database and returns two independent handles
// on it (as two servers sharing it would have); the test's cleanup closes them.
type Opener func(t *testing.T) (a, b Store)

// Run runs the whole suite.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Store, Store)
	}{
		{"NotFound", testNotFound},
		{"Conflict", testConflict},
		{"RoundTrip", testRoundTrip},
		{"Cancelled", testCancelled},
		{"ConcurrentWriters", testConcurrentWriters},
		{"NonceOnce", testNonceOnce},
		{"SerialOnce", testSerialOnce},
		{"RevokeOnce", testRevokeOnce},
		{"CRLNumbers", testCRLNumbers},
		{"KeyNameRace", testKeyNameRace},
		{"EABBindOnce", testEABBindOnce},
		{"TokenOnce", testTokenOnce},
		{"ChallengeOnce", testChallengeOnce},
		{"OrderReuse", testOrderReuse},
		{"RateLimit", testRateLimit},
		{"ReplacesOnce", testReplacesOnce},
		{"LastAuthzReadies", testLastAuthzReadies},
		{"FinalizeOnce", testFinalizeOnce},
		{"AttemptIDs", testAttemptIDs},
		{"IssueNixCert", testIssueNixCert},
		{"IssueNixCertRace", testIssueNixCertRace},
		{"NixTokenSerial", testNixTokenSerial},
		{"PruneNixAttempts", testPruneNixAttempts},
		{"ACMESecret", testACMESecret},
		{"EABKeyListing", testEABKeyListing},
		{"OrderListing", testOrderListing},
		{"DeactivateAuthz", testDeactivateAuthz},
		{"StaleChallenge", testStaleChallenge},
		{"MonitorReads", testMonitorReads},
		{"SchemaAndClock", testSchemaAndClock},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := open(t)
			tc.fn(t, a, b)
		})
	}
}

// race runs fn(i, handle) n times at once, alternating the two handles, and returns
// each call's error.
func race(a, b Store, n int, fn func(i int, s Store) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		s := a
		if i%2 == 1 {
			s = b
		}
		go func() {
			defer func() { done <- struct{}{} }()
			<-start
			errs[i] = fn(i, s)
		}()
	}
	close(start)
	for i := 0; i < n; i++ {
		<-done
	}
	return errs
}

// count returns how many errors are nil and checks that the rest match want.
func count(t *testing.T, errs []error, want func(error) bool) int {
	t.Helper()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !want(err):
			t.Errorf("unexpected error: %v", err)
		}
	}
	return ok
}

var ctx = context.Background()

func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

func cert(serial string) *store.Cert {
	n := now()
	return &store.Cert{Serial: serial, Issuer: "tls", Subject: "CN=x", SANs: []string{"x.internal", "10.0.0.1"},
		NotBefore: n, NotAfter: n.Add(time.Hour), DER: []byte{0x30, 1, 2}, Requester: "t", Method: "test", CreatedAt: n}
}

func account(id string) *store.ACMEAccount {
	return &store.ACMEAccount{ID: id, Provisioner: "acme", Thumbprint: "tp-" + id, JWK: []byte(`{"kty":"EC"}`),
		Status: "valid", Contacts: []string{"mailto:a@example.org"}, CreatedAt: now()}
}

func nonce(v string) *store.Nonce { return &store.Nonce{Value: v, Expires: now().Add(time.Hour)} }

// order returns an order of account acct for name, with one pending authorization.
func order(id, acct, name string) (*store.ACMEOrder, []*store.ACMEAuthz) {
	n := now()
	o := &store.ACMEOrder{ID: id, AccountID: acct, Provisioner: "acme", Status: "pending",
		Identifiers: []store.ACMEIdentifier{{Type: "dns", Value: name}}, Expires: n.Add(time.Hour), CreatedAt: n, AuthzIDs: []string{id + "-a0"}}
	az := &store.ACMEAuthz{ID: id + "-a0", OrderID: id, AccountID: acct, Identifier: o.Identifiers[0], Status: "pending", Expires: n.Add(time.Hour), Token: "tok-" + id}
	return o, []*store.ACMEAuthz{az}
}

func mustAccount(t *testing.T, s Store, id string) *store.ACMEAccount {
	t.Helper()
	a := account(id)
	if err := s.CreateACMEAccount(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	return a
}

func nixCert(serial, name string, key byte) *store.NixCert {
	n := now()
	return &store.NixCert{Serial: serial, Subject: "builder", KeyName: name, PublicKey: []byte{key, 2, 3}, Targets: []string{"prod"},
		Scope: "*", AuthMethod: "cli", AuthAt: n, NotAfter: n.Add(time.Hour), CreatedAt: n}
}

func id(prefix string, i int) string { return fmt.Sprintf("%s%04d", prefix, i) }
