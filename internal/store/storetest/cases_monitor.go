package storetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"nixpki/internal/store"
)

// certFor is a certificate of issuer by method for names, created at created and
// expiring at notAfter.
func certFor(serial, issuer, method string, created, notAfter time.Time, names ...string) *store.Cert {
	c := cert(serial)
	c.Issuer, c.Method, c.SANs, c.CreatedAt, c.NotBefore, c.NotAfter = issuer, method, names, created, created, notAfter
	return c
}

// What monitoring reads: counts by path and profile, ACME orders and challenges by
// status, and each recent name's newest certificate.
func testMonitorReads(t *testing.T, a, b Store) {
	n := now()
	since := n.Add(-24 * time.Hour)
	for _, c := range []*store.Cert{
		certFor("01", "tls", "cli", n, n.Add(time.Hour), "a.test"),
		certFor("02", "tls", "cli", n, n.Add(2*time.Hour), "a.test", "b.test"),           // newest for both
		certFor("03", "tls", "cli", n, n.Add(9*time.Hour), "c.test"),                     // revoked below
		certFor("04", "tls", "server", n, n.Add(9*time.Hour), "d.test"),                  // not a tracked method
		certFor("05", "tls", "cli", since.Add(-time.Hour), n.Add(9*time.Hour), "e.test"), // issued before the window
		certFor("06", "nix", "nix-token", n, n.Add(9*time.Hour), "builder"),
		certFor("07", "root", "init", n, n.Add(9*time.Hour), "Root"),
		certFor("08", "tls", "cli", n.Add(-48*time.Hour), since.Add(-time.Hour), "a.test"), // expired before the window
	} {
		if err := a.PutCert(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.RevokeCert(ctx, "03", n, 1); err != nil {
		t.Fatal(err)
	}
	mustAccount(t, a, "acct")
	o, az := order("fin", "acct", "f.test")
	o.Profile = "short"
	if _, _, err := a.CreateACMEOrder(ctx, o, az, store.NewOrderOptions{Now: n}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.StartACMEChallenge(ctx, "fin-a0", "http-01", n, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.FinishACMEChallenge(ctx, "fin-a0", nil, n); err != nil {
		t.Fatal(err)
	}
	if err := a.PutCert(ctx, certFor("09", "tls", "acme", n, n.Add(3*time.Hour), "f.test")); err != nil {
		t.Fatal(err)
	}
	if err := a.FinalizeACMEOrder(ctx, "fin", "09", nil); err != nil {
		t.Fatal(err)
	}
	po, paz := order("pending", "acct", "g.test")
	if _, _, err := a.CreateACMEOrder(ctx, po, paz, store.NewOrderOptions{Now: n}, nil); err != nil {
		t.Fatal(err)
	}

	issued, err := b.IssuanceCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range issued {
		got = append(got, fmt.Sprintf("%s/%s/%s %d-%d", c.Issuer, c.Method, c.Profile, c.Issued, c.Revoked))
	}
	sort.Strings(got)
	if want := "nix/nix-token/ 1-0, tls/acme/short 1-0, tls/cli/ 5-1, tls/server/ 1-0"; strings.Join(got, ", ") != want {
		t.Errorf("IssuanceCounts: %s\nwant %s", strings.Join(got, ", "), want)
	}

	acme, err := b.ACMECounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, c := range acme {
		got = append(got, fmt.Sprintf("%s %s/%s/%s %d", c.Kind, c.Provisioner, c.Type, c.Status, c.N))
	}
	sort.Strings(got)
	if want := "challenge acme/http-01/valid 1, order acme//pending 1, order acme/short/valid 1"; strings.Join(got, ", ") != want {
		t.Errorf("ACMECounts: %s\nwant %s", strings.Join(got, ", "), want)
	}

	names, err := b.NewestPerName(ctx, since, []string{"acme", "cli"})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, e := range names {
		got = append(got, e.Name+"="+e.Serial)
		if e.Name == "f.test" && (!e.NotAfter.Equal(n.Add(3*time.Hour)) || !e.NotBefore.Equal(n)) {
			t.Errorf("f.test's validity reads %s to %s", e.NotBefore, e.NotAfter)
		}
	}
	sort.Strings(got)
	if want := "a.test=02, b.test=02, f.test=09"; strings.Join(got, ", ") != want {
		t.Errorf("NewestPerName: %s\nwant %s", strings.Join(got, ", "), want)
	}
	if names, err := b.NewestPerName(ctx, since, []string{"server"}); err != nil || len(names) != 1 || names[0].Name != "d.test" {
		t.Errorf("NewestPerName of one method: %+v, %v", names, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.IssuanceCounts(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("IssuanceCounts with a cancelled context: %v", err)
	}
	if _, err := b.NewestPerName(cctx, since, []string{"cli"}); !errors.Is(err, context.Canceled) {
		t.Errorf("NewestPerName with a cancelled context: %v", err)
	}
}

// What doctor reads: the schema version (current once migrated) and the clock.
func testSchemaAndClock(t *testing.T, a, b Store) {
	for _, s := range []Store{a, b} {
		have, want, err := s.SchemaVersion(ctx)
		if err != nil || want < 1 || have != want {
			t.Errorf("SchemaVersion of a migrated database: %d of %d, %v", have, want, err)
		}
		before := time.Now().Add(-time.Second)
		dbNow, err := s.Now(ctx)
		if err != nil || dbNow.Before(before.Truncate(time.Second)) || dbNow.After(time.Now().Add(time.Second)) || dbNow.Location() != time.UTC {
			t.Errorf("the database's clock reads %s, %v; this host's %s", dbNow, err, time.Now().UTC())
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.Now(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Now with a cancelled context: %v", err)
	}
}
