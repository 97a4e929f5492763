package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// What Nix issuance must refuse (blocked keys, SSH signers bound to another
// subject), the issuance that records certificate, details and attempt as one, and
// the attempt log's bounds.

// KeyBlockedError refuses an issuance for a public key revoked for key compromise.
type KeyBlockedError struct {
	Serial    string // the certificate whose revocation blocked the key
	BlockedAt time.Time
}

func (e *KeyBlockedError) Error() string {
	return fmt.Sprintf("the public key was blocked at %s, when certificate %s was revoked for key compromise", e.BlockedAt.Format(time.RFC3339), e.Serial)
}

// SignerBoundError refuses an SSH enrollment whose signer enrolled for another
// subject.
type SignerBoundError struct {
	Signer  string
	Subject string // the subject it enrolled for
}

func (e *SignerBoundError) Error() string {
	return fmt.Sprintf("SSH signer %s already enrolled for subject %q", e.Signer, e.Subject)
}

// NixIssuance is everything one Nix issuance records, in one transaction.
type NixIssuance struct {
	Cert    *Cert
	Nix     *NixCert
	Attempt *NixAttempt // the "issued" attempt
	// Signers are the SSH signers that authenticated it, bound to Nix.Subject;
	// MultiSubject says the mapping grants several subjects.
	Signers      []string
	MultiSubject bool
	// TokenID, if set, is the token spent for it; its serial is recorded.
	TokenID string
}

// IssueNixCert records a Nix certificate, its issuance details, its attempt, its
// SSH signers and its token in one transaction: all of it commits or none does, so
// no certificate exists without its attempt record. It refuses, before writing, a
// blocked key (*KeyBlockedError), an SSH signer bound to another subject
// (*SignerBoundError), or a key name held by another key (*KeyNameTakenError);
// ErrConflict is a serial collision.
func (db *DB) IssueNixCert(ctx context.Context, r *NixIssuance) error {
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		if err := db.lockName(ctx, tx, "nix-key:"+hex.EncodeToString(r.Nix.PublicKey)); err != nil {
			return err
		}
		var serial string
		var at int64
		err := db.row(ctx, tx, `SELECT serial, blocked_at FROM nix_blocked_keys WHERE public_key = ?`, r.Nix.PublicKey).Scan(&serial, &at)
		if err == nil {
			return &KeyBlockedError{Serial: serial, BlockedAt: time.Unix(at, 0).UTC()}
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		for _, s := range r.Signers {
			if err := db.lockName(ctx, tx, "nix-signer:"+s); err != nil {
				return err
			}
			var subject string
			var multi int
			err := db.row(ctx, tx, `SELECT subject, multi_subject FROM nix_ssh_signers WHERE signer = ? AND subject != ? ORDER BY multi_subject, first_at LIMIT 1`,
				s, r.Nix.Subject).Scan(&subject, &multi)
			if err == nil && (multi == 0 || !r.MultiSubject) {
				return &SignerBoundError{Signer: s, Subject: subject}
			} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if err := db.putCert(ctx, tx, r.Cert); err != nil {
			return err
		}
		if err := db.putNixCert(ctx, tx, r.Nix); err != nil {
			return err
		}
		multi := 0
		if r.MultiSubject {
			multi = 1
		}
		for _, s := range r.Signers {
			if _, err := db.exec(ctx, tx, `INSERT INTO nix_ssh_signers (signer, subject, multi_subject, first_at) VALUES (?,?,?,?)
				ON CONFLICT (signer, subject) DO UPDATE SET multi_subject = excluded.multi_subject`, s, r.Nix.Subject, multi, r.Nix.CreatedAt.Unix()); err != nil {
				return err
			}
		}
		if r.TokenID != "" {
			if _, err := db.exec(ctx, tx, `UPDATE nix_tokens SET used_serial = ? WHERE id = ?`, r.Cert.Serial, r.TokenID); err != nil {
				return err
			}
		}
		return db.addNixAttempt(ctx, tx, r.Attempt)
	})
	return err
}

// BlockNixKey blocks a public key for good: no certificate is issued for it again.
// Blocking a blocked key keeps the first record.
func (db *DB) BlockNixKey(ctx context.Context, publicKey []byte, serial string, at time.Time) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		if err := db.lockName(ctx, tx, "nix-key:"+hex.EncodeToString(publicKey)); err != nil {
			return err
		}
		_, err := db.exec(ctx, tx, `INSERT INTO nix_blocked_keys (public_key, serial, blocked_at) VALUES (?,?,?) ON CONFLICT (public_key) DO NOTHING`,
			publicKey, serial, at.Unix())
		return err
	})
}

// NixAttemptsDropped is the counter of attempts PruneNixAttempts removed.
const NixAttemptsDropped = "attempts_dropped"

// PruneNixAttempts bounds the attempt log: it deletes attempts older than before
// and all but the newest keep, adds how many it deleted to the NixAttemptsDropped
// counter, and returns that number.
func (db *DB) PruneNixAttempts(ctx context.Context, keep int, before time.Time) (int64, error) {
	var n int64
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		n = 0
		var maxID sql.NullInt64
		if err := db.row(ctx, tx, `SELECT MAX(id) FROM nix_attempts`).Scan(&maxID); err != nil || !maxID.Valid {
			return err
		}
		res, err := db.exec(ctx, tx, `DELETE FROM nix_attempts WHERE at < ? OR id <= ?`, before.Unix(), maxID.Int64-int64(keep))
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		_, err = db.exec(ctx, tx, `INSERT INTO nix_counters (name, value) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET value = nix_counters.value + excluded.value`, NixAttemptsDropped, n)
		return err
	})
	return n, err
}

// NixCounter returns a counter's value (0 if never set).
func (db *DB) NixCounter(ctx context.Context, name string) (int64, error) {
	var v int64
	err := db.row(ctx, nil, `SELECT value FROM nix_counters WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}
