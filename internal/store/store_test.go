package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTest(t *testing.T) (*DB, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "t.db")
	db, err := OpenSQLite(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, p
}

func cert(serial string) *Cert {
	now := time.Now()
	return &Cert{Serial: serial, Issuer: "tls", Subject: "CN=x", SANs: []string{"x.internal", "10.0.0.1"}, NotBefore: now, NotAfter: now.Add(time.Hour), DER: []byte{1, 2}, Requester: "t", Method: "test", CreatedAt: now}
}

func TestContract(t *testing.T) {
	db, path := openTest(t)
	ctx := context.Background()
	if _, err := db.GetCert(ctx, "aa"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing cert: %v", err)
	}
	if err := db.PutCert(ctx, cert("aa")); err != nil {
		t.Fatal(err)
	}
	if err := db.PutCert(ctx, cert("aa")); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate serial: %v", err)
	}
	c, err := db.GetCert(ctx, "aa")
	if err != nil || len(c.SANs) != 2 || c.Revoked() {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := db.RevokeCert(ctx, "bb", time.Now(), 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke missing: %v", err)
	}
	if _, err := db.RevokeCert(ctx, "aa", time.Now(), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeCert(ctx, "aa", time.Now(), 1); !errors.Is(err, ErrAlreadyRevoked) {
		t.Fatalf("double revoke: %v", err)
	}
	st, _ := db.GetCRL(ctx, "tls")
	if st.Revision != 1 || st.DER != nil {
		t.Fatalf("CRL state after one revocation: %+v", st)
	}
	// Reopening applies no migration twice.
	db2, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	db2.Close()
}

func TestRebuildCRLNumbersIncreaseUnderConcurrency(t *testing.T) {
	db, path := openTest(t)
	other, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		for _, d := range []*DB{db, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := d.RebuildCRL(context.Background(), "tls", func(n int64, _ []RevokedEntry) ([]byte, time.Time, time.Time, error) {
					return []byte{byte(n)}, time.Now(), time.Now().Add(time.Hour), nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[st.Number] {
					t.Errorf("CRL number %d issued twice", st.Number)
				}
				seen[st.Number] = true
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if len(seen) != 40 {
		t.Fatalf("%d distinct CRL numbers, want 40", len(seen))
	}
}
