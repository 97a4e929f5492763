package acme

import (
	"context"
	"time"

	"nixpki/internal/store"
)

// Store is what the ACME server keeps in its database: accounts, EAB keys, orders,
// authorizations, spent nonces and the certificates it issued. store.DB implements it
// on SQLite and PostgreSQL; storetest holds the contract every implementation meets
// (ErrNotFound, ErrConflict, each method one transaction, safe for several servers
// sharing the database).
type Store interface {
	ACMESecret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)
	SpendNonces(ctx context.Context, ns []store.Nonce, purgeBefore time.Time) ([]error, error)

	CreateACMEAccount(ctx context.Context, a *store.ACMEAccount, n *store.Nonce) error
	GetACMEAccount(ctx context.Context, id string) (*store.ACMEAccount, error)
	GetACMEAccountByKey(ctx context.Context, provisioner, thumbprint string) (*store.ACMEAccount, error)
	UpdateACMEAccount(ctx context.Context, id string, contacts []string, status string, n *store.Nonce) (*store.ACMEAccount, error)
	ChangeACMEAccountKey(ctx context.Context, id, oldThumbprint, newThumbprint string, newJWK []byte, n *store.Nonce) error

	CreateACMEEABKey(ctx context.Context, k *store.ACMEEABKey) error
	GetACMEEABKey(ctx context.Context, provisioner, kid string) (*store.ACMEEABKey, error)

	CreateACMEOrder(ctx context.Context, o *store.ACMEOrder, authzs []*store.ACMEAuthz, opts store.NewOrderOptions, n *store.Nonce) (*store.ACMEOrder, bool, error)
	GetACMEOrder(ctx context.Context, id string) (*store.ACMEOrder, error)
	GetACMEOrderByCert(ctx context.Context, serial string) (*store.ACMEOrder, error)
	GetACMEOrderCert(ctx context.Context, serial string) (*store.ACMEOrder, []byte, error)
	ListACMEOrders(ctx context.Context, accountID string, limit, offset int) ([]string, error)
	FinalizeACMEOrder(ctx context.Context, orderID, serial string, n *store.Nonce) error

	GetACMEAuthz(ctx context.Context, id string) (*store.ACMEAuthz, error)
	DeactivateACMEAuthz(ctx context.Context, authzID string, problem []byte, n *store.Nonce) error
	StartACMEChallenge(ctx context.Context, authzID, challType string, now time.Time, n *store.Nonce) (*store.ACMEAuthz, bool, error)
	FinishACMEChallenge(ctx context.Context, authzID string, problem []byte, now time.Time) error
	StaleACMEChallenges(ctx context.Context, before time.Time, limit int) ([]*store.ACMEAuthz, error)
	ClaimACMEChallenge(ctx context.Context, authzID string, startedAt, now time.Time) (bool, error)

	GetCert(ctx context.Context, serial string) (*store.Cert, error)
	RevokeCert(ctx context.Context, serial string, at time.Time, reason int) (*store.Cert, error)
}

// The database nixpki opens implements it.
var _ Store = (*store.DB)(nil)
