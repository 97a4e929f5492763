package verify

import (
	"context"
	"crypto/sha256"
	"io"
	"os"

	"nixpki/internal/nix/localstore"
	"nixpki/internal/nix/nar"
)

// DBPath is where Nix keeps its database, relative to the store's root.
const DBPath = localstore.DBPath

// LocalStore is a local Nix store (localstore.Store: read-only, no lock, no
// daemon) whose contents verify hashes from the file system.
type LocalStore struct {
	*localstore.Store

	// multiBuffer: hash with multi-buffer SHA-256 (set by Run when it has
	// enough paths to hash at once to fill its lanes).
	multiBuffer bool
}

// OpenLocalStore opens the store rooted at root ("" or "/" for the machine's
// own), as localstore.Open does: a database that cannot be opened fails every
// query with the reason, so that a run reports it per path and carries on.
func OpenLocalStore(ctx context.Context, root string) *LocalStore {
	return &LocalStore{Store: localstore.Open(ctx, root)}
}

// Contents recomputes the path's NAR hash and size from the file system, and
// feeds what its content address covers to ca, if not nil.
func (s *LocalStore) Contents(ctx context.Context, pi *PathInfo, ca *caHash) (sum [32]byte, size uint64, err error) {
	fsPath := s.RealPath(pi.Path)
	if ca != nil && !ca.recursive {
		if err := hashFlatFile(fsPath, ca); err != nil {
			return sum, 0, err
		}
	}
	if ca != nil && ca.recursive {
		h := sha256.New()
		cw := &nar.CountWriter{W: io.MultiWriter(h, ca.h)}
		if err := nar.DumpPath(cw, fsPath); err != nil {
			return sum, 0, err
		}
		copy(sum[:], h.Sum(nil))
		return sum, cw.N, nil
	}
	return hashPath(fsPath, s.multiBuffer)
}

// hashFlatFile hashes the contents of the regular file a flat or text content
// address covers.
func hashFlatFile(fsPath string, ca *caHash) error {
	f, err := os.Open(fsPath)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return corruptf("its content address covers a single file, but it is a %s", fileKind(fi.Mode()))
	}
	_, err = io.Copy(ca.h, f)
	return err
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeSymlink != 0:
		return "symlink"
	}
	return "special file"
}
