package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Nix signing certificate records (internal/nixcert): one-time tokens, what each
// certificate was issued on, every issuance attempt, and SSH challenges.

// Token errors, reported by ConsumeNixToken.
var (
	ErrTokenUsed    = errors.New("token already used")
	ErrTokenExpired = errors.New("token expired")
)

// NixToken is a one-time enrollment token; only its hash is stored.
type NixToken struct {
	ID         string
	Hash       []byte
	Subject    string
	KeyName    string // "" = any key name of the subject
	Targets    []string
	Scope      string
	Validity   time.Duration
	CreatedBy  string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	UsedAt     *time.Time
	UsedSerial string
}

const nixTokenColumns = `id, hash, subject, key_name, targets, scope, validity, created_by, created_at, expires_at, used_at, used_serial`

func scanNixToken(s scanner) (*NixToken, error) {
	var t NixToken
	var targets string
	var validity, created, expires int64
	var used sql.NullInt64
	if err := s.Scan(&t.ID, &t.Hash, &t.Subject, &t.KeyName, &targets, &t.Scope, &validity, &t.CreatedBy, &created, &expires, &used, &t.UsedSerial); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	if err := json.Unmarshal([]byte(targets), &t.Targets); err != nil {
		return nil, fmt.Errorf("token %s: targets: %w", t.ID, err)
	}
	t.Validity = time.Duration(validity) * time.Second
	t.CreatedAt, t.ExpiresAt = time.Unix(created, 0).UTC(), time.Unix(expires, 0).UTC()
	if used.Valid {
		u := time.Unix(used.Int64, 0).UTC()
		t.UsedAt = &u
	}
	return &t, nil
}

