package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// InitTmpPrefix names the directory inside a state directory that a first start
// builds in (a systemd StateDirectory may be the only place the service can write);
// one left by an interrupted start is removed by the next.
const InitTmpPrefix = ".init-"

// ClearInitTarget refuses a directory that is not empty, apart from what an
// interrupted creation left (which it removes). what names the thing to be created.
func ClearInitTarget(dir, what string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), InitTmpPrefix) {
			return fmt.Errorf("%s exists and is not empty: a new %s needs a new or empty directory", dir, what)
		}
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// PlaceInitDir moves the entries of the finished tmp directory into dir, marker (the
// file whose presence says the directory is complete) last, and removes tmp.
func PlaceInitDir(tmp, dir, marker string) error {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == marker {
			continue
		}
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("moving the new state into %s: %w", dir, err)
		}
	}
	if err := SyncDir(dir); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, marker), filepath.Join(dir, marker)); err != nil {
		return fmt.Errorf("moving the new state into %s: %w", dir, err)
	}
	if err := SyncDir(dir); err != nil {
		return err
	}
	return os.Remove(tmp)
}

// SyncDir fsyncs a directory, making renames in it durable.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
