package ca

import (
	"context"
	"time"

	"nixpki/internal/store"
)

// Certs is what the CA keeps in its database: every certificate it issued, their
// revocations, and the CRL each issuer last built (shared by every server on the
// database). store.DB implements it on SQLite and PostgreSQL.
type Certs interface {
	PutCert(ctx context.Context, c *store.Cert) error
	GetCert(ctx context.Context, serial string) (*store.Cert, error)
	RevokeCert(ctx context.Context, serial string, at time.Time, reason int) (*store.Cert, error)
	GetCRL(ctx context.Context, issuer string) (*store.CRLState, error)
	RebuildCRL(ctx context.Context, issuer string, build func(number int64, revoked []store.RevokedEntry) ([]byte, time.Time, time.Time, error)) (*store.CRLState, error)
}

// The database nixpki opens implements it.
var _ Certs = (*store.DB)(nil)
