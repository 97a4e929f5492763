package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// TableCount is how many records a table holds.
type TableCount struct {
	Table string
	Rows  int64
}

// notCopied are tables whose records another database needs no copy of: its own
// schema history, and spent nonces (each expires within hours; a nonce spent before
// the move is refused afterwards by its own expiry).
var notCopied = map[string]bool{"schema_migrations": true, "acme_nonces": true}

// Copy copies every record of from into to, whose schema must be current and whose
// tables must be empty, in one transaction on to, then verifies that each table holds
// as many records on both sides. Serials, CRL numbers and IDs are kept.
func Copy(ctx context.Context, from, to *DB) ([]TableCount, error) {
	if err := to.CheckSchema(ctx); err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	if err := from.CheckSchema(ctx); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	tables, err := from.tables(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		n, err := to.count(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("destination table %s: %w", t, err)
		}
		if n > 0 {
			return nil, fmt.Errorf("destination table %s holds %d records: copy only into a database that `nixpki db migrate` just created", t, n)
		}
	}
	err = to.Tx(ctx, func(tx *sql.Tx) error {
		for _, t := range tables {
			if err := copyTable(ctx, from, to, tx, t); err != nil {
				return fmt.Errorf("table %s: %w", t, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []TableCount
	for _, t := range tables {
		a, err := from.count(ctx, t)
		if err != nil {
			return nil, err
		}
		b, err := to.count(ctx, t)
		if err != nil {
			return nil, err
		}
		if a != b {
			return out, fmt.Errorf("table %s: %d records in the source, %d copied", t, a, b)
		}
		out = append(out, TableCount{t, a})
	}
	return out, nil
}

// tables lists the tables whose records Copy carries.
func (db *DB) tables(ctx context.Context) ([]string, error) {
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	if db.dialect == postgresDialect {
		q = `SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema() ORDER BY tablename`
	}
	names, err := all(ctx, db, nil, func(s scanner) (string, error) {
		var n string
		return n, s.Scan(&n)
	}, q)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if !notCopied[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

func (db *DB) count(ctx context.Context, table string) (int64, error) {
	var n int64
	err := db.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n)
	return n, err
}

// columnTypes returns the lower-case declared type of each column of table.
func (db *DB) columnTypes(ctx context.Context, table string) (map[string]string, error) {
	q := `SELECT name, type FROM pragma_table_info(?)`
	if db.dialect == postgresDialect {
		q = `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?`
	}
	type col struct{ name, typ string }
	cols, err := all(ctx, db, nil, func(s scanner) (col, error) {
		var c col
		return c, s.Scan(&c.name, &c.typ)
	}, q, table)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, c := range cols {
		m[c.name] = strings.ToLower(c.typ)
	}
	return m, nil
}

func copyTable(ctx context.Context, from, to *DB, tx *sql.Tx, table string) error {
	types, err := to.columnTypes(ctx, table)
	if err != nil {
		return err
	}
	if len(types) == 0 {
		return fmt.Errorf("missing in the destination (is its schema as new as the source's?)")
	}
	rows, err := from.sql.QueryContext(ctx, `SELECT * FROM `+table)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	for _, c := range cols {
		if _, ok := types[c]; !ok {
			return fmt.Errorf("column %s missing in the destination", c)
		}
	}
	ins := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES (?` + strings.Repeat(", ?", len(cols)-1) + `)`
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, c := range cols {
			vals[i] = convertFor(types[c], vals[i])
		}
		if _, err := to.exec(ctx, tx, ins, vals...); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if to.dialect == postgresDialect && types["id"] == "bigint" {
		// An identity column continues after the copied IDs.
		_, err := to.exec(ctx, tx, `SELECT setval(pg_get_serial_sequence(?, 'id'), GREATEST((SELECT MAX(id) FROM `+table+`), 1)) WHERE pg_get_serial_sequence(?, 'id') IS NOT NULL`, table, table)
		return err
	}
	return nil
}

// convertFor adapts a value read from one dialect to a column type of the other.
func convertFor(typ string, v any) any {
	switch x := v.(type) {
	case int64:
		if typ == "boolean" {
			return x != 0
		}
	case bool:
		if typ != "boolean" {
			if x {
				return int64(1)
			}
			return int64(0)
		}
	case []byte:
		if typ != "bytea" && typ != "blob" {
			return string(x)
		}
	case string:
		if typ == "bytea" || typ == "blob" {
			return []byte(x)
		}
	}
	return v
}
