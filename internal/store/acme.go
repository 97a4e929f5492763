package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ACME records (internal/acme). Methods that change state take the request's nonce
// (nil for none) and spend it in the same transaction, so a request either changes
// state and spends its nonce or does neither.
//
// Durability: accounts, EAB keys, certificates and revocations are synced to disk on
// commit. Protocol state — orders, authorizations, spent nonces — lives a day at most
// and is committed without a sync of its own (lightTx): it is visible to every server
// at once, crash-safe, and made durable by the next synced commit or checkpoint; a
// power cut can lose its last moments, which clients recover from by retrying.

// ErrNonceReused reports a nonce that was spent before.
var ErrNonceReused = errors.New("nonce already used")

// ErrEABUsed reports an External Account Binding key already bound to an account.
var ErrEABUsed = errors.New("external account key already bound to an account")

// ErrRateLimited reports an account over its order rate.
var ErrRateLimited = errors.New("rate limited")

// ErrAlreadyReplaced reports an ARI `replaces` naming a certificate that another
// live order already replaces.
var ErrAlreadyReplaced = errors.New("certificate already replaced")

// ErrAccountChanged reports that the account a request was signed for is not valid
// with that key any more (deactivated, or its key changed, maybe by another server):
// the request's nonce is not spent and nothing changes.
var ErrAccountChanged = errors.New("account deactivated or its key changed")

// Nonce is a request's anti-replay token, spent once; the record of its use is kept
// until Expires.
//
// When AccountID is set, the nonce is spent only if that account is still valid with
// the key of thumbprint Thumbprint, checked in the statement that spends it: a server
// that authenticated the request from a cached copy of the account learns in the
// same transaction whether that copy was stale (ErrAccountChanged).
type Nonce struct {
	Value      string
	Expires    time.Time
	AccountID  string
	Thumbprint string
}

// ACMEIdentifier is an order identifier (RFC 8555 §9.7.7): type dns or ip.
type ACMEIdentifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// ACMEAccount is an ACME account.
type ACMEAccount struct {
	ID          string
	Provisioner string
	Thumbprint  string
	JWK         []byte
	Status      string
	Contacts    []string
	EABKID      string
	CreatedAt   time.Time
}

// ACMEEABKey is an External Account Binding key.
type ACMEEABKey struct {
	KID          string
	Provisioner  string
	Key          []byte
	Note         string
	CreatedAt    time.Time
	BoundAccount string
	BoundAt      time.Time
}

// ACMEOrder is an order with its authorization IDs in identifier order.
type ACMEOrder struct {
	ID          string
	AccountID   string
	Provisioner string
	Status      string
	Identifiers []ACMEIdentifier
	Profile     string
	NotBefore   time.Time // zero when not requested
	NotAfter    time.Time
	Expires     time.Time
	Error       []byte // JSON problem document
	CertSerial  string
	Replaces    string
	CreatedAt   time.Time
	AuthzIDs    []string
}

// ACMEAuthz is an authorization and the state of the challenge the client answered.
type ACMEAuthz struct {
	ID          string
	OrderID     string
	AccountID   string
	Identifier  ACMEIdentifier
	Wildcard    bool
	Status      string
	Expires     time.Time
	Token       string
	ChallType   string
	ChallStatus string
	Validated   time.Time
	ChallError  []byte
	StartedAt   time.Time
}

func (db *DB) spendNonce(ctx context.Context, tx *sql.Tx, n *Nonce) error {
	if n == nil {
		return nil
	}
	var res sql.Result
	var err error
	if n.AccountID == "" {
		res, err = db.exec(ctx, tx, `INSERT INTO acme_nonces (expires_at, nonce) VALUES (?, ?) ON CONFLICT (expires_at, nonce) DO NOTHING`, n.Expires.Unix(), n.Value)
	} else {
		res, err = db.exec(ctx, tx, `INSERT INTO acme_nonces (expires_at, nonce)
			SELECT CAST(? AS BIGINT), CAST(? AS TEXT) WHERE EXISTS (SELECT 1 FROM acme_accounts WHERE id = ? AND thumbprint = ? AND status = 'valid')
			ON CONFLICT (expires_at, nonce) DO NOTHING`, n.Expires.Unix(), n.Value, n.AccountID, n.Thumbprint)
	}
	if err != nil {
		return err
	}
	if k, _ := res.RowsAffected(); k > 0 {
		return nil
	}
	if n.AccountID != "" { // which check failed? (rare: only on refusal)
		var k int
		if err := db.row(ctx, tx, `SELECT COUNT(*) FROM acme_accounts WHERE id = ? AND thumbprint = ? AND status = 'valid'`, n.AccountID, n.Thumbprint).Scan(&k); err != nil {
			return err
		}
		if k == 0 {
			return ErrAccountChanged
		}
	}
	return ErrNonceReused
}

