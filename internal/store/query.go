package store

import (
	"context"
	"database/sql"
	"sync"
)

// Every statement of this package runs through exec, row or all: they rewrite the
// query for the dialect and, on SQLite, run it prepared (parsing SQL costs SQLite more
// than running the ACME server's statements does). PostgreSQL's driver keeps its own
// per-connection statement cache.

func (db *DB) prepared(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	v, ok := db.stmts.Load(q)
	if !ok {
		st, err := db.sql.PrepareContext(ctx, q)
		if err != nil {
			return nil, err
		}
		var loaded bool
		if v, loaded = db.stmts.LoadOrStore(q, st); loaded {
			st.Close()
		}
	}
	st := v.(*sql.Stmt)
	if tx != nil {
		return tx.StmtContext(ctx, st), nil
	}
	return st, nil
}

// exec runs a statement, in tx when tx is not nil.
func (db *DB) exec(ctx context.Context, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	db.stats.statements.Add(1)
	if db.dialect == postgresDialect {
		var res sql.Result
		var err error
		if tx != nil {
			res, err = tx.ExecContext(ctx, db.q(q), args...)
		} else {
			res, err = db.sql.ExecContext(ctx, db.q(q), args...)
		}
		return res, pgErr(err)
	}
	st, err := db.prepared(ctx, tx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// row runs a one-row query, in tx when tx is not nil. Outside a transaction on SQLite
// it runs on the write connection when that is idle: its page cache survives this
// process's commits, where every other connection must re-read its pages after each.
func (db *DB) row(ctx context.Context, tx *sql.Tx, q string, args ...any) scanner {
	db.stats.statements.Add(1)
	if db.dialect == postgresDialect {
		if tx != nil {
			return pgRow{tx.QueryRowContext(ctx, db.q(q), args...)}
		}
		return pgRow{db.sql.QueryRowContext(ctx, db.q(q), args...)}
	}
	if tx == nil && db.wmu.TryLock() {
		if db.w == nil {
			db.wmu.Unlock()
		} else {
			st, err := db.wprepared(ctx, q)
			if err != nil {
				db.wmu.Unlock()
				return errScanner{err}
			}
			return lockedRow{st.QueryRowContext(ctx, args...), &db.wmu}
		}
	}
	st, err := db.prepared(ctx, tx, q)
	if err != nil {
		return errScanner{err}
	}
	return st.QueryRowContext(ctx, args...)
}

type pgRow struct{ r *sql.Row }

func (p pgRow) Scan(dst ...any) error { return pgErr(p.r.Scan(dst...)) }

// wprepared returns q prepared on the write connection (wmu held).
func (db *DB) wprepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if st := db.wstmts[q]; st != nil {
		return st, nil
	}
	st, err := db.w.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if db.wstmts == nil {
		db.wstmts = map[string]*sql.Stmt{}
	}
	db.wstmts[q] = st
	return st, nil
}

// lockedRow is a row read on the write connection; Scan releases the connection.
type lockedRow struct {
	r  *sql.Row
	mu *sync.Mutex
}

func (l lockedRow) Scan(dst ...any) error {
	defer l.mu.Unlock()
	return l.r.Scan(dst...)
}

type errScanner struct{ err error }

func (e errScanner) Scan(...any) error { return e.err }

type scanner interface{ Scan(...any) error }

// all runs a query, in tx when tx is not nil, and scans every row.
func all[T any](ctx context.Context, db *DB, tx *sql.Tx, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	var out []T
	err := each(ctx, db, tx, func(s scanner) error {
		v, err := scan(s)
		out = append(out, v)
		return err
	}, q, args...)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// each runs a query, in tx when tx is not nil, and hands every row to fn as it is
// read (for results too large to hold).
func each(ctx context.Context, db *DB, tx *sql.Tx, fn func(scanner) error, q string, args ...any) error {
	db.stats.statements.Add(1)
	var rows *sql.Rows
	var err error
	switch {
	case db.dialect == postgresDialect && tx != nil:
		rows, err = tx.QueryContext(ctx, db.q(q), args...)
	case db.dialect == postgresDialect:
		rows, err = db.sql.QueryContext(ctx, db.q(q), args...)
	default:
		var st *sql.Stmt
		if st, err = db.prepared(ctx, tx, q); err == nil {
			rows, err = st.QueryContext(ctx, args...)
		}
	}
	if err != nil {
		return pgErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return pgErr(rows.Err())
}

// changed reports whether a statement changed a row.
func changed(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// existsOr tells why a conditional change changed nothing: ErrNotFound if the count
// query finds no record, else err (the record is in a state the change refuses).
func (db *DB) existsOr(ctx context.Context, err error, countQuery string, args ...any) error {
	var n int
	if e := db.row(ctx, nil, countQuery, args...).Scan(&n); e != nil {
		return e
	}
	if n == 0 {
		return ErrNotFound
	}
	return err
}
