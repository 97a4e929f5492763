package gate

import (
	"context"
	"database/sql"
	"sync"
)

// stmtDB is the gate's *sql.DB with its statements prepared once: each query text is
// prepared on first use and kept (database/sql prepares it again per connection as
// needed). An admission runs a dozen statements; parsing and planning them afresh
// each time was a tenth of the gate's SQLite time. The gate's queries are constant
// texts; past maxStmts distinct texts (a query built with variable text) the others
// run unprepared, so the cache cannot grow without bound.
type stmtDB struct {
	*sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

const maxStmts = 256

func newStmtDB(s *sql.DB) *stmtDB { return &stmtDB{DB: s, stmts: map[string]*sql.Stmt{}} }

// stmt returns the prepared statement for query, or nil when the cache is full. It
// prepares outside the lock: preparing may wait for a connection, and a caller
// holding one must not wait for the lock meanwhile.
func (d *stmtDB) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	d.mu.Lock()
	st, ok := d.stmts[query]
	full := len(d.stmts) >= maxStmts
	d.mu.Unlock()
	if ok || full {
		return st, nil
	}
	st, err := d.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if have, ok := d.stmts[query]; ok { // prepared concurrently
		st.Close()
		return have, nil
	}
	if len(d.stmts) >= maxStmts {
		st.Close()
		return nil, nil
	}
	d.stmts[query] = st
	return st, nil
}

func (d *stmtDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := d.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return d.DB.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

func (d *stmtDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := d.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return d.DB.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext reports a preparation error through Row.Scan, as *sql.DB does.
func (d *stmtDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := d.stmt(ctx, query)
	if err != nil || st == nil {
		return d.DB.QueryRowContext(ctx, query, args...) // unprepared, or fails again with the error
	}
	return st.QueryRowContext(ctx, args...)
}

// Close closes the statements, then the database.
func (d *stmtDB) Close() error {
	d.mu.Lock()
	for q, st := range d.stmts {
		st.Close()
		delete(d.stmts, q)
	}
	d.mu.Unlock()
	return d.DB.Close()
}

// querier runs the gate's statements: the statement cache (each statement its own
// transaction) or a transaction (stmtTx).
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// stmtTx runs statements in a transaction with the cache's prepared statements,
// bound to the transaction's connection (prepared there once per connection). A
// statement the cache does not hold runs unprepared: preparing it for the cache
// would need another connection, and those may all be waiting for this
// transaction's write lock (openDB prepares the statements used in transactions).
type stmtTx struct {
	db    *stmtDB
	tx    *sql.Tx
	stmts map[string]*sql.Stmt // bound to tx
}

func (t *stmtTx) stmt(ctx context.Context, query string) *sql.Stmt {
	if st, ok := t.stmts[query]; ok {
		return st
	}
	t.db.mu.Lock()
	st := t.db.stmts[query]
	t.db.mu.Unlock()
	if st == nil {
		return nil
	}
	st = t.tx.StmtContext(ctx, st)
	if t.stmts == nil {
		t.stmts = map[string]*sql.Stmt{}
	}
	t.stmts[query] = st
	return st
}

func (t *stmtTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

func (t *stmtTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t *stmtTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}
