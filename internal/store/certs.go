package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Cert is one issued certificate as recorded.
type Cert struct {
	Serial    string // lowercase hex
	Issuer    string // CA key name: root, tls, nix
	Subject   string
	SANs      []string
	NotBefore time.Time
	NotAfter  time.Time
	DER       []byte
	Requester string
	Method    string
	CreatedAt time.Time
	RevokedAt *time.Time
	Reason    int
}

// Revoked reports whether the certificate has been revoked.
func (c *Cert) Revoked() bool { return c.RevokedAt != nil }

const certColumns = `serial, issuer, subject, sans, not_before, not_after, der, requester, method, created_at, revoked_at, revocation_reason`

func scanCert(s scanner) (*Cert, error) {
	var c Cert
	var sans string
	var nb, na, ca int64
	var ra, reason sql.NullInt64
	if err := s.Scan(&c.Serial, &c.Issuer, &c.Subject, &sans, &nb, &na, &c.DER, &c.Requester, &c.Method, &ca, &ra, &reason); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	if sans != "" {
		c.SANs = strings.Split(sans, ",")
	}
	c.NotBefore, c.NotAfter, c.CreatedAt = time.Unix(nb, 0).UTC(), time.Unix(na, 0).UTC(), time.Unix(ca, 0).UTC()
	if ra.Valid {
		t := time.Unix(ra.Int64, 0).UTC()
		c.RevokedAt = &t
		c.Reason = int(reason.Int64)
	}
	return &c, nil
}

// PutCert records a newly issued certificate; ErrConflict if the serial exists.
func (db *DB) PutCert(ctx context.Context, c *Cert) error {
	return db.Tx(ctx, func(tx *sql.Tx) error { return db.putCert(ctx, tx, c) })
}

