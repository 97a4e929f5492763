package nixkey

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

const (
	// DefaultStoreDir is Nix's default store directory.
	DefaultStoreDir = "/nix/store"
	// StorePathHashLen is the length of the hash part of a store path's base
	// name: 160 bits in nixbase32.
	StorePathHashLen = 32
	// MaxStorePathNameLen is the longest name part Nix allows (after the
	// hash and the dash).
	MaxStorePathNameLen = 211
	// MaxStoreDirLen bounds store directories accepted by this package.
	MaxStoreDirLen = 1024
)

// isNameChar reports whether c may appear in a store path name:
// [0-9a-zA-Z+\-._?=].
func isNameChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		c == '+' || c == '-' || c == '.' || c == '_' || c == '?' || c == '='
}

// ValidateStorePathName checks the name part of a store path (what follows
// "<hash>-") like Nix's checkName: non-empty, at most MaxStorePathNameLen
// bytes, only the characters [0-9a-zA-Z+\-._?=]. Like newer Nix (stricter
// than 2.8, which never produces such names) it also rejects "." and ".." and
// names whose first dash-separated component is one of them.
func ValidateStorePathName(name string) error {
	if name == "" {
		return errors.New("store path name is empty")
	}
	if len(name) > MaxStorePathNameLen {
		return fmt.Errorf("store path name is %d characters long, at most %d allowed", len(name), MaxStorePathNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return fmt.Errorf("store path name %q contains illegal character %q (allowed: 0-9 a-z A-Z + - . _ ? =)", name, name[i])
		}
	}
	first, _, _ := strings.Cut(name, "-")
	if first == "." || first == ".." {
		return fmt.Errorf("store path name %q must not start with the component %q", name, first)
	}
	return nil
}

// ValidateBaseName checks a store path's base name, "<32 nixbase32
// chars>-<name>", as Nix's StorePath constructor does (see
// ValidateStorePathName for the name). A valid base name never contains '/',
// NUL or whitespace and is never "." or "..", so it is safe as a file name.
func ValidateBaseName(base string) error {
	if len(base) < StorePathHashLen+2 {
		return fmt.Errorf("store path base name %q is too short (want %d hash characters, '-' and a name)", base, StorePathHashLen)
	}
	for i := 0; i < StorePathHashLen; i++ {
		if base32Index[base[i]] == 0xff {
			return fmt.Errorf("store path base name %q has illegal nixbase32 character %q in its hash part", base, base[i])
		}
	}
	if base[StorePathHashLen] != '-' {
		return fmt.Errorf("store path base name %q has %q after its hash part, want '-'", base, base[StorePathHashLen])
	}
	if err := ValidateStorePathName(base[StorePathHashLen+1:]); err != nil {
		return fmt.Errorf("store path base name %q: %w", base, err)
	}
	return nil
}

// ValidateStoreDir checks a store directory: absolute, in canonical form (no
// trailing '/', no "." or ".." components, no "//"), not "/", and made only
// of store-name characters and '/', so that it cannot make a fingerprint
// ambiguous (fingerprints are ';'- and ','-separated).
func ValidateStoreDir(dir string) error {
	if dir == "" {
		return errors.New("store directory is empty")
	}
	if len(dir) > MaxStoreDirLen {
		return fmt.Errorf("store directory is %d bytes long, at most %d allowed", len(dir), MaxStoreDirLen)
	}
	if dir[0] != '/' || dir == "/" || path.Clean(dir) != dir {
		return fmt.Errorf("store directory %q is not a canonical absolute path other than /", dir)
	}
	for i := 0; i < len(dir); i++ {
		if dir[i] != '/' && !isNameChar(dir[i]) {
			return fmt.Errorf("store directory %q contains unsupported character %q", dir, dir[i])
		}
	}
	return nil
}

// ParseStorePath checks that p is a store path directly inside storeDir
// ("<storeDir>/<base name>", nothing below it) and returns its base name.
func ParseStorePath(storeDir, p string) (base string, err error) {
	if err := ValidateStoreDir(storeDir); err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(p, storeDir+"/")
	if !ok {
		return "", fmt.Errorf("path %q is not in the Nix store %q", p, storeDir)
	}
	if err := ValidateBaseName(rest); err != nil {
		return "", fmt.Errorf("path %q: %w", p, err)
	}
	return rest, nil
}

// SplitStorePath splits a full store path into its store directory and
// base name, validating both.
func SplitStorePath(p string) (storeDir, base string, err error) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", "", fmt.Errorf("store path %q is not absolute", p)
	}
	storeDir, base = p[:i], p[i+1:]
	if err := ValidateStoreDir(storeDir); err != nil {
		return "", "", fmt.Errorf("store path %q: %w", p, err)
	}
	if err := ValidateBaseName(base); err != nil {
		return "", "", fmt.Errorf("store path %q: %w", p, err)
	}
	return storeDir, base, nil
}

// HashPart returns the 32-character hash part of a base name or full store
// path (the name of its .narinfo file without the suffix). It does not
// validate; call ValidateBaseName or ParseStorePath first.
func HashPart(p string) string {
	base := p[strings.LastIndexByte(p, '/')+1:]
	if len(base) < StorePathHashLen {
		return base
	}
	return base[:StorePathHashLen]
}

// NamePart returns the name part (after "<hash>-") of a base name or full
// store path. It does not validate.
func NamePart(p string) string {
	base := p[strings.LastIndexByte(p, '/')+1:]
	if len(base) <= StorePathHashLen+1 {
		return ""
	}
	return base[StorePathHashLen+1:]
}

// Fingerprint returns the message Nix signs for a store path:
//
//	1;<store path>;sha256:<nixbase32 narHash>;<narSize>;<references>
//
// where references are full store paths, sorted, deduplicated and joined
// with ','. storePath must be a full store path; each reference may be a
// full store path in the same store directory or a bare base name, which is
// taken to be in storePath's store directory. As in Nix, narSize must be
// non-zero.
func Fingerprint(storePath string, narHash [32]byte, narSize uint64, references []string) (string, error) {
	storeDir, _, err := SplitStorePath(storePath)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	if narSize == 0 {
		return "", fmt.Errorf("fingerprint of %s: NarSize is zero (unknown)", storePath)
	}
	refs := make([]string, 0, len(references))
	for _, r := range references {
		if strings.IndexByte(r, '/') < 0 {
			if err := ValidateBaseName(r); err != nil {
				return "", fmt.Errorf("fingerprint of %s: reference: %w", storePath, err)
			}
			r = storeDir + "/" + r
		} else if _, err := ParseStorePath(storeDir, r); err != nil {
			return "", fmt.Errorf("fingerprint of %s: reference: %w", storePath, err)
		}
		refs = append(refs, r)
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)

	var b strings.Builder
	b.Grow(len(storePath) + 80 + len(refs)*(len(storeDir)+50))
	b.WriteString("1;")
	b.WriteString(storePath)
	b.WriteByte(';')
	b.WriteString(FormatSHA256(narHash))
	b.WriteByte(';')
	b.WriteString(strconv.FormatUint(narSize, 10))
	b.WriteByte(';')
	b.WriteString(strings.Join(refs, ","))
	return b.String(), nil
}
