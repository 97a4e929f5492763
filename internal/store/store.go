// Package store keeps nixpki's records in SQL: embedded SQLite by default (pure Go,
// WAL, safe for a server and CLI commands sharing one data directory), with one schema
// written so that PostgreSQL can be added as a second dialect without reshaping it.
//
// Contract, for every method of DB and the interfaces built on it:
//   - A record that does not exist is reported as ErrNotFound (test with errors.Is);
//     a unique key that already exists as ErrConflict.
//   - Methods are safe for concurrent use by many goroutines and by several processes
//     sharing the database; each state change is one transaction, so a reader never
//     sees half of it.
//   - Every method honours its context's cancellation and deadline.
//   - Times are stored as Unix seconds (UTC); binary values (DER) as BLOB/BYTEA.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound reports that a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict reports that a record with the same unique key already exists, or that
// a concurrent change won a race.
var ErrConflict = errors.New("conflict")

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is an open nixpki database.
type DB struct {
	sql     *sql.DB
	dialect string
	// wmu serialises this process's write transactions: SQLite admits one writer at a
	// time, and a writer that finds the lock taken sleeps in the busy handler (up to
	// 100 ms a try) where a mutex hands over at once. Whoever holds wmu owns w.
	wmu sync.Mutex
	// w is the connection every write transaction of this process runs on (made on
	// first use): one connection keeps its page cache across commits, where a commit
	// on one connection makes every other connection re-read its pages. wsync is the
	// synchronous setting it has now (FULL for Tx, NORMAL for lightTx).
	w      *sql.Conn
	wsync  string
	wstmts map[string]*sql.Stmt // prepared on w
	stats  stats
	// pending are Tx calls waiting for the next group commit (gmu guards it).
	gmu     sync.Mutex
	pending []*txReq
}

// OpenSQLite opens (creating if needed) the SQLite database at path and migrates it.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	q := url.Values{}
	// WAL lets readers run while a writer commits; busy_timeout makes a second process
	// (a CLI command while serve runs) wait for the lock instead of failing;
	// synchronous(FULL) makes every commit durable; IMMEDIATE transactions take the
	// write lock up front, so two writers never deadlock upgrading read locks.
	// temp_store(MEMORY) keeps sorter and temporary b-trees off the disk.
	for _, p := range []string{"busy_timeout(15000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)", "temp_store(MEMORY)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	sdb.SetMaxOpenConns(8)
	sdb.SetMaxIdleConns(8)
	sdb.SetConnMaxIdleTime(time.Minute)
	db := &DB{sql: sdb, dialect: "sqlite"}
	if err := db.migrate(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	db.wmu.Lock()
	db.dropW()
	db.wmu.Unlock()
	return db.sql.Close()
}

// SQL exposes the handle for packages that keep their own tables in this database.
func (db *DB) SQL() *sql.DB { return db.sql }

// Tx runs fn in one transaction, committing if fn returns nil; the commit is synced to
// disk before Tx returns. Busy databases are waited on (busy_timeout), never reported
// as errors to the caller. fn must not start another transaction: this process's
// writers take turns.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return db.group(ctx, "FULL", fn)
}

// group runs fn in the next group commit of this process's writers.
//
// Write transactions that arrive while another commit is under way (waiting for its
// fsync, typically) are committed together in the next SQLite transaction, each fn in
// a SAVEPOINT of its own: a fn that fails is rolled back to its savepoint and changes
// nothing, the others commit. Each fn's changes stay atomic and isolated (the fns run
// one after another, on one connection), and none is reported committed before the
// shared commit is: synced to disk if any member asked for FULL, so one fsync serves
// the group, and a member that asked for NORMAL is never less durable than alone.
func (db *DB) group(ctx context.Context, sync string, fn func(*sql.Tx) error) error {
	r := &txReq{ctx: ctx, fn: fn, sync: sync}
	db.stats.transactions.Add(1)
	db.gmu.Lock()
	db.pending = append(db.pending, r)
	db.gmu.Unlock()
	db.wmu.Lock()
	defer db.wmu.Unlock()
	db.gmu.Lock()
	batch := db.pending
	db.pending = nil
	db.gmu.Unlock()
	if len(batch) > 0 { // else a previous holder of wmu committed r already
		db.commitGroup(batch)
	}
	return r.err
}