// putCert is PutCert inside the caller's transaction.
func (db *DB) putCert(ctx context.Context, tx *sql.Tx, c *Cert) error {
	_, err := db.exec(ctx, tx, `INSERT INTO certificates (`+certColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,NULL,NULL)`,
		c.Serial, c.Issuer, c.Subject, strings.Join(c.SANs, ","), c.NotBefore.Unix(), c.NotAfter.Unix(), c.DER, c.Requester, c.Method, c.CreatedAt.Unix())
	if db.isUniqueViolation(err) {
		return fmt.Errorf("certificate serial %s: %w", c.Serial, ErrConflict)
	}
	return err
}

// GetCert returns the certificate with this serial (lowercase hex) or ErrNotFound.
func (db *DB) GetCert(ctx context.Context, serial string) (*Cert, error) {
	return scanCert(db.row(ctx, nil, `SELECT `+certColumns+` FROM certificates WHERE serial = ?`, serial))
}

// CertFilter selects certificates for ListCerts; zero fields don't filter.
type CertFilter struct {
	Issuer         string
	Subject        string
	ExpiringBefore time.Time // not_after before this (and not yet expired at Now)
	Now            time.Time
	IncludeRevoked bool
	Limit          int
}

// ListCerts returns certificates matching f, newest first.
func (db *DB) ListCerts(ctx context.Context, f CertFilter) ([]*Cert, error) {
	q := `SELECT ` + certColumns + ` FROM certificates WHERE 1=1`
	var args []any
	if f.Issuer != "" {
		q += ` AND issuer = ?`
		args = append(args, f.Issuer)
	}
	if f.Subject != "" {
		q += ` AND subject = ?`
		args = append(args, f.Subject)
	}
	if !f.ExpiringBefore.IsZero() {
		q += ` AND not_after < ? AND not_after >= ?`
		args = append(args, f.ExpiringBefore.Unix(), f.Now.Unix())
	}
	if !f.IncludeRevoked {
		q += ` AND revoked_at IS NULL`
	}
	q += ` ORDER BY created_at DESC, serial`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return all(ctx, db, nil, scanCert, q, args...)
}

// ErrAlreadyRevoked reports a revocation of a certificate that is already revoked.
var ErrAlreadyRevoked = errors.New("already revoked")

// RevokeCert marks a certificate revoked and bumps its issuer's CRL revision in the
// same transaction. ErrNotFound for an unknown serial, ErrAlreadyRevoked (wrapping the
// record) if it was revoked before.
func (db *DB) RevokeCert(ctx context.Context, serial string, at time.Time, reason int) (*Cert, error) {
	var out *Cert
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		// The conditional update decides the race between two revokers: the row lock
		// makes the second wait and then find revoked_at set.
		ok, err := changed(db.exec(ctx, tx, `UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ? AND revoked_at IS NULL`, at.Unix(), reason, serial))
		if err != nil {
			return err
		}
		c, err := scanCert(db.row(ctx, tx, `SELECT `+certColumns+` FROM certificates WHERE serial = ?`, serial))
		if err != nil {
			return err
		}
		out = c
		if !ok {
			return ErrAlreadyRevoked
		}
		return db.bumpCRLRevision(ctx, tx, c.Issuer)
	})
	return out, err
}

func (db *DB) bumpCRLRevision(ctx context.Context, tx *sql.Tx, issuer string) error {
	_, err := db.exec(ctx, tx, `INSERT INTO crls (issuer, revision, number, built_revision, this_update, next_update, der) VALUES (?, 1, 0, 0, 0, 0, NULL)
		ON CONFLICT (issuer) DO UPDATE SET revision = crls.revision + 1`, issuer)
	return err
}

// RevokedEntry is one line of a CRL.
type RevokedEntry struct {
	Serial    string
	RevokedAt time.Time
	Reason    int
}

// CRLState is the stored CRL of one issuer and whether it is current.
type CRLState struct {
	Revision      int64 // current revocation revision
	Number        int64 // CRL number of DER
	BuiltRevision int64
	ThisUpdate    time.Time
	NextUpdate    time.Time
	DER           []byte
}

// GetCRL returns the issuer's CRL state; a zero state (not ErrNotFound) if none yet.
func (db *DB) GetCRL(ctx context.Context, issuer string) (*CRLState, error) {
	var s CRLState
	var tu, nu int64
	err := db.row(ctx, nil, `SELECT revision, number, built_revision, this_update, next_update, der FROM crls WHERE issuer = ?`, issuer).
		Scan(&s.Revision, &s.Number, &s.BuiltRevision, &tu, &nu, &s.DER)
	if errors.Is(err, sql.ErrNoRows) {
		return &CRLState{}, nil
	}
	if err != nil {
		return nil, err
	}
	s.ThisUpdate, s.NextUpdate = time.Unix(tu, 0).UTC(), time.Unix(nu, 0).UTC()
	return &s, nil
}

// RebuildCRL builds a new CRL in one transaction: it takes the next CRL number (which
// locks the issuer's row, so one builder at a time across every server on the
// database), reads the revision and the revoked serials, calls build with them and
// stores the result. Two servers rebuilding at once get distinct, increasing numbers.
func (db *DB) RebuildCRL(ctx context.Context, issuer string, build func(number int64, revoked []RevokedEntry) (der []byte, thisUpdate, nextUpdate time.Time, err error)) (*CRLState, error) {
	var out CRLState
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var rev, num int64
		err := db.row(ctx, tx, `INSERT INTO crls (issuer, revision, number, built_revision, this_update, next_update, der) VALUES (?, 0, 1, 0, 0, 0, NULL)
			ON CONFLICT (issuer) DO UPDATE SET number = crls.number + 1 RETURNING revision, number`, issuer).Scan(&rev, &num)
		if err != nil {
			return err
		}
		revoked, err := all(ctx, db, tx, func(s scanner) (RevokedEntry, error) {
			var e RevokedEntry
			var at int64
			err := s.Scan(&e.Serial, &at, &e.Reason)
			e.RevokedAt = time.Unix(at, 0).UTC()
			return e, err
		}, `SELECT serial, revoked_at, revocation_reason FROM certificates WHERE issuer = ? AND revoked_at IS NOT NULL ORDER BY revoked_at, serial`, issuer)
		if err != nil {
			return err
		}
		der, tu, nu, err := build(num, revoked)
		if err != nil {
			return err
		}
		out = CRLState{Revision: rev, Number: num, BuiltRevision: rev, ThisUpdate: tu, NextUpdate: nu, DER: der}
		_, err = db.exec(ctx, tx, `UPDATE crls SET built_revision = ?, this_update = ?, next_update = ?, der = ? WHERE issuer = ?`,
			rev, tu.Unix(), nu.Unix(), der, issuer)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}
