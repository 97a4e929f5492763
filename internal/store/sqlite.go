package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// OpenSQLite opens (creating if needed) the SQLite database at path and migrates it:
// the embedded database belongs to this one data directory, so it keeps itself
// current.
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
	db := &DB{sql: sdb, dialect: sqliteDialect}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return db, nil
}

func isSQLiteUnique(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
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
