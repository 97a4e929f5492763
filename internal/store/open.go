package store

import (
	"context"
	"errors"
)

// Settings say which database to open.
type Settings struct {
	// URL selects PostgreSQL (postgres://… or a key=value DSN); empty means SQLite.
	URL          string
	PasswordFile string
	// SQLitePath is the embedded database's file.
	SQLitePath string
}

// Open opens the database the settings name. SQLite migrates itself (it belongs to
// one data directory); PostgreSQL is only checked: its schema must be current (run
// `nixpki db migrate`), so serving needs no more than DML rights.
func Open(ctx context.Context, s Settings) (*DB, error) {
	db, err := OpenAsIs(ctx, s)
	if err != nil || db.dialect != postgresDialect {
		return db, err
	}
	if err := db.CheckSchema(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// OpenAsIs opens the database the settings name like Open, but leaves a PostgreSQL
// schema unchecked: for the commands that report or change its version.
func OpenAsIs(ctx context.Context, s Settings) (*DB, error) {
	if s.URL == "" {
		if s.SQLitePath == "" {
			return nil, errors.New("no database: set database.url or database.path")
		}
		return OpenSQLite(ctx, s.SQLitePath)
	}
	return OpenPostgres(ctx, s.URL, PostgresOptions{PasswordFile: s.PasswordFile})
}

// Describe names the database for logs: the SQLite file, or the URL without its
// password.
func (s Settings) Describe() string {
	if s.URL == "" {
		return s.SQLitePath
	}
	return RedactDSN(s.URL)
}
