package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"nixpki/internal/store"
	"nixpki/internal/store/storetest"
	"nixpki/internal/testutil"
)

func TestMain(m *testing.M) { testutil.ExitWithPostgres(m) }

func TestConformanceSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (storetest.Store, storetest.Store) {
		p := filepath.Join(t.TempDir(), "t.db")
		return openTwo(t, func() (*store.DB, error) { return store.OpenSQLite(context.Background(), p) })
	})
}

func TestConformancePostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (storetest.Store, storetest.Store) {
		dsn, _ := testutil.Postgres(t)
		db, err := store.OpenPostgres(context.Background(), dsn, store.PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		db.Close()
		return openTwo(t, func() (*store.DB, error) {
			return store.OpenPostgres(context.Background(), dsn, store.PostgresOptions{})
		})
	})
}

// openTwo opens two handles on one database, as two servers would.
func openTwo(t *testing.T, open func() (*store.DB, error)) (storetest.Store, storetest.Store) {
	var dbs [2]*store.DB
	for i := range dbs {
		db, err := open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	return dbs[0], dbs[1]
}
