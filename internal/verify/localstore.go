package verify

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/storepath"
)

// DBPath is where Nix keeps its database, relative to the store's root.
const DBPath = "nix/var/nix/db/db.sqlite"

// LocalStore reads a local Nix store: the store directory's files and Nix's SQLite
// database, read-only, without Nix's lock and without a daemon. Root is "/" for the
// machine's own store, or the root of a chroot store (Nix's local?root=DIR, what
// `nix copy --to DIR` makes), whose paths are still named /nix/store/… but live
// under DIR.
type LocalStore struct {
	root     string
	storeDir string
	db       *sql.DB
	dbErr    error // why the database cannot be read, if it cannot

	// multiBuffer: hash with multi-buffer SHA-256 (set by Run when it has
	// enough paths to hash at once to fill its lanes).
	multiBuffer bool
}

// OpenLocalStore opens the store rooted at root ("" or "/" for the machine's
// own). A database that cannot be opened is not an error here: every query then
// fails with the reason, so that a run reports it per path and carries on.
func OpenLocalStore(ctx context.Context, root string) *LocalStore {
	if root == "" {
		root = "/"
	}
	s := &LocalStore{root: filepath.Clean(root), storeDir: storepath.DefaultStoreDir}
	s.db, s.dbErr = openNixDB(ctx, filepath.Join(s.root, DBPath))
	return s
}

