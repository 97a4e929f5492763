package monitor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"nixpki/internal/config"
	"nixpki/internal/store"
)

// namesOnly is a Store that knows names only.
type namesOnly struct {
	Store
	names []store.NameExpiry
	since time.Time
}

func (n *namesOnly) NewestPerName(_ context.Context, since time.Time, _ []string) ([]store.NameExpiry, error) {
	n.since = since
	return n.names, nil
}

// TestNamesCap: beyond max_names the names expiring latest are dropped and counted,
// and overdue names are the ones inside the renewal window.
func TestNamesCap(t *testing.T) {
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	db := &namesOnly{}
	for i := range 5 {
		db.names = append(db.names, store.NameExpiry{Name: fmt.Sprintf("h%d.lab", i), NotAfter: now.Add(time.Duration(10-2*i) * 24 * time.Hour)})
	}
	c := &CA{DB: db, Now: func() time.Time { return now },
		Monitor: config.Monitor{Window: config.Duration(90 * 24 * time.Hour), MaxNames: 3, RenewalWindow: config.Duration(5 * 24 * time.Hour)}}
	names, dropped, err := c.Names(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 2 || len(names) != 3 || names[0].Name != "h4.lab" || names[2].Name != "h2.lab" {
		t.Errorf("names %v, dropped %d: want h4, h3, h2 kept and 2 dropped", names, dropped)
	}
	if !db.since.Equal(now.Add(-90 * 24 * time.Hour)) {
		t.Errorf("names read since %s, want the window's start", db.since)
	}
	r, err := c.Renewal(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Tracked != 3 || r.Dropped != 2 || len(r.Overdue) != 2 || r.Overdue[0].Name != "h4.lab" || r.Overdue[1].Name != "h3.lab" {
		t.Errorf("renewal %+v, want 3 tracked, 2 dropped, h4 (2 days left) and h3 (4 days left) overdue", r)
	}
}

func TestPath(t *testing.T) {
	for _, tc := range []struct{ issuer, method, profile, path, prof string }{
		{"tls", "acme", "shortlived", "acme", "shortlived"},
		{"tls", "cli", "", "direct", "cli"},
		{"tls", "server", "", "direct", "server"},
		{"nix", "nix-token", "", "nix", "token"},
	} {
		if p, prof := Path(tc.issuer, tc.method, tc.profile); p != tc.path || prof != tc.prof {
			t.Errorf("Path(%s, %s, %s) = %s, %s; want %s, %s", tc.issuer, tc.method, tc.profile, p, prof, tc.path, tc.prof)
		}
	}
}
