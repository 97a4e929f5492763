package ca

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"nixpki/internal/keys"
	"nixpki/internal/store"
)

// checkDataDir refuses a data directory, or its secrets directory, that group or
// others may write: they could replace keys, configuration or the database.
func checkDataDir(dir string) error {
	if err := keys.CheckDir(dir); errors.Is(err, os.ErrNotExist) {
		return nil // config.Load says what to do
	} else if err != nil {
		return err
	}
	err := keys.CheckDir(filepath.Join(dir, secretsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// openDB opens the SQLite database at path, creating it 0600 first: it holds the
// ACME EAB and nonce HMAC keys, and SQLite would create it 0644. An existing file
// that group or others may read is made 0600, with its WAL and shared-memory files.
func openDB(ctx context.Context, path string) (*store.DB, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return nil, err
			}
		}
	}
	return store.OpenSQLite(ctx, path)
}
