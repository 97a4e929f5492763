package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"nixpki/internal/store"
	"nixpki/internal/store/storetest"
)

func TestConformanceSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (storetest.Store, storetest.Store) {
		p := filepath.Join(t.TempDir(), "t.db")
		var dbs [2]*store.DB
		for i := range dbs {
			db, err := store.OpenSQLite(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			dbs[i] = db
		}
		return dbs[0], dbs[1]
	})
}
