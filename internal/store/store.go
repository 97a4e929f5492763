// Package store keeps nixpki's records in SQL: embedded SQLite by default (pure Go,
// WAL, safe for a server and CLI commands sharing one data directory), or PostgreSQL
// for several servers sharing one database. One type, DB, serves both dialects; the
// packages that use it define the interfaces they need (acme.Store, ca.Certs, …)
// and storetest checks any implementation against this contract.
//
// Contract, for every method of DB and the interfaces built on it:
//   - A record that does not exist is reported as ErrNotFound (test with errors.Is);
//     a unique key that already exists as ErrConflict.
//   - Methods are safe for concurrent use by many goroutines and by several processes
//     sharing the database; each state change is one transaction, so a reader never
//     sees half of it, and uniqueness holds under concurrent writers (constraints,
//     conditional updates and row locks, never a check and an insert that only a
//     single writer makes safe).
//   - Every method honours its context's cancellation and deadline.
//   - A write refused because the database is a read-only standby is ErrReadOnly.
//   - Times are stored as Unix seconds (UTC); binary values (DER) as BLOB/BYTEA.
package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrNotFound reports that a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict reports that a record with the same unique key already exists, or that
// a concurrent change won a race.
var ErrConflict = errors.New("conflict")

// ErrReadOnly reports a write to a database that accepts none (a standby). HTTP
// handlers answer it with 503 Service Unavailable (see Unavailable).
var ErrReadOnly error = readOnlyError{}

type readOnlyError struct{}

func (readOnlyError) Error() string { return "database is read-only" }

// Unavailable is what a client is told: the server is up, its database takes no
// writes now.
func (readOnlyError) Unavailable() string {
	return "this server's database is a read-only standby: reads are served, changes are not; retry on a server with a writable database"
}

// DB is an open nixpki database.
type DB struct {
	sql     *sql.DB
	dialect dialect
	// stmts holds this DB's prepared statements (SQLite), closed with it.
	stmts sync.Map // query → *sql.Stmt
	// queries caches each query rewritten for the dialect (PostgreSQL's $n markers).
	queries sync.Map // query → string
	stats   stats

	// SQLite: this process's writers take turns on one connection (sqlite.go).
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
	// pending are Tx calls waiting for the next group commit (gmu guards it).
	gmu     sync.Mutex
	pending []*txReq
}

type dialect int

const (
	sqliteDialect dialect = iota
	postgresDialect
)

// Dialect names the database kind: "sqlite" or "postgres".
func (db *DB) Dialect() string {
	if db.dialect == postgresDialect {
		return "postgres"
	}
	return "sqlite"
}

// Close closes the database and the statements prepared on it.
func (db *DB) Close() error {
	db.wmu.Lock()
	db.dropW()
	db.wmu.Unlock()
	db.stmts.Range(func(k, v any) bool {
		v.(*sql.Stmt).Close()
		db.stmts.Delete(k)
		return true
	})
	return db.sql.Close()
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.sql.PingContext(ctx) }

// SQL exposes the handle for packages that keep their own tables in this database.
func (db *DB) SQL() *sql.DB { return db.sql }

// Stats counts this process's database work since it opened the database: ACME
// statements (reads and writes, store/acme.go), write transactions (Tx and the
// unsynced ones of ACME) and the commits that carried them, synced or not.
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

// Tx runs fn in one transaction, committing if fn returns nil; the commit is durable
// before Tx returns. fn must not start another transaction, and may run more than once
// (PostgreSQL retries a transaction that lost a serialization race), so it should only
// set results that each run overwrites.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	if db.dialect == postgresDialect {
		return db.pgTx(ctx, true, fn)
	}
	return db.group(ctx, "FULL", fn)
}

// lightTx runs fn in a transaction that is not synced to disk on commit: for
// bookkeeping whose loss in a power cut costs nothing — spent-nonce records of
// requests that changed nothing, validation progress that a restarted server redoes.
// It is visible to every reader at once like any other commit, and the next synced
// commit makes it durable.
func (db *DB) lightTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if db.dialect == postgresDialect {
		return db.pgTx(ctx, false, fn)
	}
	return db.group(ctx, "NORMAL", fn)
}

// q returns query rewritten for the dialect: queries are written with ? markers.
func (db *DB) q(query string) string {
	if db.dialect != postgresDialect {
		return query
	}
	if v, ok := db.queries.Load(query); ok {
		return v.(string)
	}
	out := rebindDollar(query)
	db.queries.Store(query, out)
	return out
}

// rebindDollar numbers the ? markers of query as $1, $2, … (no query here has a ?
// inside a string literal).
func rebindDollar(query string) string {
	b := make([]byte, 0, len(query)+16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] != '?' {
			b = append(b, query[i])
			continue
		}
		n++
		b = append(b, '$')
		b = appendInt(b, n)
	}
	return string(b)
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// isUniqueViolation tells whether err is a unique-constraint failure, by the driver's
// error code.
func (db *DB) isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	return isSQLiteUnique(err) || isPostgresUnique(err)
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
