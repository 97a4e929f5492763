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
	if s.URL == "" {
		if s.SQLitePath == "" {
			return nil, errors.New("no database: set database.url or database.path")
		}
		return OpenSQLite(ctx, s.SQLitePath)
	}
	db, err := OpenPostgres(ctx, s.URL, PostgresOptions{PasswordFile: s.PasswordFile})
	if err != nil {
		return nil, err
	}
	if err := db.CheckSchema(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Describe names the database for logs: the SQLite file, or the URL without its
// password.
func (s Settings) Describe() string {
	if s.URL == "" {
		return s.SQLitePath
	}
	return RedactDSN(s.URL)
}
