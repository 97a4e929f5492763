package enroll

import (
	"context"
	"time"

	"nixpki/internal/store"
)

// Store is what Nix enrollment keeps in the CA's database: one-time tokens, SSH
// challenges, what each Nix certificate was issued on, and every attempt. store.DB
// implements it on SQLite and PostgreSQL.
type Store interface {
	GetCert(ctx context.Context, serial string) (*store.Cert, error)

	PutNixToken(ctx context.Context, t *store.NixToken) error
	ConsumeNixToken(ctx context.Context, hash []byte, now time.Time, check func(*store.NixToken) error) (*store.NixToken, error)
	SetNixTokenSerial(ctx context.Context, id, serial string) error
	ReleaseNixToken(ctx context.Context, id string) error

	PutNixCert(ctx context.Context, c *store.NixCert) error
	GetNixCert(ctx context.Context, serial string) (*store.NixCert, error)
	ListNixCerts(ctx context.Context, f store.NixCertFilter) ([]*store.NixCert, error)
	AddNixAttempt(ctx context.Context, a *store.NixAttempt) error
	PruneNixAttempts(ctx context.Context, keep int, before time.Time) (int64, error)

	// IssueNixCert records a certificate, its details, attempt, SSH signers and token
	// in one transaction, refusing blocked keys and signers bound to another subject.
	IssueNixCert(ctx context.Context, r *store.NixIssuance) error
	BlockNixKey(ctx context.Context, publicKey []byte, serial string, at time.Time) error

	PutNixChallenge(ctx context.Context, value string, expires, now time.Time) error
	ConsumeNixChallenge(ctx context.Context, value string, now time.Time) error
}

// The database nixpki opens implements it.
var _ Store = (*store.DB)(nil)
