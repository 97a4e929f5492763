package gate

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver
)

// The gate's database: SQLite in WAL mode with synchronous=NORMAL. A commit is atomic
// and survives a crash of the process; after a power loss the last commits may be
// rolled back, never half applied. Durability comes first from the NAR files, which
// are fsynced before their rows exist, and from the log, fsynced per entry before the
// admission it records is committed.
const schema = `
CREATE TABLE IF NOT EXISTS nars (
	url         TEXT PRIMARY KEY,   -- "nar/<nix32 file hash>.nar[.xz|.zst|.bz2]"
	compression TEXT NOT NULL,
	file_hash   BLOB NOT NULL,
	file_size   INTEGER NOT NULL,
	nar_hash    BLOB NOT NULL,
	nar_size    INTEGER NOT NULL,
	received_at INTEGER NOT NULL,
	staged      INTEGER NOT NULL DEFAULT 1  -- 1 until a path claims it
);
CREATE INDEX IF NOT EXISTS nars_staged ON nars(staged) WHERE staged = 1;
CREATE TABLE IF NOT EXISTS paths (
	hash        TEXT NOT NULL,      -- the store path's hash part
	nar_hash    BLOB NOT NULL,      -- one candidate content per NAR hash
	store_path  TEXT NOT NULL,
	narinfo     TEXT NOT NULL,      -- as kept: members' valid signatures, no gate signature
	url         TEXT NOT NULL REFERENCES nars(url),
	state       TEXT NOT NULL,      -- pending | admitted | quarantined
	reason      TEXT NOT NULL,
	signers     TEXT NOT NULL,      -- JSON: the identities counted
	needed      INTEGER NOT NULL,
	served      TEXT,               -- the narinfo served (with the gate's signature) when admitted
	first_seen  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	admitted_at INTEGER,
	PRIMARY KEY (hash, nar_hash)
);
CREATE INDEX IF NOT EXISTS paths_url ON paths(url);
CREATE INDEX IF NOT EXISTS paths_state ON paths(state);
CREATE TABLE IF NOT EXISTS rejections (
	hash       TEXT PRIMARY KEY,
	store_path TEXT NOT NULL,
	reason     TEXT NOT NULL,
	at         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS certs (
	sha256   BLOB PRIMARY KEY,
	der      BLOB NOT NULL,
	is_ca    INTEGER NOT NULL,
	added_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS crls (
	issuer   BLOB PRIMARY KEY,      -- sha256 of the issuer's certificate
	der      BLOB NOT NULL,
	added_at INTEGER NOT NULL
);
`

// Path states.
const (
	StatePending     = "pending"
	StateAdmitted    = "admitted"
	StateQuarantined = "quarantined"
)

// db is the gate's database: each statement its own transaction, or, from begin, the
// statements of one state change in one transaction.
type db struct {
	sql *stmtDB
	ch  *change // from begin; nil: each statement its own transaction
}

// change is the transaction of a state change (see begin).
type change struct {
	tx   *stmtTx // once begun
	done bool    // committed or rolled back
	// logLater: the change's log entries are fsynced once, before its commit
	// (Gate.recordIn), not each before it returns.
	logLater bool
}

// begin returns the database for a state change made under g.mu: its statements run
// in one transaction, which commit commits (nothing of the change is kept without
// it; rollback, after commit a no-op, drops it). The transaction begins (BEGIN
// IMMEDIATE: it takes the write lock) at the change's first write, so that the
// lookups deciding it (and the log's fsync) keep no concurrent NAR upload from
// committing; the reads before the first write see the committed state, which for
// paths changes only under g.mu, and from the first write on every statement runs in
// the transaction and sees its writes.
func (d *db) begin() *db { return &db{sql: d.sql, ch: &change{}} }

// r is where reads run.
func (d *db) r() querier {
	if d.ch != nil && d.ch.tx != nil {
		return d.ch.tx
	}
	return d.sql
}

// w is where writes run: the change's transaction, begun on the first.
func (d *db) w(ctx context.Context) (querier, error) {
	switch {
	case d.ch == nil:
		return d.sql, nil
	case d.ch.done:
		return nil, errors.New("database change used after its commit")
	case d.ch.tx == nil:
		tx, err := d.sql.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		d.ch.tx = &stmtTx{db: d.sql, tx: tx}
	}
	return d.ch.tx, nil
}

// commit commits the change's writes, if any.
func (d *db) commit() error {
	if d.ch == nil || d.ch.done {
		return nil
	}
	d.ch.done = true
	if d.ch.tx == nil {
		return nil
	}
	return d.ch.tx.tx.Commit()
}