// Stats counts this process's database work since it opened the database: ACME
// statements (reads and writes, store/acme.go), write transactions (Tx and the
// unsynced ones of ACME) and the SQLite commits that carried them, synced or not.
type Stats struct {
	Statements, Transactions, Commits, SyncedCommits int64
}

type stats struct {
	statements, transactions, commits, synced atomic.Int64
}

// Stats returns the counters so far.
func (db *DB) Stats() Stats {
	return Stats{db.stats.statements.Load(), db.stats.transactions.Load(), db.stats.commits.Load(), db.stats.synced.Load()}
}

// txReq is one write transaction of a group commit.
type txReq struct {
	ctx  context.Context
	fn   func(*sql.Tx) error
	sync string // FULL or NORMAL
	err  error
}

// commitGroup runs a batch of write transactions in one SQLite transaction (wmu held).
func (db *DB) commitGroup(batch []*txReq) {
	if len(batch) == 1 { // no savepoint needed
		r := batch[0]
		r.err = db.writeTx(r.ctx, r.sync, r.fn)
		return
	}
	sync := "NORMAL"
	for _, r := range batch {
		if r.sync == "FULL" {
			sync = "FULL"
		}
	}
	// The transaction must not end with one member's context: each fn gets its own.
	bg := context.Background()
	err := db.writeTx(bg, sync, func(tx *sql.Tx) error {
		ok := 0
		for _, r := range batch {
			if r.err = r.ctx.Err(); r.err != nil {
				continue
			}
			if _, r.err = tx.ExecContext(bg, `SAVEPOINT g`); r.err != nil {
				continue
			}
			if r.err = r.fn(tx); r.err != nil {
				if _, err := tx.ExecContext(bg, `ROLLBACK TO g`); err != nil {
					return err // the transaction is in an unknown state: fail them all
				}
			} else {
				ok++
			}
			if _, err := tx.ExecContext(bg, `RELEASE g`); err != nil {
				return err
			}
		}
		if ok == 0 {
			return errNothingToCommit
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNothingToCommit) {
		for _, r := range batch {
			if r.err == nil {
				r.err = err
			}
		}
	}
}

var errNothingToCommit = errors.New("nothing to commit")

// writeTx runs fn in a transaction on the write connection with the given synchronous
// setting (FULL: synced on commit; NORMAL: not). wmu must be held.
func (db *DB) writeTx(ctx context.Context, sync string, fn func(*sql.Tx) error) error {
	if db.w == nil {
		c, err := db.sql.Conn(context.Background())
		if err != nil {
			return err
		}
		db.w, db.wsync = c, "FULL"
	}
	db.stats.commits.Add(1)
	if sync == "FULL" {
		db.stats.synced.Add(1)
	}
	if db.wsync != sync {
		if _, err := db.w.ExecContext(ctx, `PRAGMA synchronous = `+sync); err != nil {
			return err
		}
		db.wsync = sync
	}
	err := runTx(db.w.BeginTx(ctx, nil))(fn)
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn) {
		db.dropW() // the next write opens a fresh connection
	}
	return err
}

// dropW closes the write connection and its statements (wmu held).
func (db *DB) dropW() {
	if db.w == nil {
		return
	}
	for _, st := range db.wstmts {
		st.Close()
	}
	db.w.Close()
	db.w, db.wstmts = nil, nil
}

// migration is one numbered schema step.
type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		n, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number and _", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// dialectSQL maps the portable type names used in migrations onto the dialect.
func (db *DB) dialectSQL(s string) string {
	if db.dialect == "postgres" {
		s = strings.ReplaceAll(s, ") WITHOUT ROWID;", ");") // SQLite's storage choice
		return strings.ReplaceAll(s, "BLOB", "BYTEA")
	}
	return s
}

// migrate applies every migration newer than the recorded schema version, each in its
// own transaction together with the version bump, so a crash never half-applies one.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.sql.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return err
	}
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range strings.Split(db.dialectSQL(m.sql), ";\n") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migration %s: %w", m.name, err)
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, m.version, m.name, time.Now().Unix())
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// isUniqueViolation tells whether err is a unique-constraint failure.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "duplicate key value")
}

// runTx runs fn in a begun transaction, committing if it returns nil.
func runTx(tx *sql.Tx, err error) func(func(*sql.Tx) error) error {
	return func(fn func(*sql.Tx) error) error {
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
}
