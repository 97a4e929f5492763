package ca

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nixpki/internal/config"
)

// Loose modes on the data directory, its secrets directory or config.json are
// refused with the chmod that fixes them; the database is created 0600 and a
// loose one is tightened.
func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := Init(context.Background(), InitOptions{Dir: dir, Config: testConfig()}); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, config.Defaults().Database.Path)
	if fi, err := os.Stat(db); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database %s: mode %v (%v), want 0600", db, fi.Mode().Perm(), err)
	}
	open := func() error {
		c, err := Open(context.Background(), dir, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, tc := range []struct {
		path      string
		loose, ok os.FileMode
		want      string
	}{
		{dir, 0o777, 0o750, "chmod go-w " + dir},
		{dir, 0o770, 0o750, "writable by group or others (mode 0770)"},
		{filepath.Join(dir, "secrets"), 0o772, 0o700, "chmod go-w " + filepath.Join(dir, "secrets")},
		{filepath.Join(dir, config.FileName), 0o666, 0o644, "chmod o-w " + filepath.Join(dir, config.FileName)},
	} {
		if err := os.Chmod(tc.path, tc.loose); err != nil {
			t.Fatal(err)
		}
		if err := open(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s at %04o: Open = %v, want an error containing %q", tc.path, tc.loose, err, tc.want)
		}
		if err := os.Chmod(tc.path, tc.ok); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := open(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(db); fi.Mode().Perm() != 0o600 {
		t.Errorf("a 0644 database was left %04o", fi.Mode().Perm())
	}
}