// rollback drops the change's writes unless committed.
func (d *db) rollback() {
	if d.ch == nil || d.ch.done {
		return
	}
	d.ch.done = true
	if d.ch.tx != nil {
		d.ch.tx.tx.Rollback()
	}
}

func openDB(path string) (*db, error) {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(15000)", "journal_mode(WAL)", "synchronous(NORMAL)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	s, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	s.SetMaxOpenConns(4)
	s.SetMaxIdleConns(4) // keep them: a new connection reopens the files and prepares every statement again
	if _, err := s.Exec(schema); err != nil {
		s.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	d := &db{sql: newStmtDB(s)}
	for _, q := range changeStmts {
		if _, err := d.sql.stmt(context.Background(), q); err != nil {
			d.Close()
			return nil, fmt.Errorf("database %s: %w", path, err)
		}
	}
	return d, nil
}

// The statements a state change runs in its transaction, prepared when the database
// opens (see stmtTx).
const (
	qGetNAR       = `SELECT url, compression, file_hash, file_size, nar_hash, nar_size, received_at FROM nars WHERE url = ?`
	qCandidates   = `SELECT ` + pathCols + ` FROM paths WHERE hash = ? ORDER BY updated_at DESC, rowid DESC`
	qCandidatesOf = `SELECT ` + pathCols + ` FROM paths WHERE hash IN (SELECT value FROM json_each(?)) ORDER BY updated_at DESC, rowid DESC`
	qPathsInState = `SELECT ` + pathCols + ` FROM paths WHERE state = ? ORDER BY first_seen, rowid`
	qPutPath      = `INSERT INTO paths(hash, nar_hash, store_path, narinfo, url, state, reason, signers, needed, served, first_seen, updated_at, admitted_at)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(hash, nar_hash) DO UPDATE SET store_path=excluded.store_path, narinfo=excluded.narinfo, url=excluded.url,
			state=excluded.state, reason=excluded.reason, signers=excluded.signers, needed=excluded.needed, served=excluded.served,
			updated_at=excluded.updated_at, admitted_at=excluded.admitted_at`
	qClaimNAR      = `UPDATE nars SET staged = 0 WHERE url = ? AND staged = 1`
	qDeletePath    = `DELETE FROM paths WHERE hash = ? AND nar_hash = ? RETURNING url`
	qRestageNAR    = `UPDATE nars SET staged = 1 WHERE url = ? AND NOT EXISTS (SELECT 1 FROM paths WHERE url = ?)`
	qDropStagedNAR = `DELETE FROM nars WHERE url = ? AND staged = 1 AND url NOT IN (SELECT url FROM paths)`
	qSetRejection  = `INSERT INTO rejections(hash, store_path, reason, at) VALUES(?,?,?,?)
		ON CONFLICT(hash) DO UPDATE SET store_path=excluded.store_path, reason=excluded.reason, at=excluded.at`
)

var changeStmts = []string{qGetNAR, qCandidates, qCandidatesOf, qPathsInState, qPutPath, qClaimNAR, qDeletePath, qRestageNAR, qDropStagedNAR, qSetRejection}

func (d *db) Close() error { return d.sql.Close() }

// narRec is a NAR file received and verified.
type narRec struct {
	URL         string
	Compression string
	FileHash    [32]byte // when HasFileHash (a file named by its NarHash is not hashed)
	HasFileHash bool
	FileSize    int64
	NarHash     [32]byte
	NarSize     int64
	ReceivedAt  time.Time
}

func (d *db) insertNAR(ctx context.Context, n narRec) error {
	fh := []byte{} // not hashed: an empty blob
	if n.HasFileHash {
		fh = n.FileHash[:]
	}
	q, err := d.w(ctx)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, `INSERT INTO nars(url, compression, file_hash, file_size, nar_hash, nar_size, received_at)
		VALUES(?,?,?,?,?,?,?) ON CONFLICT(url) DO NOTHING`, // staging ages from first receipt
		n.URL, n.Compression, fh, n.FileSize, n.NarHash[:], n.NarSize, n.ReceivedAt.Unix())
	return err
}

func (d *db) getNAR(ctx context.Context, u string) (narRec, bool, error) {
	var n narRec
	var fh, nh []byte
	var at int64
	err := d.r().QueryRowContext(ctx, qGetNAR, u).
		Scan(&n.URL, &n.Compression, &fh, &n.FileSize, &nh, &n.NarSize, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return n, false, nil
	}
	if err != nil {
		return n, false, err
	}
	n.HasFileHash = len(fh) == len(n.FileHash)
	copy(n.FileHash[:], fh)
	copy(n.NarHash[:], nh)
	n.ReceivedAt = time.Unix(at, 0)
	return n, true, nil
}

