// Package monitor reads a CA's health as operators watch it: the validity of its CA
// certificates and CRLs, what it issued and revoked, its ACME orders, and, for every
// name it issued for recently, the newest certificate's expiry — which tells a host
// that stopped renewing. The Prometheus collector and `nixpki doctor` both read it.
package monitor

import (
	"context"
	"crypto/x509"
	"sort"
	"strings"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/store"
)

// Store is what monitoring reads from the CA's database.
type Store interface {
	GetCRL(ctx context.Context, issuer string) (*store.CRLState, error)
	IssuanceCounts(ctx context.Context) ([]store.IssuanceCount, error)
	ACMECounts(ctx context.Context) ([]store.ACMECount, error)
	NewestPerName(ctx context.Context, since time.Time, methods []string) ([]store.NameExpiry, error)
}

// The database nixpki opens implements it.
var _ Store = (*store.DB)(nil)

// CA is one CA as monitoring sees it.
type CA struct {
	// Certs are the CA certificates by name: root, tls, nix.
	Certs   map[string]*x509.Certificate
	DB      Store
	Monitor config.Monitor
	Now     func() time.Time
}

// CRLIssuers are the CA keys whose CRLs the server publishes.
var CRLIssuers = []string{"tls", "nix"}

// trackedMethods are the issuance methods whose names are tracked for renewal: ACME
// and direct issuance (not the server's own certificate, not Nix keys).
var trackedMethods = []string{"acme", "cli"}

// Path names how a certificate was issued: acme, nix or direct; profile is the ACME
// profile, the Nix enrollment method (cli, token, ssh, renew), or for direct
// issuance cli or server (the server's own certificate).
func Path(issuer, method, acmeProfile string) (path, profile string) {
	switch {
	case issuer == "nix" || strings.HasPrefix(method, "nix-"):
		return "nix", strings.TrimPrefix(method, "nix-")
	case method == "acme":
		if acmeProfile == "" {
			acmeProfile = "unknown"
		}
		return "acme", acmeProfile
	}
	return "direct", method
}

// Names returns the newest certificate of each name issued for within the monitor
// window, soonest expiry first, at most MaxNames of them, and how many were left out.
func (c *CA) Names(ctx context.Context) (names []store.NameExpiry, dropped int, err error) {
	all, err := c.DB.NewestPerName(ctx, c.Now().Add(-c.Monitor.Window.D()), trackedMethods)
	if err != nil {
		return nil, 0, err
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].NotAfter.Equal(all[j].NotAfter) {
			return all[i].NotAfter.Before(all[j].NotAfter)
		}
		return all[i].Name < all[j].Name
	})
	if max := c.Monitor.MaxNames; max > 0 && len(all) > max {
		return all[:max], len(all) - max, nil
	}
	return all, 0, nil
}

// Renewal is what Names says about renewal: how many names are tracked, those whose
// newest certificate has less than the renewal window left (or has expired) —
// hosts that stopped renewing — and how many names were left out.
type Renewal struct {
	Tracked, Dropped int
	Overdue          []store.NameExpiry
}

// Renewal reads the tracked names and picks the overdue ones.
func (c *CA) Renewal(ctx context.Context) (*Renewal, error) {
	names, dropped, err := c.Names(ctx)
	if err != nil {
		return nil, err
	}
	r := &Renewal{Tracked: len(names), Dropped: dropped}
	limit := c.Now().Add(c.Monitor.RenewalWindow.D())
	for _, n := range names {
		if n.NotAfter.Before(limit) {
			r.Overdue = append(r.Overdue, n)
		}
	}
	return r, nil
}

// ForCA monitors a loaded CA.
func ForCA(c *ca.CA) *CA {
	return &CA{
		Certs:   map[string]*x509.Certificate{ca.IssuerRoot: c.Root, ca.IssuerTLS: c.TLS.Cert, ca.IssuerNix: c.Nix.Cert},
		DB:      c.DB,
		Monitor: c.Config.Monitor,
		Now:     c.Now,
	}
}
