package localstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"nixpki/internal/nix/base32"
	"nixpki/internal/nix/storepath"
)

func storePathOf(name string) string {
	h := sha256.Sum256([]byte(name))
	return storepath.DefaultStoreDir + "/" + base32.Encode(h[:20]) + "-" + name
}

func TestResolveArg(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "root", "nix", "store")
	p := storePathOf("foo")
	os.MkdirAll(filepath.Join(real, filepath.Base(p), "bin"), 0o755)
	os.Symlink(p, filepath.Join(dir, "result"))
	os.Symlink("result", filepath.Join(dir, "result2"))
	for arg, want := range map[string]string{
		p:                             p,
		p + "/bin/sh":                 p,
		filepath.Join(dir, "result"):  p,
		filepath.Join(dir, "result2"): p,
		filepath.Join(real, filepath.Base(p), "bin"): p,
	} {
		got, err := ResolveArg(arg, storepath.DefaultStoreDir, real)
		if err != nil || got != want {
			t.Errorf("ResolveArg(%q) = %q, %v; want %q", arg, got, err, want)
		}
	}
	for _, arg := range []string{dir, "/nix/store", "/nix/store/short", "/etc"} {
		if got, err := ResolveArg(arg, storepath.DefaultStoreDir, real); err == nil {
			t.Errorf("ResolveArg(%q) = %q, want an error", arg, got)
		}
	}
}

// TestReadsWAL: records Nix has committed to the write-ahead log but not yet
// checkpointed into the database file are seen (immutable=1 would miss them).
func TestReadsWAL(t *testing.T) {
	root := t.TempDir()
	dbFile := filepath.Join(root, DBPath)
	os.MkdirAll(filepath.Dir(dbFile), 0o755)
	w, err := sql.Open("sqlite", dbFile+"?_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.SetMaxOpenConns(1)
	p := storePathOf("in-wal")
	for _, q := range []string{
		"CREATE TABLE ValidPaths (id integer primary key autoincrement not null, path text unique not null, hash text not null, registrationTime integer not null, deriver text, narSize integer, ultimate integer, sigs text, ca text)",
		"CREATE TABLE Refs (referrer integer not null, reference integer not null, primary key (referrer, reference))",
		"INSERT INTO ValidPaths (path, hash, registrationTime, narSize, ultimate) VALUES ('" + p + "', 'sha256:e85dceb2e79a15c8f989c633a47e71dbac2f262213fd524a2f58584ee68c37d6', 1, 120, 1)",
		"INSERT INTO Refs VALUES (1, 1)",
	} {
		if _, err := w.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(dbFile + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no write-ahead log: %v", err)
	}
	st := Open(context.Background(), root)
	defer st.Close()
	pi, err := st.Info(context.Background(), p)
	if err != nil || !pi.Ultimate || pi.NarSize != 120 || len(pi.References) != 1 || pi.References[0] != p {
		t.Fatalf("%+v, %v", pi, err)
	}
	if all, err := st.All(context.Background()); err != nil || len(all) != 1 {
		t.Fatalf("All: %q, %v", all, err)
	}
}