// narHeld reports whether the NAR at u is known, and the size of the NARs no path
// claims (see stagingBytes), in one statement.
func (d *db) narHeld(ctx context.Context, u string) (held bool, staged int64, err error) {
	err = d.r().QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM nars WHERE url = ?), (SELECT COALESCE(SUM(file_size), 0) FROM nars WHERE staged = 1)`, u).
		Scan(&held, &staged)
	return held, staged, err
}

// stagingBytes is the size of NARs no path claims.
func (d *db) stagingBytes(ctx context.Context) (int64, error) {
	var n int64
	err := d.r().QueryRowContext(ctx, `SELECT COALESCE(SUM(file_size), 0) FROM nars WHERE staged = 1`).Scan(&n)
	return n, err
}

// dropStaged deletes the rows of unclaimed NARs received before cutoff and returns
// their URLs (the caller removes the files).
func (d *db) dropStaged(ctx context.Context, cutoff time.Time) ([]string, error) {
	q, err := d.w(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `DELETE FROM nars WHERE staged = 1 AND received_at < ? AND url NOT IN (SELECT url FROM paths) RETURNING url`, cutoff.Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// dropStagedNAR forgets an unclaimed NAR whose file is gone, so that it can be
// uploaded again.
func (d *db) dropStagedNAR(ctx context.Context, u string) error {
	q, err := d.w(ctx)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, qDropStagedNAR, u)
	return err
}

func (d *db) narURLs(ctx context.Context) (map[string]bool, error) {
	rows, err := d.r().QueryContext(ctx, `SELECT url FROM nars`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, rows.Err()
}

// Signer is an identity whose signature counted for a path.
type Signer struct {
	Subject string `json:"subject"`
	KeyName string `json:"key"`
	Serial  string `json:"serial"`
	Cert    string `json:"cert_sha256"`
	Sig     string `json:"sig"`
}

// PathRec is one candidate content of a store path.
type PathRec struct {
	Hash       string
	NarHash    [32]byte
	StorePath  string
	NarInfo    string
	URL        string
	State      string
	Reason     string
	Signers    []Signer
	Needed     int
	Served     string
	FirstSeen  time.Time
	UpdatedAt  time.Time
	AdmittedAt time.Time
}

const pathCols = `hash, nar_hash, store_path, narinfo, url, state, reason, signers, needed, COALESCE(served, ''), first_seen, updated_at, COALESCE(admitted_at, 0)`

func scanPaths(rows *sql.Rows) ([]PathRec, error) {
	defer rows.Close()
	var out []PathRec
	for rows.Next() {
		var p PathRec
		var nh []byte
		var signers string
		var first, upd, adm int64
		if err := rows.Scan(&p.Hash, &nh, &p.StorePath, &p.NarInfo, &p.URL, &p.State, &p.Reason, &signers, &p.Needed, &p.Served, &first, &upd, &adm); err != nil {
			return nil, err
		}
		copy(p.NarHash[:], nh)
		if err := json.Unmarshal([]byte(signers), &p.Signers); err != nil {
			return nil, fmt.Errorf("path %s: signers: %w", p.StorePath, err)
		}
		p.FirstSeen, p.UpdatedAt = time.Unix(first, 0), time.Unix(upd, 0)
		if adm != 0 {
			p.AdmittedAt = time.Unix(adm, 0)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (d *db) candidates(ctx context.Context, hash string) ([]PathRec, error) {
	rows, err := d.r().QueryContext(ctx, qCandidates, hash)
	if err != nil {
		return nil, err
	}
	return scanPaths(rows)
}

// candidatesOf is candidates for several hash parts at once, by hash part.
func (d *db) candidatesOf(ctx context.Context, hashes []string) (map[string][]PathRec, error) {
	out := map[string][]PathRec{}
	if len(hashes) == 0 {
		return out, nil
	}
	list, err := json.Marshal(hashes)
	if err != nil {
		return nil, err
	}
	rows, err := d.r().QueryContext(ctx, qCandidatesOf, string(list))
	if err != nil {
		return nil, err
	}
	recs, err := scanPaths(rows)
	if err != nil {
		return nil, err
	}
	for _, p := range recs {
		out[p.Hash] = append(out[p.Hash], p)
	}
	return out, nil
}

func (d *db) pathsInState(ctx context.Context, state string) ([]PathRec, error) {
	rows, err := d.r().QueryContext(ctx, qPathsInState, state)
	if err != nil {
		return nil, err
	}
	return scanPaths(rows)
}

func (d *db) putPath(ctx context.Context, p PathRec) error {
	signers, err := json.Marshal(p.Signers)
	if err != nil {
		return err
	}
	if p.Signers == nil {
		signers = []byte("[]")
	}
	var served, adm any
	if p.Served != "" {
		served = p.Served
	}
	if !p.AdmittedAt.IsZero() {
		adm = p.AdmittedAt.Unix()
	}
	q, err := d.w(ctx)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, qPutPath,
		p.Hash, p.NarHash[:], p.StorePath, p.NarInfo, p.URL, p.State, p.Reason, string(signers), p.Needed, served,
		p.FirstSeen.Unix(), p.UpdatedAt.Unix(), adm)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, qClaimNAR, p.URL)
	return err
}

// deletePath forgets a candidate; its NAR goes back to staging (and expires from
// there) unless another path uses it.
func (d *db) deletePath(ctx context.Context, hash string, narHash [32]byte) error {
	var u string
	q, err := d.w(ctx)
	if err != nil {
		return err
	}
	err = q.QueryRowContext(ctx, qDeletePath, hash, narHash[:]).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, qRestageNAR, u, u)
	return err
}

// served returns the narinfo served for hash, if admitted.
func (d *db) served(ctx context.Context, hash string) (string, bool, error) {
	var s string
	err := d.r().QueryRowContext(ctx, `SELECT served FROM paths WHERE hash = ? AND state = 'admitted' AND served IS NOT NULL`, hash).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return s, err == nil, err
}

// narServable reports whether an admitted path uses the NAR at u.
func (d *db) narServable(ctx context.Context, u string) (bool, error) {
	var one int
	err := d.r().QueryRowContext(ctx, `SELECT 1 FROM paths WHERE url = ? AND state = 'admitted' LIMIT 1`, u).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (d *db) setRejection(ctx context.Context, hash, storePath, reason string, at time.Time) error {
	q, err := d.w(ctx)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, qSetRejection, hash, storePath, reason, at.Unix())
	return err
}

// rejectionsOf returns the last rejection's reason of each of hashes that has one.
func (d *db) rejectionsOf(ctx context.Context, hashes []string) (map[string]string, error) {
	out := map[string]string{}
	if len(hashes) == 0 {
		return out, nil
	}
	list, err := json.Marshal(hashes)
	if err != nil {
		return nil, err
	}
	rows, err := d.r().QueryContext(ctx, `SELECT hash, reason FROM rejections WHERE hash IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var h, r string
		if err := rows.Scan(&h, &r); err != nil {
			return nil, err
		}
		out[h] = r
	}
	return out, rows.Err()
}

