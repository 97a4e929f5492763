package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgresOptions configure OpenPostgres.
type PostgresOptions struct {
	// PasswordFile, when set, holds the role's password (its first line); otherwise
	// the DSN's password, its passfile or ~/.pgpass apply, as for libpq.
	PasswordFile string
	// MaxConns bounds the connections this process opens (default 16).
	MaxConns int
}

// OpenPostgres connects to the PostgreSQL database named by dsn (a postgres:// URL or
// a key=value DSN; host=/dir or ?host=/dir for a unix socket). It changes no schema:
// `nixpki db migrate` (DB.Migrate) does, and CheckSchema tells whether it is needed.
func OpenPostgres(ctx context.Context, dsn string, opts PostgresOptions) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("database URL %s: %w", RedactDSN(dsn), err)
	}
	if opts.PasswordFile != "" {
		b, err := os.ReadFile(opts.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("database password file: %w", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		cfg.Password = strings.TrimRight(pw, "\r")
	}
	sdb := stdlib.OpenDB(*cfg)
	if opts.MaxConns <= 0 {
		opts.MaxConns = 16
	}
	sdb.SetMaxOpenConns(opts.MaxConns)
	sdb.SetMaxIdleConns(opts.MaxConns)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{sql: sdb, dialect: postgresDialect}
	if err := db.Ping(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("database %s: %w", RedactDSN(dsn), err)
	}
	return db, nil
}

// IsPostgresURL tells whether a database setting names PostgreSQL.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") ||
		(!strings.Contains(s, "://") && strings.Contains(s, "="))
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// RedactDSN returns dsn with any password replaced, fit for logs and errors.
func RedactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// pgTx runs fn in a READ COMMITTED transaction, retrying it (bounded) when PostgreSQL
// reports a serialization failure or deadlock; durable=false commits without waiting
// for the WAL flush (synchronous_commit off: crash-safe, a power cut may lose the last
// moments).
func (db *DB) pgTx(ctx context.Context, durable bool, fn func(*sql.Tx) error) error {
	db.stats.transactions.Add(1)
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		db.stats.commits.Add(1)
		if durable {
			db.stats.synced.Add(1)
		}
		err = runTx(db.sql.BeginTx(ctx, nil))(func(tx *sql.Tx) error {
			if !durable {
				if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
					return err
				}
			}
			return fn(tx)
		})
		err = pgErr(err)
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	return err
}

func retryable(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && (e.Code == "40001" || e.Code == "40P01")
}

func isPostgresUnique(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}

// pgErr marks PostgreSQL's refusal to write on a standby as ErrReadOnly.
func pgErr(err error) error {
	var e *pgconn.PgError
	if errors.As(err, &e) && e.Code == "25006" && !errors.Is(err, ErrReadOnly) {
		return fmt.Errorf("%w: %w", ErrReadOnly, err)
	}
	return err
}

// lockName serialises the transactions that name the same thing (until they end):
// a PostgreSQL advisory lock. SQLite needs none: its write transactions take the
// database's one write lock when they begin (IMMEDIATE).
func (db *DB) lockName(ctx context.Context, tx *sql.Tx, name string) error {
	if db.dialect != postgresDialect {
		return nil
	}
	_, err := db.exec(ctx, tx, `SELECT pg_advisory_xact_lock(hashtextextended(?, 0))`, name)
	return err
}
