package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
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

// The ACME server runs a few statements very often: they are prepared once per
// connection (parsing SQL costs SQLite more than running these does).
type stmtKey struct {
	db *DB
	q  string
}

var stmtCache sync.Map // stmtKey → *sql.Stmt

func (db *DB) prepared(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	key := stmtKey{db, q}
	v, ok := stmtCache.Load(key)
	if !ok {
		st, err := db.sql.PrepareContext(ctx, q)
		if err != nil {
			return nil, err
		}
		var loaded bool
		if v, loaded = stmtCache.LoadOrStore(key, st); loaded {
			st.Close()
		}
	}
	st := v.(*sql.Stmt)
	if tx != nil {
		return tx.StmtContext(ctx, st), nil
	}
	return st, nil
}

// exec runs a prepared statement, in tx when tx is not nil.
func (db *DB) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	db.stats.statements.Add(1)
	st, err := db.prepared(ctx, tx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// row runs a prepared one-row query, in tx when tx is not nil. Outside a transaction
// it runs on the write connection when that is idle: its page cache survives this
// process's commits, where every other connection must re-read its pages after each.
func (db *DB) row(ctx context.Context, tx *sql.Tx, q string, args ...any) scanner {
	db.stats.statements.Add(1)
	if tx == nil && db.wmu.TryLock() {
		if db.w == nil {
			db.wmu.Unlock()
		} else {
			st, err := db.wprepared(ctx, q)
			if err != nil {
				db.wmu.Unlock()
				return errScanner{err}
			}
			return lockedRow{st.QueryRowContext(ctx, args...), &db.wmu}
		}
	}
	st, err := db.prepared(ctx, tx, q)
	if err != nil {
		return errScanner{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// wprepared returns q prepared on the write connection (wmu held).
func (db *DB) wprepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if st := db.wstmts[q]; st != nil {
		return st, nil
	}
	st, err := db.w.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if db.wstmts == nil {
		db.wstmts = map[string]*sql.Stmt{}
	}
	db.wstmts[q] = st
	return st, nil
}

// lockedRow is a row read on the write connection; Scan releases the connection.
type lockedRow struct {
	r  *sql.Row
	mu *sync.Mutex
}

func (l lockedRow) Scan(dst ...any) error {
	defer l.mu.Unlock()
	return l.r.Scan(dst...)
}

type errScanner struct{ err error }

func (e errScanner) Scan(...any) error { return e.err }

// all runs a prepared query and scans every row.
func all[T any](ctx context.Context, db *DB, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	st, err := db.prepared(ctx, nil, q)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// changed reports whether a statement changed a row.
func changed(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
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
			SELECT ?, ? WHERE EXISTS (SELECT 1 FROM acme_accounts WHERE id = ? AND thumbprint = ? AND status = 'valid')
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

// lightTx runs fn in a transaction that is not synced to disk on commit (synchronous
// NORMAL): for bookkeeping whose loss in a power cut costs nothing — spent-nonce
// records of requests that changed nothing, validation progress that a restarted
// server redoes. It is visible to every reader at once like any other commit, and the
// next synced commit makes it durable. Writers still take turns, on one connection, and
// are group-committed (store.go).
func (db *DB) lightTx(ctx context.Context, fn func(*sql.Tx) error) error {
	return db.group(ctx, "NORMAL", fn)
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
	err := db.sql.QueryRowContext(ctx, `SELECT value FROM acme_secrets WHERE name = ?`, name).Scan(&v)
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
		_, err := tx.ExecContext(ctx, `INSERT INTO acme_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, nv)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM acme_secrets WHERE name = ?`, name).Scan(&v)
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
			res, err := tx.ExecContext(ctx, `UPDATE acme_eab_keys SET bound_account = ?, bound_at = ? WHERE kid = ? AND provisioner = ? AND bound_account IS NULL`,
				a.ID, a.CreatedAt.Unix(), a.EABKID, a.Provisioner)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 0 {
				return ErrEABUsed
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO acme_accounts (`+acmeAccountColumns+`) VALUES (?,?,?,?,?,?,?,?)`,
			a.ID, a.Provisioner, a.Thumbprint, string(a.JWK), a.Status, contactsJSON(a.Contacts), eab, a.CreatedAt.Unix())
		if isUniqueViolation(err) {
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
			if _, err := tx.ExecContext(ctx, `UPDATE acme_accounts SET contacts = ? WHERE id = ? AND status = 'valid'`, contactsJSON(contacts), id); err != nil {
				return err
			}
		}
		if status != "" {
			res, err := tx.ExecContext(ctx, `UPDATE acme_accounts SET status = ? WHERE id = ? AND status = 'valid'`, status, id)
			if err != nil {
				return err
			}
			if k, _ := res.RowsAffected(); k == 0 {
				return ErrNotFound
			}
		}
		var err error
		out, err = scanACMEAccount(tx.QueryRowContext(ctx, `SELECT `+acmeAccountColumns+` FROM acme_accounts WHERE id = ?`, id))
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
		res, err := tx.ExecContext(ctx, `UPDATE acme_accounts SET thumbprint = ?, jwk = ? WHERE id = ? AND thumbprint = ? AND status = 'valid'`,
			newThumbprint, string(newJWK), id, oldThumbprint)
		if isUniqueViolation(err) {
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
		_, err := tx.ExecContext(ctx, `INSERT INTO acme_eab_keys (kid, provisioner, hmac_key, note, created_at) VALUES (?,?,?,?,?)`,
			k.KID, k.Provisioner, k.Key, k.Note, k.CreatedAt.Unix())
		if isUniqueViolation(err) {
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
	return scanEAB(db.sql.QueryRowContext(ctx, `SELECT `+eabColumns+` FROM acme_eab_keys WHERE kid = ? AND provisioner = ?`, kid, provisioner))
}

// ListACMEEABKeys lists EAB keys (of one provisioner when provisioner is not empty),
// oldest first.
func (db *DB) ListACMEEABKeys(ctx context.Context, provisioner string) ([]*ACMEEABKey, error) {
	return all(ctx, db, scanEAB, `SELECT `+eabColumns+` FROM acme_eab_keys WHERE provisioner = ? OR ? = '' ORDER BY created_at, kid`, provisioner, provisioner)
}

// ---- orders

const acmeOrderColumns = `id, account_id, provisioner, status, identifiers, profile, not_before, not_after, expires_at, error, cert_serial, replaces, created_at, authz_ids`

func scanACMEOrder(s scanner) (*ACMEOrder, error) {
	var o ACMEOrder
	var idents, perr, authzs string
	var nb, na, exp, created int64
	if err := s.Scan(&o.ID, &o.AccountID, &o.Provisioner, &o.Status, &idents, &o.Profile, &nb, &na, &exp, &perr, &o.CertSerial, &o.Replaces, &created, &authzs); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	if err := json.Unmarshal([]byte(idents), &o.Identifiers); err != nil {
		return nil, fmt.Errorf("order %s: identifiers: %w", o.ID, err)
	}
	if err := json.Unmarshal([]byte(authzs), &o.AuthzIDs); err != nil {
		return nil, fmt.Errorf("order %s: authorizations: %w", o.ID, err)
	}
	o.NotBefore, o.NotAfter = unixOrZero(nb), unixOrZero(na)
	o.Expires, o.CreatedAt = time.Unix(exp, 0).UTC(), time.Unix(created, 0).UTC()
	if perr != "" {
		o.Error = []byte(perr)
	}
	return &o, nil
}

func unixOrZero(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

func zeroOrUnix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// identKey is the canonical form of an identifier set: sorted, type:value, comma-joined.
func identKey(ids []ACMEIdentifier) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.Type + ":" + id.Value
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

// NewOrderOptions are the checks CreateACMEOrder makes in its transaction.
type NewOrderOptions struct {
	// Reuse returns a live (pending or ready, unexpired) order of the account with the
	// same identifiers, profile and replaces instead of creating one.
	Reuse bool
	// MaxPerMinute > 0 limits the orders an account creates per minute (ErrRateLimited).
	MaxPerMinute int
	Now          time.Time
}

// CreateACMEOrder stores an order and its authorizations, or with opts.Reuse returns an
// existing live order for the same identifiers (reused reports which). o.AuthzIDs
// and each authz's fields must be filled in.
func (db *DB) CreateACMEOrder(ctx context.Context, o *ACMEOrder, authzs []*ACMEAuthz, opts NewOrderOptions, n *Nonce) (out *ACMEOrder, reused bool, err error) {
	key := identKey(o.Identifiers)
	err = db.lightTx(ctx, func(tx *sql.Tx) error {
		if err := db.spendNonce(ctx, tx, n); err != nil {
			return err
		}
		if opts.Reuse {
			ex, err := scanACMEOrder(db.row(ctx, tx, `SELECT `+acmeOrderColumns+` FROM acme_orders
				WHERE account_id = ? AND ident_key = ? AND status IN ('pending', 'ready') AND profile = ? AND replaces = ? AND expires_at > ?
				ORDER BY created_at DESC LIMIT 1`, o.AccountID, key, o.Profile, o.Replaces, opts.Now.Unix()+60))
			if err == nil {
				out, reused = ex, true
				return nil
			}
			if !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		if opts.MaxPerMinute > 0 {
			var k int
			if err := db.row(ctx, tx, `SELECT COUNT(*) FROM acme_orders WHERE account_id = ? AND created_at > ?`, o.AccountID, opts.Now.Unix()-60).Scan(&k); err != nil {
				return err
			}
			if k >= opts.MaxPerMinute {
				return ErrRateLimited
			}
		}
		if o.Replaces != "" {
			var k int
			if err := db.row(ctx, tx, `SELECT COUNT(*) FROM acme_orders WHERE replaces = ? AND replaces <> '' AND status <> 'invalid'`, o.Replaces).Scan(&k); err != nil {
				return err
			}
			if k > 0 {
				return ErrAlreadyReplaced
			}
		}
		idents, _ := json.Marshal(o.Identifiers)
		authzIDs, _ := json.Marshal(o.AuthzIDs)
		if _, err := db.exec(ctx, tx, `INSERT INTO acme_orders (`+acmeOrderColumns+`, ident_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			o.ID, o.AccountID, o.Provisioner, o.Status, string(idents), o.Profile, zeroOrUnix(o.NotBefore), zeroOrUnix(o.NotAfter),
			o.Expires.Unix(), string(o.Error), o.CertSerial, o.Replaces, o.CreatedAt.Unix(), string(authzIDs), key); err != nil {
			return err
		}
		for i, a := range authzs {
			if _, err := db.exec(ctx, tx, `INSERT INTO acme_authzs (`+acmeAuthzColumns+`, position) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
				a.ID, a.OrderID, a.AccountID, a.Identifier.Type, a.Identifier.Value, a.Wildcard, a.Status, a.Expires.Unix(), a.Token,
				a.ChallType, a.ChallStatus, zeroOrUnix(a.Validated), string(a.ChallError), zeroOrUnix(a.StartedAt), i); err != nil {
				return err
			}
		}
		out = o
		return nil
	})
	return out, reused, err
}

// GetACMEOrder returns an order with its authorization IDs.
func (db *DB) GetACMEOrder(ctx context.Context, id string) (*ACMEOrder, error) {
	return scanACMEOrder(db.row(ctx, nil, `SELECT `+acmeOrderColumns+` FROM acme_orders WHERE id = ?`, id))
}

// GetACMEOrderByCert returns the order that produced the certificate with this serial.
func (db *DB) GetACMEOrderByCert(ctx context.Context, serial string) (*ACMEOrder, error) {
	return scanACMEOrder(db.row(ctx, nil, `SELECT `+acmeOrderColumns+` FROM acme_orders WHERE cert_serial = ? AND cert_serial <> '' AND status = 'valid'`, serial))
}

// GetACMEOrderCert returns the valid order that produced the certificate with this
// serial together with the certificate's DER, in one read.
func (db *DB) GetACMEOrderCert(ctx context.Context, serial string) (*ACMEOrder, []byte, error) {
	var der []byte
	o, err := scanACMEOrder(extraScanner{db.row(ctx, nil, `SELECT o.`+strings.ReplaceAll(acmeOrderColumns, ", ", ", o.")+`, c.der
		FROM acme_orders o JOIN certificates c ON c.serial = o.cert_serial
		WHERE o.cert_serial = ? AND o.cert_serial <> '' AND o.status = 'valid'`, serial), &der})
	if err != nil {
		return nil, nil, err
	}
	return o, der, nil
}

// extraScanner scans one more column after those its caller asks for.
type extraScanner struct {
	s     scanner
	extra any
}

func (e extraScanner) Scan(dst ...any) error { return e.s.Scan(append(dst, e.extra)...) }

// ACMECertReplaced reports whether a live order replaces the certificate.
func (db *DB) ACMECertReplaced(ctx context.Context, serial string) (bool, error) {
	var k int
	err := db.row(ctx, nil, `SELECT COUNT(*) FROM acme_orders WHERE replaces = ? AND replaces <> '' AND status <> 'invalid'`, serial).Scan(&k)
	return k > 0, err
}

// ListACMEOrders returns up to limit order IDs of the account after skipping offset,
// newest first.
func (db *DB) ListACMEOrders(ctx context.Context, accountID string, limit, offset int) ([]string, error) {
	return all(ctx, db, func(s scanner) (string, error) {
		var id string
		return id, s.Scan(&id)
	}, `SELECT id FROM acme_orders WHERE account_id = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?`, accountID, limit, offset)
}

// FinalizeACMEOrder records the certificate issued for a ready order: it becomes
// valid, in the transaction that spends the request's nonce. ErrConflict if the order
// is not ready any more (finalized concurrently, or deactivated).
func (db *DB) FinalizeACMEOrder(ctx context.Context, orderID, serial string, n *Nonce) error {
	return db.lightTx(ctx, func(tx *sql.Tx) error {
		if err := db.spendNonce(ctx, tx, n); err != nil {
			return err
		}
		ok, err := changed(db.exec(ctx, tx, `UPDATE acme_orders SET status = 'valid', cert_serial = ? WHERE id = ? AND status = 'ready'`, serial, orderID))
		if err == nil && !ok {
			err = ErrConflict
		}
		return err
	})
}

// ---- authorizations

const acmeAuthzColumns = `id, order_id, account_id, ident_type, ident_value, wildcard, status, expires_at, token, chall_type, chall_status, validated_at, chall_error, started_at`

func scanACMEAuthz(s scanner) (*ACMEAuthz, error) {
	var a ACMEAuthz
	var exp, val, started int64
	var cerr string
	if err := s.Scan(&a.ID, &a.OrderID, &a.AccountID, &a.Identifier.Type, &a.Identifier.Value, &a.Wildcard, &a.Status, &exp, &a.Token,
		&a.ChallType, &a.ChallStatus, &val, &cerr, &started); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	a.Expires, a.Validated, a.StartedAt = time.Unix(exp, 0).UTC(), unixOrZero(val), unixOrZero(started)
	if cerr != "" {
		a.ChallError = []byte(cerr)
	}
	return &a, nil
}

// GetACMEAuthz returns an authorization.
func (db *DB) GetACMEAuthz(ctx context.Context, id string) (*ACMEAuthz, error) {
	return scanACMEAuthz(db.row(ctx, nil, `SELECT `+acmeAuthzColumns+` FROM acme_authzs WHERE id = ?`, id))
}

// StartACMEChallenge marks the challenge type the client answered as processing if the
// authorization is pending with no challenge under way, and returns the authorization
// afterwards; started reports whether this call started it (the caller validates).
// Not synced: lost in a power cut, the client answers the challenge again.
func (db *DB) StartACMEChallenge(ctx context.Context, authzID, challType string, now time.Time, n *Nonce) (a *ACMEAuthz, started bool, err error) {
	err = db.lightTx(ctx, func(tx *sql.Tx) error {
		if err := db.spendNonce(ctx, tx, n); err != nil {
			return err
		}
		var err error
		a, err = scanACMEAuthz(db.row(ctx, tx, `UPDATE acme_authzs SET chall_type = ?, chall_status = 'processing', started_at = ?
			WHERE id = ? AND status = 'pending' AND chall_status = '' AND expires_at > ? RETURNING `+acmeAuthzColumns, challType, now.Unix(), authzID, now.Unix()))
		if err == nil {
			started = true
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		a, err = scanACMEAuthz(db.row(ctx, tx, `SELECT `+acmeAuthzColumns+` FROM acme_authzs WHERE id = ?`, authzID))
		return err
	})
	return a, started, err
}

// FinishACMEChallenge records a validation outcome (problem nil = valid) and, in the
// same transaction, moves the order to ready when this was its last pending
// authorization, or to invalid when the validation failed. Not synced: lost in a
// power cut, the validation is redone (StaleACMEChallenges).
func (db *DB) FinishACMEChallenge(ctx context.Context, authzID string, problem []byte, now time.Time) error {
	return db.lightTx(ctx, func(tx *sql.Tx) error {
		status := "valid"
		if problem != nil {
			status = "invalid"
		}
		var orderID string
		err := db.row(ctx, tx, `UPDATE acme_authzs SET status = ?, chall_status = ?, validated_at = ?, chall_error = ?
			WHERE id = ? AND status = 'pending' AND chall_status = 'processing' RETURNING order_id`, status, status, now.Unix(), string(problem), authzID).Scan(&orderID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // deactivated or expired meanwhile
		}
		if err != nil {
			return err
		}
		if problem != nil {
			return db.invalidateOrder(ctx, tx, orderID, problem)
		}
		var left int
		if err := db.row(ctx, tx, `SELECT COUNT(*) FROM acme_authzs WHERE order_id = ? AND status <> 'valid'`, orderID).Scan(&left); err != nil {
			return err
		}
		if left == 0 {
			_, err := db.exec(ctx, tx, `UPDATE acme_orders SET status = 'ready' WHERE id = ? AND status = 'pending'`, orderID)
			return err
		}
		return nil
	})
}

func (db *DB) invalidateOrder(ctx context.Context, tx *sql.Tx, orderID string, problem []byte) error {
	_, err := db.exec(ctx, tx, `UPDATE acme_orders SET status = 'invalid', error = ? WHERE id = ? AND status IN ('pending', 'ready')`, string(problem), orderID)
	return err
}

// DeactivateACMEAuthz deactivates a pending or valid authorization and invalidates its
// order if that was not yet finalized. ErrConflict if the authorization was in
// another state.
func (db *DB) DeactivateACMEAuthz(ctx context.Context, authzID string, problem []byte, n *Nonce) error {
	return db.lightTx(ctx, func(tx *sql.Tx) error {
		if err := db.spendNonce(ctx, tx, n); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE acme_authzs SET status = 'deactivated' WHERE id = ? AND status IN ('pending', 'valid')`, authzID)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return ErrConflict
		}
		var orderID string
		if err := tx.QueryRowContext(ctx, `SELECT order_id FROM acme_authzs WHERE id = ?`, authzID).Scan(&orderID); err != nil {
			return err
		}
		return db.invalidateOrder(ctx, tx, orderID, problem)
	})
}

// StaleACMEChallenges lists authorizations whose validation started before `before`
// and never finished (their server stopped): another server picks them up.
func (db *DB) StaleACMEChallenges(ctx context.Context, before time.Time, limit int) ([]*ACMEAuthz, error) {
	return all(ctx, db, scanACMEAuthz, `SELECT `+acmeAuthzColumns+` FROM acme_authzs WHERE chall_status = 'processing' AND started_at < ? LIMIT ?`, before.Unix(), limit)
}

// ClaimACMEChallenge moves the start time of a stale validation to now, so one server
// takes it over; it reports whether this call won.
func (db *DB) ClaimACMEChallenge(ctx context.Context, authzID string, startedAt, now time.Time) (bool, error) {
	var won bool
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		won, err = changed(tx.ExecContext(ctx, `UPDATE acme_authzs SET started_at = ? WHERE id = ? AND chall_status = 'processing' AND started_at = ?`, now.Unix(), authzID, startedAt.Unix()))
		return err
	})
	return won, err
}