func (d *db) addCert(ctx context.Context, sum [32]byte, der []byte, isCA bool, at time.Time) (bool, error) {
	q, err := d.w(ctx)
	if err != nil {
		return false, err
	}
	res, err := q.ExecContext(ctx, `INSERT INTO certs(sha256, der, is_ca, added_at) VALUES(?,?,?,?) ON CONFLICT DO NOTHING`, sum[:], der, isCA, at.Unix())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (d *db) allCerts(ctx context.Context) (cas, leaves [][]byte, err error) {
	rows, err := d.r().QueryContext(ctx, `SELECT der, is_ca FROM certs ORDER BY added_at`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var der []byte
		var isCA bool
		if err := rows.Scan(&der, &isCA); err != nil {
			return nil, nil, err
		}
		if isCA {
			cas = append(cas, der)
		} else {
			leaves = append(leaves, der)
		}
	}
	return cas, leaves, rows.Err()
}

func (d *db) putCRL(ctx context.Context, issuer [32]byte, der []byte, at time.Time) error {
	q, err := d.w(ctx)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, `INSERT INTO crls(issuer, der, added_at) VALUES(?,?,?)
		ON CONFLICT(issuer) DO UPDATE SET der=excluded.der, added_at=excluded.added_at`, issuer[:], der, at.Unix())
	return err
}

func (d *db) allCRLs(ctx context.Context) ([][]byte, error) {
	rows, err := d.r().QueryContext(ctx, `SELECT der FROM crls`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var der []byte
		if err := rows.Scan(&der); err != nil {
			return nil, err
		}
		out = append(out, der)
	}
	return out, rows.Err()
}
