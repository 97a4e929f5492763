package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ACME orders, authorizations and challenges (see acme.go for the contract).

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
		// Reuse, the rate limit and replaces are checks before an insert: they hold
		// against other servers' concurrent orders under the account's lock (and the
		// replaced certificate's, which another account cannot hold but may name).
		if err := db.lockName(ctx, tx, "acme-account:"+o.AccountID); err != nil {
			return err
		}
		if o.Replaces != "" {
			if err := db.lockName(ctx, tx, "acme-replaces:"+o.Replaces); err != nil {
				return err
			}
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

// ListACMEOrders returns up to limit order IDs of the account after skipping offset,
// newest first.
func (db *DB) ListACMEOrders(ctx context.Context, accountID string, limit, offset int) ([]string, error) {
	return all(ctx, db, nil, func(s scanner) (string, error) {
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
		// The order's last two authorizations may finish at once on two servers: each
		// counts under the order's lock, so the second sees the first's commit.
		if err := db.lockName(ctx, tx, "acme-order:"+orderID); err != nil {
			return err
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
// another state, ErrNotFound if there is none.
func (db *DB) DeactivateACMEAuthz(ctx context.Context, authzID string, problem []byte, n *Nonce) error {
	err := db.lightTx(ctx, func(tx *sql.Tx) error {
		if err := db.spendNonce(ctx, tx, n); err != nil {
			return err
		}
		res, err := db.exec(ctx, tx, `UPDATE acme_authzs SET status = 'deactivated' WHERE id = ? AND status IN ('pending', 'valid')`, authzID)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return ErrConflict
		}
		var orderID string
		if err := db.row(ctx, tx, `SELECT order_id FROM acme_authzs WHERE id = ?`, authzID).Scan(&orderID); err != nil {
			return err
		}
		return db.invalidateOrder(ctx, tx, orderID, problem)
	})
	if errors.Is(err, ErrConflict) {
		return db.existsOr(ctx, err, `SELECT COUNT(*) FROM acme_authzs WHERE id = ?`, authzID)
	}
	return err
}

// StaleACMEChallenges lists authorizations whose validation started before `before`
// and never finished (their server stopped): another server picks them up.
func (db *DB) StaleACMEChallenges(ctx context.Context, before time.Time, limit int) ([]*ACMEAuthz, error) {
	return all(ctx, db, nil, scanACMEAuthz, `SELECT `+acmeAuthzColumns+` FROM acme_authzs WHERE chall_status = 'processing' AND started_at < ? LIMIT ?`, before.Unix(), limit)
}

// ClaimACMEChallenge moves the start time of a stale validation to now, so one server
// takes it over; it reports whether this call won.
func (db *DB) ClaimACMEChallenge(ctx context.Context, authzID string, startedAt, now time.Time) (bool, error) {
	var won bool
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		won, err = changed(db.exec(ctx, tx, `UPDATE acme_authzs SET started_at = ? WHERE id = ? AND chall_status = 'processing' AND started_at = ?`, now.Unix(), authzID, startedAt.Unix()))
		return err
	})
	return won, err
}
