// Package storepath validates Nix store directories, store paths and the
// names in them, as Nix's StorePath does.
package storepath

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"nixpki/internal/nix/base32"
)

const (
	// DefaultStoreDir is Nix's default store directory.
	DefaultStoreDir = "/nix/store"
	// HashLen is the length of the hash part of a store path's base
	// name: 160 bits in nixbase32.
	HashLen = 32
	// MaxNameLen is the longest name part Nix allows (after the
	// hash and the dash).
	MaxNameLen = 211
	// MaxStoreDirLen bounds store directories accepted by this package.
	MaxStoreDirLen = 1024
)

// isNameChar reports whether c may appear in a store path name:
// [0-9a-zA-Z+\-._?=].
func isNameChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		c == '+' || c == '-' || c == '.' || c == '_' || c == '?' || c == '='
}

// ValidateName checks the name part of a store path (what follows
// "<hash>-") like Nix's checkName: non-empty, at most MaxNameLen
// bytes, only the characters [0-9a-zA-Z+\-._?=]. Like newer Nix (stricter
// than 2.8, which never produces such names) it also rejects "." and ".." and
// names whose first dash-separated component is one of them.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("store path name is empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("store path name is %d characters long, at most %d allowed", len(name), MaxNameLen)
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
// ValidateName for the name). A valid base name never contains '/',
// NUL or whitespace and is never "." or "..", so it is safe as a file name.
func ValidateBaseName(base string) error {
	if len(base) < HashLen+2 {
		return fmt.Errorf("store path base name %q is too short (want %d hash characters, '-' and a name)", base, HashLen)
	}
	for i := 0; i < HashLen; i++ {
		if !base32.IsDigit(base[i]) {
			return fmt.Errorf("store path base name %q has illegal nixbase32 character %q in its hash part", base, base[i])
		}
	}
	if base[HashLen] != '-' {
		return fmt.Errorf("store path base name %q has %q after its hash part, want '-'", base, base[HashLen])
	}
	if err := ValidateName(base[HashLen+1:]); err != nil {
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

// Parse checks that p is a store path directly inside storeDir
// ("<storeDir>/<base name>", nothing below it) and returns its base name.
func Parse(storeDir, p string) (base string, err error) {
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

// Split splits a full store path into its store directory and
// base name, validating both.
func Split(p string) (storeDir, base string, err error) {
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
// validate; call ValidateBaseName or Parse first.
func HashPart(p string) string {
	base := p[strings.LastIndexByte(p, '/')+1:]
	if len(base) < HashLen {
		return base
	}
	return base[:HashLen]
}

// NamePart returns the name part (after "<hash>-") of a base name or full
// store path. It does not validate.
func NamePart(p string) string {
	base := p[strings.LastIndexByte(p, '/')+1:]
	if len(base) <= HashLen+1 {
		return ""
	}
	return base[HashLen+1:]
}
