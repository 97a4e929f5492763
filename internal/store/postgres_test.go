package store

import (
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://app:s3cret@db.internal:5432/nixpki?sslmode=require": "postgres://app:xxxxx@db.internal:5432/nixpki?sslmode=require",
		"postgres://app@/nixpki?host=/run/postgresql":                   "postgres://app@/nixpki?host=/run/postgresql",
		"postgresql://app@db/nixpki?password=s3cret":                    "postgresql://app@db/nixpki?password=xxxxx",
		"host=/run/postgresql dbname=nixpki password=s3cret user=app":   "host=/run/postgresql dbname=nixpki password=xxxxx user=app",
		"host=db password='s 3cret' dbname=nixpki":                      "host=db password=xxxxx dbname=nixpki",
	} {
		got := RedactDSN(in)
		if got != want || strings.Contains(got, "3cret") {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRebindDollar(t *testing.T) {
	got := rebindDollar(`SELECT a FROM t WHERE b = ? AND c IN (?,?,?,?,?,?,?,?,?,?)`)
	if got != `SELECT a FROM t WHERE b = $1 AND c IN ($2,$3,$4,$5,$6,$7,$8,$9,$10,$11)` {
		t.Fatal(got)
	}
}

// Every migration has a PostgreSQL form, and the two dialects end at one version.
func TestMigrationsPerDialect(t *testing.T) {
	lite, pg := &DB{dialect: sqliteDialect}, &DB{dialect: postgresDialect}
	a, err := lite.migrations()
	if err != nil {
		t.Fatal(err)
	}
	b, err := pg.migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) || a[len(a)-1].version != b[len(b)-1].version {
		t.Fatalf("%d SQLite and %d PostgreSQL migrations", len(a), len(b))
	}
	for _, m := range b {
		if strings.Contains(m.sql, "BLOB") || strings.Contains(m.sql, "WITHOUT ROWID") || strings.Contains(m.sql, "AUTOINCREMENT") {
			t.Errorf("PostgreSQL migration %s keeps SQLite syntax", m.name)
		}
	}
}
