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
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	// 100 ms a try) where a mutex hands over at once.
	wmu sync.Mutex
	// light is the connection of lightTx (acme.go), made on first use.
	light *sql.Conn
}

// OpenSQLite opens (creating if needed) the SQLite database at path and migrates it.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	q := url.Values{}
	// WAL lets readers run while a writer commits; busy_timeout makes a second process
	// (a CLI command while serve runs) wait for the lock instead of failing;
	// synchronous(FULL) makes every commit durable; IMMEDIATE transactions take the
	// write lock up front, so two writers never deadlock upgrading read locks.
	for _, p := range []string{"busy_timeout(15000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)"} {
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
	if db.light != nil {
		db.light.Close()
		db.light = nil
	}
	db.wmu.Unlock()
	return db.sql.Close()
}

// SQL exposes the handle for packages that keep their own tables in this database.
func (db *DB) SQL() *sql.DB { return db.sql }

// Tx runs fn in one transaction, committing if fn returns nil. Busy databases are
// waited on (busy_timeout), never reported as errors to the caller. fn must not start
// another transaction: this process's writers take turns.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	return runTx(db.sql.BeginTx(ctx, nil))(fn)
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