func jsonList(l []string) string {
	if l == nil {
		l = []string{}
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// PutNixToken stores a new token; ErrConflict if its ID or hash exists.
func (db *DB) PutNixToken(ctx context.Context, t *NixToken) error {
	_, err := db.exec(ctx, nil, `INSERT INTO nix_tokens (`+nixTokenColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,NULL,'')`,
		t.ID, t.Hash, t.Subject, t.KeyName, jsonList(t.Targets), t.Scope, int64(t.Validity/time.Second), t.CreatedBy, t.CreatedAt.Unix(), t.ExpiresAt.Unix())
	if db.isUniqueViolation(err) {
		return ErrConflict
	}
	return err
}

// ConsumeNixToken spends the token with this hash in one transaction: ErrNotFound if
// there is none, ErrTokenUsed or ErrTokenExpired (with the token) if it cannot be
// spent, and check's error (with the token, not spent) if check refuses it.
func (db *DB) ConsumeNixToken(ctx context.Context, hash []byte, now time.Time, check func(*NixToken) error) (*NixToken, error) {
	var out *NixToken
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		t, err := scanNixToken(db.row(ctx, tx, `SELECT `+nixTokenColumns+` FROM nix_tokens WHERE hash = ?`, hash))
		if err != nil {
			return err
		}
		out = t
		switch {
		case t.UsedAt != nil:
			return ErrTokenUsed
		case !now.Before(t.ExpiresAt):
			return ErrTokenExpired
		}
		if check != nil {
			if err := check(t); err != nil {
				return err
			}
		}
		res, err := db.exec(ctx, tx, `UPDATE nix_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL`, now.Unix(), t.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrTokenUsed
		}
		u := now.UTC().Truncate(time.Second)
		t.UsedAt = &u
		return nil
	})
	return out, err
}

// SetNixTokenSerial records the certificate issued with a spent token; ErrNotFound if
// there is no such token.
func (db *DB) SetNixTokenSerial(ctx context.Context, id, serial string) error {
	ok, err := changed(db.exec(ctx, nil, `UPDATE nix_tokens SET used_serial = ? WHERE id = ?`, serial, id))
	if err == nil && !ok {
		return ErrNotFound
	}
	return err
}

// ReleaseNixToken un-spends a token whose certificate could not be issued:
// ErrNotFound if there is no such token, ErrConflict if a certificate was issued
// with it (it stays spent).
func (db *DB) ReleaseNixToken(ctx context.Context, id string) error {
	ok, err := changed(db.exec(ctx, nil, `UPDATE nix_tokens SET used_at = NULL WHERE id = ? AND used_serial = ''`, id))
	if err != nil || ok {
		return err
	}
	return db.existsOr(ctx, ErrConflict, `SELECT COUNT(*) FROM nix_tokens WHERE id = ?`, id)
}

// ListNixTokens returns tokens, newest first.
func (db *DB) ListNixTokens(ctx context.Context) ([]*NixToken, error) {
	return all(ctx, db, nil, scanNixToken, `SELECT `+nixTokenColumns+` FROM nix_tokens ORDER BY created_at DESC, id`)
}

// NixCert is what a Nix certificate was issued for and on what authentication.
type NixCert struct {
	Serial      string
	Subject     string
	KeyName     string
	PublicKey   []byte
	Targets     []string
	Scope       string
	AuthMethod  string
	AuthAt      time.Time
	RenewedFrom string
	NotAfter    time.Time
	CreatedAt   time.Time
	// RevokedAt comes from the certificates table.
	RevokedAt *time.Time
}

const nixCertColumns = `n.serial, n.subject, n.key_name, n.public_key, n.targets, n.scope, n.auth_method, n.auth_at, n.renewed_from, n.not_after, n.created_at, c.revoked_at`

func scanNixCert(s scanner) (*NixCert, error) {
	var c NixCert
	var targets string
	var authAt, notAfter, created int64
	var revoked sql.NullInt64
	if err := s.Scan(&c.Serial, &c.Subject, &c.KeyName, &c.PublicKey, &targets, &c.Scope, &c.AuthMethod, &authAt, &c.RenewedFrom, &notAfter, &created, &revoked); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	if err := json.Unmarshal([]byte(targets), &c.Targets); err != nil {
		return nil, fmt.Errorf("nix certificate %s: targets: %w", c.Serial, err)
	}
	c.AuthAt, c.NotAfter, c.CreatedAt = time.Unix(authAt, 0).UTC(), time.Unix(notAfter, 0).UTC(), time.Unix(created, 0).UTC()
	if revoked.Valid {
		r := time.Unix(revoked.Int64, 0).UTC()
		c.RevokedAt = &r
	}
	return &c, nil
}

// PutNixCert records a Nix certificate's issuance details (after PutCert). It
// refuses, with a *KeyNameTakenError, a key name that a live certificate already
// binds to another key.
func (db *DB) PutNixCert(ctx context.Context, c *NixCert) error {
	return db.Tx(ctx, func(tx *sql.Tx) error { return db.putNixCert(ctx, tx, c) })
}

// putNixCert is PutNixCert inside the caller's transaction.
func (db *DB) putNixCert(ctx context.Context, tx *sql.Tx, c *NixCert) error {
	// The key-name check and the insert are one transaction holding the name's
	// lock, so two issuances racing for one name with different keys, on any
	// servers of the database, cannot both be recorded.
	if err := db.lockName(ctx, tx, "nix-key-name:"+c.KeyName); err != nil {
		return err
	}
	var serial string
	var notAfter int64
	err := db.row(ctx, tx, `SELECT n.serial, n.not_after FROM nix_certs n LEFT JOIN certificates c ON c.serial = n.serial
		WHERE n.key_name = ? AND n.public_key != ? AND c.revoked_at IS NULL AND n.not_after > ? ORDER BY n.not_after DESC LIMIT 1`,
		c.KeyName, c.PublicKey, c.CreatedAt.Unix()).Scan(&serial, &notAfter)
	switch {
	case err == nil:
		return &KeyNameTakenError{KeyName: c.KeyName, Serial: serial, NotAfter: time.Unix(notAfter, 0).UTC()}
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	_, err = db.exec(ctx, tx, `INSERT INTO nix_certs (serial, subject, key_name, public_key, targets, scope, auth_method, auth_at, renewed_from, not_after, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
		c.Serial, c.Subject, c.KeyName, c.PublicKey, jsonList(c.Targets), c.Scope, c.AuthMethod, c.AuthAt.Unix(), c.RenewedFrom, c.NotAfter.Unix(), c.CreatedAt.Unix())
	if db.isUniqueViolation(err) {
		return ErrConflict
	}
	return err
}

// KeyNameTakenError is PutNixCert's refusal: a live (unrevoked, unexpired) Nix
// certificate already binds the key name to another key. It matches ErrConflict.
type KeyNameTakenError struct {
	KeyName  string
	Serial   string // the live certificate holding the name
	NotAfter time.Time
}

func (e *KeyNameTakenError) Error() string {
	return fmt.Sprintf("key name %q is already certified for another key (certificate %s)", e.KeyName, e.Serial)
}

func (e *KeyNameTakenError) Is(target error) bool { return target == ErrConflict }

// GetNixCert returns the record of the Nix certificate with this serial.
func (db *DB) GetNixCert(ctx context.Context, serial string) (*NixCert, error) {
	return scanNixCert(db.row(ctx, nil, `SELECT `+nixCertColumns+` FROM nix_certs n LEFT JOIN certificates c ON c.serial = n.serial WHERE n.serial = ?`, serial))
}

// NixCertFilter selects Nix certificates; zero fields don't filter.
type NixCertFilter struct {
	Subject string
	KeyName string
	// LiveAt keeps certificates not revoked and not expired at this time.
	LiveAt time.Time
	// PublicKey keeps certificates for this key; RenewedFrom, renewals of this serial.
	PublicKey   []byte
	RenewedFrom string
}

// ListNixCerts returns matching Nix certificates, newest first.
func (db *DB) ListNixCerts(ctx context.Context, f NixCertFilter) ([]*NixCert, error) {
	q := `SELECT ` + nixCertColumns + ` FROM nix_certs n LEFT JOIN certificates c ON c.serial = n.serial WHERE 1=1`
	var args []any
	if f.Subject != "" {
		q += ` AND n.subject = ?`
		args = append(args, f.Subject)
	}
	if f.KeyName != "" {
		q += ` AND n.key_name = ?`
		args = append(args, f.KeyName)
	}
	if f.PublicKey != nil {
		q += ` AND n.public_key = ?`
		args = append(args, f.PublicKey)
	}
	if f.RenewedFrom != "" {
		q += ` AND n.renewed_from = ?`
		args = append(args, f.RenewedFrom)
	}
	if !f.LiveAt.IsZero() {
		q += ` AND c.revoked_at IS NULL AND n.not_after > ?`
		args = append(args, f.LiveAt.Unix())
	}
	return all(ctx, db, nil, scanNixCert, q+` ORDER BY n.created_at DESC, n.serial`, args...)
}

// NixAttempt is one issuance attempt.
type NixAttempt struct {
	ID             int64
	At             time.Time
	Method         string
	Outcome        string // issued, refused
	Reason         string
	Subject        string
	KeyName        string
	KeyFingerprint string
	Remote         string
	TokenID        string
	SSHIdentity    string
	Serial         string
}

// AddNixAttempt records an attempt and sets its ID.
func (db *DB) AddNixAttempt(ctx context.Context, a *NixAttempt) error {
	return db.addNixAttempt(ctx, nil, a)
}

func (db *DB) addNixAttempt(ctx context.Context, tx *sql.Tx, a *NixAttempt) error {
	return db.row(ctx, tx, `INSERT INTO nix_attempts (at, method, outcome, reason, subject, key_name, key_fingerprint, remote, token_id, ssh_identity, serial) VALUES (?,?,?,?,?,?,?,?,?,?,?) RETURNING id`,
		a.At.Unix(), a.Method, a.Outcome, a.Reason, a.Subject, a.KeyName, a.KeyFingerprint, a.Remote, a.TokenID, a.SSHIdentity, a.Serial).Scan(&a.ID)
}

// ListNixAttempts returns the newest attempts first; limit 0 means all.
func (db *DB) ListNixAttempts(ctx context.Context, limit int) ([]*NixAttempt, error) {
	q := `SELECT id, at, method, outcome, reason, subject, key_name, key_fingerprint, remote, token_id, ssh_identity, serial FROM nix_attempts ORDER BY id DESC`
	var args []any
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	return all(ctx, db, nil, func(s scanner) (*NixAttempt, error) {
		var a NixAttempt
		var at int64
		err := s.Scan(&a.ID, &at, &a.Method, &a.Outcome, &a.Reason, &a.Subject, &a.KeyName, &a.KeyFingerprint, &a.Remote, &a.TokenID, &a.SSHIdentity, &a.Serial)
		a.At = time.Unix(at, 0).UTC()
		return &a, err
	}, q, args...)
}

// PutNixChallenge stores a fresh challenge and drops expired ones.
func (db *DB) PutNixChallenge(ctx context.Context, value string, expires, now time.Time) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := db.exec(ctx, tx, `DELETE FROM nix_challenges WHERE expires_at <= ?`, now.Unix()); err != nil {
			return err
		}
		_, err := db.exec(ctx, tx, `INSERT INTO nix_challenges (value, expires_at) VALUES (?, ?)`, value, expires.Unix())
		if db.isUniqueViolation(err) {
			return ErrConflict
		}
		return err
	})
}

// ConsumeNixChallenge spends a challenge: ErrNotFound if it is unknown, spent or
// expired.
func (db *DB) ConsumeNixChallenge(ctx context.Context, value string, now time.Time) error {
	res, err := db.exec(ctx, nil, `DELETE FROM nix_challenges WHERE value = ? AND expires_at > ?`, value, now.Unix())
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrNotFound
	}
	return nil
}
