// Package localstore reads a local Nix store read-only: Nix's SQLite database,
// without Nix's lock and without a daemon, and where each store path's files
// are on this machine. It is what nixpki verify checks a local store with and
// what nixpki nix push reads a closure from.
package localstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/pathinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
)

// DBPath is where Nix keeps its database, relative to the store's root.
const DBPath = "nix/var/nix/db/db.sqlite"

// Store reads a local Nix store: the store directory's files and Nix's SQLite
// database, read-only, without Nix's lock and without a daemon. Root is "/" for the
// machine's own store, or the root of a chroot store (Nix's local?root=DIR, what
// `nix copy --to DIR` makes), whose paths are still named /nix/store/… but live
// under DIR.
type Store struct {
	root     string
	storeDir string
	db       *sql.DB
	dbErr    error // why the database cannot be read, if it cannot
}

// Open opens the store rooted at root ("" or "/" for the machine's
// own). A database that cannot be opened is not an error here: every query then
// fails with the reason, so that a run reports it per path and carries on.
func Open(ctx context.Context, root string) *Store {
	if root == "" {
		root = "/"
	}
	s := &Store{root: filepath.Clean(root), storeDir: storepath.DefaultStoreDir}
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
func (s *Store) Close() error {
	if s.db != nil {
		return s.db.Close()
	}
	return nil
}

// StoreDir is the logical store directory, /nix/store.
func (s *Store) StoreDir() string { return s.storeDir }

// String names the store in messages.
func (s *Store) String() string {
	if s.root == "/" {
		return "the local store"
	}
	return "the store rooted at " + s.root
}

// RealPath is where a store path's files are on this machine.
func (s *Store) RealPath(p string) string { return filepath.Join(s.root, p) }

// Resolve maps a command-line argument to a store path: a store path or a path
// inside one, a symlink (such as ./result) leading into the store, or the real
// location of a path of a chroot store.
func (s *Store) Resolve(arg string) (string, error) {
	return ResolveArg(arg, s.storeDir, s.RealPath(s.storeDir))
}

// Info reads a path's record from the database.
func (s *Store) Info(ctx context.Context, p string) (*pathinfo.Info, error) {
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
		return nil, fmt.Errorf("path '%s' %w", p, pathinfo.ErrNotValid)
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
func (s *Store) Closure(ctx context.Context, roots []string) ([]*pathinfo.Info, error) {
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
			return nil, fmt.Errorf("path '%s' %w", r, pathinfo.ErrNotValid)
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
	out := make([]*pathinfo.Info, 0, len(ids))
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
func (s *Store) All(ctx context.Context) ([]string, error) {
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

// ResolveArg maps arg to a store path of storeDir, following symlinks on the way;
// realStoreDir is where storeDir's files are on this machine (differs for chroot
// stores; the same directory for a store whose files are not here, such as a
// binary cache).
func ResolveArg(arg, storeDir, realStoreDir string) (string, error) {
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

// dbRow is one ValidPaths row as the database holds it; NULL columns are "" or 0.
type dbRow struct {
	Path     string
	Hash     string // "sha256:<base16>" as Nix writes it; any notation Nix reads is accepted
	NarSize  int64
	Ultimate int64
	Sigs     string
	CA       string
	Deriver  string
	Refs     []string
}

// parseDBRow checks a database row of a store in storeDir and turns it into a
// pathinfo.Info. Malformed signatures do not fail the row (they are kept in
// BadSigs); a malformed path, hash, size, content address or reference does.
func parseDBRow(storeDir string, r dbRow) (*pathinfo.Info, error) {
	if _, err := storepath.Parse(storeDir, r.Path); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	h, err := nixhash.ParseSHA256(r.Hash)
	if err != nil {
		return nil, fmt.Errorf("database record of '%s': NarHash: %w", r.Path, err)
	}
	if r.NarSize < 0 {
		return nil, fmt.Errorf("database record of '%s': negative NarSize %d", r.Path, r.NarSize)
	}
	pi := &pathinfo.Info{Path: r.Path, NarHash: h, NarSize: uint64(r.NarSize), Ultimate: r.Ultimate != 0}
	if _, err := storepath.Parse(storeDir, r.Deriver); err == nil {
		pi.Deriver = r.Deriver // informative only: a malformed one is left out
	}
	pi.Sigs, pi.BadSigs = parseSigs(r.Sigs)
	if r.CA != "" {
		ca, err := contentaddress.Parse(r.CA)
		if err != nil {
			return nil, fmt.Errorf("database record of '%s': %w", r.Path, err)
		}
		pi.CA = ca.String()
	}
	for _, ref := range r.Refs {
		if _, err := storepath.Parse(storeDir, ref); err != nil {
			return nil, fmt.Errorf("database record of '%s': reference: %w", r.Path, err)
		}
	}
	pi.References = slices.Compact(slices.Sorted(slices.Values(r.Refs)))
	return pi, nil
}

// parseSigs splits a space-separated list of signatures (the database's sigs
// column) into well-formed signatures, without duplicates, and the texts that
// do not parse, each with the reason.
func parseSigs(field string) (sigs []signing.Signature, bad []string) {
	seen := map[string]bool{}
	for _, s := range strings.Fields(field) {
		sig, err := signing.ParseSignature(s)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%.100q: %v", s, err))
			continue
		}
		if canon := sig.String(); !seen[canon] {
			seen[canon] = true
			sigs = append(sigs, sig)
		}
	}
	return sigs, bad
}