// SpendNonces records a batch of nonces in one transaction (group commit for requests
// that change nothing else) and reports, per nonce, nil when it was spent, else
// ErrNonceReused or ErrAccountChanged. Expired records are removed in the same
// transaction when purgeBefore is not zero.
func (db *DB) SpendNonces(ctx context.Context, ns []Nonce, purgeBefore time.Time) ([]error, error) {
	res := make([]error, len(ns))
	err := db.lightTx(ctx, func(tx *sql.Tx) error {
		for i := range ns {
			err := db.spendNonce(ctx, tx, &ns[i])
			if err != nil && !errors.Is(err, ErrNonceReused) && !errors.Is(err, ErrAccountChanged) {
				return err
			}
			res[i] = err
		}
		if !purgeBefore.IsZero() {
			_, err := db.exec(ctx, tx, `DELETE FROM acme_nonces WHERE expires_at < ?`, purgeBefore.Unix())
			return err
		}
		return nil
	})
	return res, err
}

// ACMESecret returns the named shared secret, storing gen's value the first time: every
// server on the database ends up with the same one.
func (db *DB) ACMESecret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	var v []byte
	err := db.row(ctx, nil, `SELECT value FROM acme_secrets WHERE name = ?`, name).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	nv, err := gen()
	if err != nil {
		return nil, err
	}
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, `INSERT INTO acme_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, nv)
		if err != nil {
			return err
		}
		return db.row(ctx, tx, `SELECT value FROM acme_secrets WHERE name = ?`, name).Scan(&v)
	})
	return v, err
}

// ---- accounts

const acmeAccountColumns = `id, provisioner, thumbprint, jwk, status, contacts, eab_kid, created_at`

func scanACMEAccount(s scanner) (*ACMEAccount, error) {
	var a ACMEAccount
	var jwk, contacts string
	var eab sql.NullString
	var created int64
	if err := s.Scan(&a.ID, &a.Provisioner, &a.Thumbprint, &jwk, &a.Status, &contacts, &eab, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	a.JWK, a.EABKID, a.CreatedAt = []byte(jwk), eab.String, time.Unix(created, 0).UTC()
	if err := json.Unmarshal([]byte(contacts), &a.Contacts); err != nil {
		return nil, fmt.Errorf("account %s: contacts: %w", a.ID, err)
	}
	return &a, nil
}

func contactsJSON(c []string) string {
	if c == nil {
		c = []string{}
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// CreateACMEAccount stores a new account, binding its EAB key (a.EABKID) if set.
// ErrConflict if the key already has an account on the provisioner; ErrEABUsed if the
// EAB key is unknown or bound already.
func (db *DB) CreateACMEAccount(ctx context.Context, a *ACMEAccount, n *Nonce) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		if err := db.spendNonce(ctx, tx, n); err != nil {
			return err
		}
		var eab any
		if a.EABKID != "" {
			eab = a.EABKID
			res, err := db.exec(ctx, tx, `UPDATE acme_eab_keys SET bound_account = ?, bound_at = ? WHERE kid = ? AND provisioner = ? AND bound_account IS NULL`,
				a.ID, a.CreatedAt.Unix(), a.EABKID, a.Provisioner)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 0 {
				return ErrEABUsed
			}
		}
		_, err := db.exec(ctx, tx, `INSERT INTO acme_accounts (`+acmeAccountColumns+`) VALUES (?,?,?,?,?,?,?,?)`,
			a.ID, a.Provisioner, a.Thumbprint, string(a.JWK), a.Status, contactsJSON(a.Contacts), eab, a.CreatedAt.Unix())
		if db.isUniqueViolation(err) {
			return ErrConflict
		}
		return err
	})
}

// GetACMEAccount returns the account with this ID or ErrNotFound.
func (db *DB) GetACMEAccount(ctx context.Context, id string) (*ACMEAccount, error) {
	return scanACMEAccount(db.row(ctx, nil, `SELECT `+acmeAccountColumns+` FROM acme_accounts WHERE id = ?`, id))
}

// GetACMEAccountByKey returns the provisioner's account with this key thumbprint.
func (db *DB) GetACMEAccountByKey(ctx context.Context, provisioner, thumbprint string) (*ACMEAccount, error) {
	return scanACMEAccount(db.row(ctx, nil, `SELECT `+acmeAccountColumns+` FROM acme_accounts WHERE provisioner = ? AND thumbprint = ?`, provisioner, thumbprint))
}

// UpdateACMEAccount sets the contacts (when contacts is not nil) and the status (when
// not empty) of a valid account and returns the result. ErrNotFound if the account is
// not valid any more.
func (db *DB) UpdateACMEAccount(ctx context.Context, id string, contacts []string, status string, n *Nonce) (*ACMEAccount, error) {
	var out *ACMEAccount
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		if err := db.spendNonce(ctx, tx, n); err != nil {
			return err
		}
		if contacts != nil {
			if _, err := db.exec(ctx, tx, `UPDATE acme_accounts SET contacts = ? WHERE id = ? AND status = 'valid'`, contactsJSON(contacts), id); err != nil {
				return err
			}
		}
		if status != "" {
			res, err := db.exec(ctx, tx, `UPDATE acme_accounts SET status = ? WHERE id = ? AND status = 'valid'`, status, id)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 0 {
				return ErrNotFound
			}
		}
		var err error
		out, err = scanACMEAccount(db.row(ctx, tx, `SELECT `+acmeAccountColumns+` FROM acme_accounts WHERE id = ?`, id))
		return err
	})
	return out, err
}

// ChangeACMEAccountKey replaces a valid account's key if it still is oldThumbprint.
// ErrConflict if another account of the provisioner has the new key (or the key
// changed meanwhile); ErrNotFound if the account is not valid.
func (db *DB) ChangeACMEAccountKey(ctx context.Context, id, oldThumbprint, newThumbprint string, newJWK []byte, n *Nonce) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		if err := db.spendNonce(ctx, tx, n); err != nil {
			return err
		}
		res, err := db.exec(ctx, tx, `UPDATE acme_accounts SET thumbprint = ?, jwk = ? WHERE id = ? AND thumbprint = ? AND status = 'valid'`,
			newThumbprint, string(newJWK), id, oldThumbprint)
		if db.isUniqueViolation(err) {
			return ErrConflict
		}
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// ---- EAB keys

// CreateACMEEABKey stores a new External Account Binding key.
func (db *DB) CreateACMEEABKey(ctx context.Context, k *ACMEEABKey) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, `INSERT INTO acme_eab_keys (kid, provisioner, hmac_key, note, created_at) VALUES (?,?,?,?,?)`,
			k.KID, k.Provisioner, k.Key, k.Note, k.CreatedAt.Unix())
		if db.isUniqueViolation(err) {
			return ErrConflict
		}
		return err
	})
}

const eabColumns = `kid, provisioner, hmac_key, note, created_at, bound_account, bound_at`

func scanEAB(s scanner) (*ACMEEABKey, error) {
	var k ACMEEABKey
	var created int64
	var acct sql.NullString
	var bound sql.NullInt64
	if err := s.Scan(&k.KID, &k.Provisioner, &k.Key, &k.Note, &created, &acct, &bound); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	k.CreatedAt, k.BoundAccount = time.Unix(created, 0).UTC(), acct.String
	if bound.Valid {
		k.BoundAt = time.Unix(bound.Int64, 0).UTC()
	}
	return &k, nil
}

// GetACMEEABKey returns the provisioner's EAB key with this key ID.
func (db *DB) GetACMEEABKey(ctx context.Context, provisioner, kid string) (*ACMEEABKey, error) {
	return scanEAB(db.row(ctx, nil, `SELECT `+eabColumns+` FROM acme_eab_keys WHERE kid = ? AND provisioner = ?`, kid, provisioner))
}

// ListACMEEABKeys lists EAB keys (of one provisioner when provisioner is not empty),
// oldest first.
func (db *DB) ListACMEEABKeys(ctx context.Context, provisioner string) ([]*ACMEEABKey, error) {
	return all(ctx, db, nil, scanEAB, `SELECT `+eabColumns+` FROM acme_eab_keys WHERE provisioner = ? OR ? = '' ORDER BY created_at, kid`, provisioner, provisioner)
}