// openNixDB opens Nix's database read-only. Nix runs it in WAL mode, so a reader
// must see the write-ahead log: mode=ro does, but needs the -shm file to exist or
// be creatable. Only when that fails and there is no write-ahead log to miss does
// it fall back to immutable=1, which reads the main file alone.
func openNixDB(ctx context.Context, path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cannot open Nix database: %w", err)
	}
	open := func(params string) (*sql.DB, error) {
		u := url.URL{Scheme: "file", Path: path, RawQuery: params + "&_pragma=query_only(1)&_pragma=busy_timeout(10000)"}
		db, err := sql.Open("sqlite", u.String())
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(4)
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name IN ('ValidPaths', 'Refs')").Scan(&n); err != nil {
			db.Close()
			return nil, err
		}
		if n != 2 {
			db.Close()
			return nil, fmt.Errorf("%s is not a Nix database (no ValidPaths and Refs tables)", path)
		}
		return db, nil
	}
	db, err := open("mode=ro")
	if err == nil {
		return db, nil
	}
	if fi, werr := os.Stat(path + "-wal"); werr == nil && fi.Size() > 0 {
		return nil, fmt.Errorf("cannot read Nix database %s (it has a write-ahead log, which a read-only reader needs write access to %s-shm or its directory for): %w", path, path, err)
	}
	db, err2 := open("immutable=1")
	if err2 != nil {
		return nil, fmt.Errorf("cannot read Nix database %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database.
func (s *LocalStore) Close() error {
	if s.db != nil {
		return s.db.Close()
	}
	return nil
}

// StoreDir is the logical store directory, /nix/store.
func (s *LocalStore) StoreDir() string { return s.storeDir }

// String names the store in messages.
func (s *LocalStore) String() string {
	if s.root == "/" {
		return "the local store"
	}
	return "the store rooted at " + s.root
}

// realPath is where a store path's files are on this machine.
func (s *LocalStore) realPath(p string) string { return filepath.Join(s.root, p) }

// Resolve maps a command-line argument to a store path: a store path or a path
// inside one, a symlink (such as ./result) leading into the store, or the real
// location of a path of a chroot store.
func (s *LocalStore) Resolve(arg string) (string, error) {
	return resolveArg(arg, s.storeDir, s.realPath(s.storeDir))
}

// Info reads a path's record from the database.
func (s *LocalStore) Info(ctx context.Context, p string) (*PathInfo, error) {
	if s.dbErr != nil {
		return nil, s.dbErr
	}
	var (
		id       int64
		r        = dbRow{Path: p}
		hash     string
		narSize  sql.NullInt64
		ultimate sql.NullInt64
		sigs, ca sql.NullString
		deriver  sql.NullString
	)
	err := s.db.QueryRowContext(ctx, "SELECT id, hash, narSize, ultimate, sigs, ca, deriver FROM ValidPaths WHERE path = ?", p).
		Scan(&id, &hash, &narSize, &ultimate, &sigs, &ca, &deriver)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("path '%s' %w", p, ErrNotValid)
	}
	if err != nil {
		return nil, fmt.Errorf("querying the Nix database for '%s': %w", p, err)
	}
	r.Hash, r.NarSize, r.Ultimate, r.Sigs, r.CA, r.Deriver = hash, narSize.Int64, ultimate.Int64, sigs.String, ca.String, deriver.String
	rows, err := s.db.QueryContext(ctx, "SELECT v.path FROM Refs r JOIN ValidPaths v ON r.reference = v.id WHERE r.referrer = ?", id)
	if err != nil {
		return nil, fmt.Errorf("querying the references of '%s': %w", p, err)
	}
	defer rows.Close()
	for rows.Next() {
		var ref string
		if err := rows.Scan(&ref); err != nil {
			return nil, fmt.Errorf("querying the references of '%s': %w", p, err)
		}
		r.Refs = append(r.Refs, ref)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("querying the references of '%s': %w", p, err)
	}
	return parseDBRow(s.storeDir, r)
}

// Closure reads the records of the closure of roots (valid store paths) in two
// queries, a recursive one for the paths and one for their references, where Info
// takes two per path: a closure of a few hundred paths is read in a few
// milliseconds. The order is the database's.
func (s *LocalStore) Closure(ctx context.Context, roots []string) ([]*PathInfo, error) {
	if s.dbErr != nil {
		return nil, s.dbErr
	}
	if len(roots) == 0 {
		return nil, nil
	}
	args := make([]any, len(roots))
	for i, r := range roots {
		args[i] = r
	}
	closure := "WITH RECURSIVE closure(id) AS (SELECT id FROM ValidPaths WHERE path IN (?" + strings.Repeat(", ?", len(roots)-1) + ") " +
		"UNION SELECT r.reference FROM Refs r JOIN closure c ON r.referrer = c.id) "
	rows, err := s.db.QueryContext(ctx, closure+"SELECT v.id, v.path, v.hash, v.narSize, v.ultimate, v.sigs, v.ca, v.deriver FROM ValidPaths v JOIN closure c ON v.id = c.id", args...)
	if err != nil {
		return nil, fmt.Errorf("querying the Nix database for the closure: %w", err)
	}
	byID := map[int64]*dbRow{}
	var ids []int64
	for rows.Next() {
		var (
			id                int64
			r                 dbRow
			narSize, ultimate sql.NullInt64
			sigs, ca, deriver sql.NullString
		)
		if err := rows.Scan(&id, &r.Path, &r.Hash, &narSize, &ultimate, &sigs, &ca, &deriver); err != nil {
			rows.Close()
			return nil, fmt.Errorf("querying the Nix database for the closure: %w", err)
		}
		r.NarSize, r.Ultimate, r.Sigs, r.CA, r.Deriver = narSize.Int64, ultimate.Int64, sigs.String, ca.String, deriver.String
		byID[id] = &r
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("querying the Nix database for the closure: %w", err)
	}
	found := map[string]bool{}
	for _, r := range byID {
		found[r.Path] = true
	}
	for _, r := range roots {
		if !found[r] {
			return nil, fmt.Errorf("path '%s' %w", r, ErrNotValid)
		}
	}
	rows, err = s.db.QueryContext(ctx, closure+"SELECT r.referrer, v.path FROM Refs r JOIN closure c ON r.referrer = c.id JOIN ValidPaths v ON r.reference = v.id", args...)
	if err != nil {
		return nil, fmt.Errorf("querying the references of the closure: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id  int64
			ref string
		)
		if err := rows.Scan(&id, &ref); err != nil {
			return nil, fmt.Errorf("querying the references of the closure: %w", err)
		}
		if r := byID[id]; r != nil {
			r.Refs = append(r.Refs, ref)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("querying the references of the closure: %w", err)
	}
	out := make([]*PathInfo, 0, len(ids))
	for _, id := range ids {
		pi, err := parseDBRow(s.storeDir, *byID[id])
		if err != nil {
			return nil, err
		}
		out = append(out, pi)
	}
	return out, nil
}

// All lists every valid path.
func (s *LocalStore) All(ctx context.Context) ([]string, error) {
	if s.dbErr != nil {
		return nil, s.dbErr
	}
	rows, err := s.db.QueryContext(ctx, "SELECT path FROM ValidPaths ORDER BY path")
	if err != nil {
		return nil, fmt.Errorf("listing valid paths: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("listing valid paths: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Contents recomputes the path's NAR hash and size from the file system, and
// feeds what its content address covers to ca, if not nil.
func (s *LocalStore) Contents(ctx context.Context, pi *PathInfo, ca *caHash) (sum [32]byte, size uint64, err error) {
	fsPath := s.realPath(pi.Path)
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

// resolveArg maps arg to a store path of storeDir, following symlinks on the way;
// realStoreDir is where storeDir's files are on this machine (differs for chroot
// stores).
func resolveArg(arg, storeDir, realStoreDir string) (string, error) {
	inStore := func(p string) (string, bool) {
		for _, dir := range []string{storeDir, realStoreDir} {
			if rest, ok := strings.CutPrefix(p, dir+"/"); ok {
				base, _, _ := strings.Cut(rest, "/")
				return storeDir + "/" + base, nil == storepath.ValidateBaseName(base)
			}
		}
		return "", false
	}
	p := arg
	for range 40 {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if sp, ok := inStore(p); ok {
			return sp, nil
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	return "", fmt.Errorf("'%s' is not a path in the Nix store %s", arg, storeDir)
}
