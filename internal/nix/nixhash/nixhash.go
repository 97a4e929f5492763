// Package nixhash parses and formats hashes in the notations Nix accepts:
// "ALGO:" followed by base16, nixbase32 or base64, and SRI "ALGO-<base64>".
package nixhash

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"nixpki/internal/nix/base32"
)

// algos are the hash algorithms Nix knows, with their digest sizes.
var algos = map[string]int{
	"md5":    16,
	"sha1":   20,
	"sha256": 32,
	"sha512": 64,
}

// Parse parses a hash written with its algorithm, in any notation that
// Nix's Hash::parseAnyPrefixed accepts: "ALGO:" followed by base16 (either
// case), nixbase32 or padded base64 — told apart by length — or the SRI form
// "ALGO-" followed by base64.
func Parse(s string) (algo string, digest []byte, err error) {
	var rest string
	sri := false
	if i := strings.IndexByte(s, ':'); i >= 0 {
		algo, rest = s[:i], s[i+1:]
	} else if i := strings.IndexByte(s, '-'); i >= 0 {
		algo, rest, sri = s[:i], s[i+1:], true
	} else {
		return "", nil, fmt.Errorf("hash %q does not start with an algorithm (expected e.g. \"sha256:\" or \"sha256-\")", s)
	}
	size, ok := algos[algo]
	if !ok {
		return "", nil, fmt.Errorf("hash %q has unknown algorithm %q (expected md5, sha1, sha256 or sha512)", s, algo)
	}
	if sri {
		d, err := DecodeBase64(rest)
		if err != nil {
			return "", nil, fmt.Errorf("SRI hash %q: %w", s, err)
		}
		if len(d) != size {
			return "", nil, fmt.Errorf("SRI hash %q has %d bytes, want %d for %s", s, len(d), size, algo)
		}
		return algo, d, nil
	}
	switch len(rest) {
	case 2 * size:
		d, err := hex.DecodeString(rest)
		if err != nil {
			return "", nil, fmt.Errorf("hash %q: invalid base16: %w", s, err)
		}
		return algo, d, nil
	case base32.EncodedLen(size):
		d, err := base32.Decode(rest)
		if err != nil {
			return "", nil, fmt.Errorf("hash %q: %w", s, err)
		}
		return algo, d, nil
	case base64.StdEncoding.EncodedLen(size):
		d, err := base64.StdEncoding.Strict().DecodeString(rest)
		if err != nil {
			return "", nil, fmt.Errorf("hash %q: invalid base64: %w", s, err)
		}
		if len(d) != size { // 44 characters without padding are 33 bytes
			return "", nil, fmt.Errorf("hash %q: base64 decodes to %d bytes, want %d for %s", s, len(d), size, algo)
		}
		return algo, d, nil
	}
	return "", nil, fmt.Errorf("hash %q has wrong length %d for %s (want %d base16, %d nixbase32 or %d base64 characters)",
		s, len(rest), algo, 2*size, base32.EncodedLen(size), base64.StdEncoding.EncodedLen(size))
}

// Format renders a digest as Nix writes hashes in narinfo files and
// fingerprints: "ALGO:<nixbase32>".
func Format(algo string, digest []byte) string {
	return algo + ":" + base32.Encode(digest)
}

// ParseSHA256 parses a sha256 hash in any form Nix accepts: "sha256:" followed
// by nixbase32 (52 characters), base16 (64) or base64 (44), or SRI
// "sha256-<base64>". Other algorithms are rejected.
func ParseSHA256(s string) ([32]byte, error) {
	var h [32]byte
	algo, d, err := Parse(s)
	if err != nil {
		return h, err
	}
	if algo != "sha256" {
		return h, fmt.Errorf("hash %q uses %s, want sha256", s, algo)
	}
	copy(h[:], d)
	return h, nil
}

// FormatSHA256 renders h as "sha256:<nixbase32>", the form Nix writes in
// narinfo files and signs in fingerprints.
func FormatSHA256(h [32]byte) string { return Format("sha256", h[:]) }

// FormatSHA256SRI renders h as SRI "sha256-<base64>", the form of
// nix path-info --json and nix hash path.
func FormatSHA256SRI(h [32]byte) string {
	return "sha256-" + base64.StdEncoding.EncodeToString(h[:])
}

// DecodeBase64 decodes standard base64 the way Nix's base64Decode does for
// keys and signatures: newlines are skipped and the trailing '=' padding may
// be missing. It is stricter than Nix in rejecting anything after the padding,
// wrong amounts of padding and non-zero trailing bits, so that every accepted
// input has a single meaning.
func DecodeBase64(s string) ([]byte, error) {
	if strings.IndexByte(s, '\n') >= 0 {
		s = strings.ReplaceAll(s, "\n", "")
	}
	body := strings.TrimRight(s, "=")
	pad := len(s) - len(body)
	if pad > 0 && (pad > 2 || (len(body)+pad)%4 != 0) {
		return nil, errors.New("invalid base64: wrong padding")
	}
	d, err := base64.RawStdEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("invalid base64: %w", err)
	}
	return d, nil
}

// Size returns the digest size in bytes of the named algorithm and whether
// Nix knows the algorithm.
func Size(algo string) (int, bool) {
	n, ok := algos[algo]
	return n, ok
}

// New returns a hash of the named algorithm (md5, sha1, sha256, sha512).
func New(algo string) (hash.Hash, error) {
	switch algo {
	case "md5":
		return md5.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unknown hash algorithm %q", algo)
}
