package nixkey

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// base32Alphabet is Nix's base-32 alphabet: digits and lower-case letters
// without e, o, u and t.
const base32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// base32Index maps a byte to its digit value, or 0xff if it is not a
// nixbase32 digit.
var base32Index = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(base32Alphabet); i++ {
		t[base32Alphabet[i]] = byte(i)
	}
	return t
}()

// Base32EncodedLen returns the length of the nixbase32 encoding of n bytes:
// ceil(8n/5). A 20-byte store-path hash is 32 characters, a sha256 digest 52.
func Base32EncodedLen(n int) int {
	if n <= 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// EncodeBase32 encodes b in nixbase32 as Nix's printHash32 does: the output is
// read as one little-endian number, most significant 5-bit digit first, so
// the bytes appear in reverse order compared with RFC 4648 base32.
func EncodeBase32(b []byte) string {
	n := Base32EncodedLen(len(b))
	out := make([]byte, n)
	for i := 0; i < n; i++ {
		pos := n - 1 - i // digit index counted from the least significant end
		bit := pos * 5
		byteIdx, shift := bit/8, uint(bit%8)
		c := b[byteIdx] >> shift
		if byteIdx+1 < len(b) {
			c |= b[byteIdx+1] << (8 - shift)
		}
		out[i] = base32Alphabet[c&0x1f]
	}
	return string(out)
}

// DecodeBase32 decodes a nixbase32 string. The string's length must be the
// encoded length of some byte count (see Base32EncodedLen) and any bits
// beyond that byte count must be zero, as Nix requires.
func DecodeBase32(s string) ([]byte, error) {
	n := len(s) * 5 / 8
	if Base32EncodedLen(n) != len(s) {
		return nil, fmt.Errorf("nixbase32: length %d is not the encoded length of any byte count", len(s))
	}
	out := make([]byte, n)
	for i := 0; i < len(s); i++ {
		c := s[len(s)-1-i]
		d := base32Index[c]
		if d == 0xff {
			return nil, fmt.Errorf("nixbase32: invalid character %q at offset %d", c, len(s)-1-i)
		}
		bit := i * 5
		byteIdx, shift := bit/8, uint(bit%8)
		out[byteIdx] |= d << shift
		hi := d >> (8 - shift)
		if byteIdx+1 < n {
			out[byteIdx+1] |= hi
		} else if hi != 0 {
			return nil, fmt.Errorf("nixbase32: %q has non-zero bits beyond %d bytes", s, n)
		}
	}
	return out, nil
}

// hashAlgos are the hash algorithms Nix knows, with their digest sizes.
var hashAlgos = map[string]int{
	"md5":    16,
	"sha1":   20,
	"sha256": 32,
	"sha512": 64,
}

// parseHash parses a hash written with its algorithm, in any notation that
// Nix's Hash::parseAnyPrefixed accepts: "ALGO:" followed by base16 (either
// case), nixbase32 or padded base64 — told apart by length — or the SRI form
// "ALGO-" followed by base64.
func parseHash(s string) (algo string, digest []byte, err error) {
	var rest string
	sri := false
	if i := strings.IndexByte(s, ':'); i >= 0 {
		algo, rest = s[:i], s[i+1:]
	} else if i := strings.IndexByte(s, '-'); i >= 0 {
		algo, rest, sri = s[:i], s[i+1:], true
	} else {
		return "", nil, fmt.Errorf("hash %q does not start with an algorithm (expected e.g. \"sha256:\" or \"sha256-\")", s)
	}
	size, ok := hashAlgos[algo]
	if !ok {
		return "", nil, fmt.Errorf("hash %q has unknown algorithm %q (expected md5, sha1, sha256 or sha512)", s, algo)
	}
	if sri {
		d, err := decodeNixBase64(rest)
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
	case Base32EncodedLen(size):
		d, err := DecodeBase32(rest)
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
		s, len(rest), algo, 2*size, Base32EncodedLen(size), base64.StdEncoding.EncodedLen(size))
}

// formatHash renders a digest as Nix writes hashes in narinfo files and
// fingerprints: "ALGO:<nixbase32>".
func formatHash(algo string, digest []byte) string {
	return algo + ":" + EncodeBase32(digest)
}

// ParseSHA256 parses a sha256 hash in any form Nix accepts: "sha256:" followed
// by nixbase32 (52 characters), base16 (64) or base64 (44), or SRI
// "sha256-<base64>". Other algorithms are rejected.
func ParseSHA256(s string) ([32]byte, error) {
	var h [32]byte
	algo, d, err := parseHash(s)
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
func FormatSHA256(h [32]byte) string { return formatHash("sha256", h[:]) }

// FormatSHA256SRI renders h as SRI "sha256-<base64>", the form of
// nix path-info --json and nix hash path.
func FormatSHA256SRI(h [32]byte) string {
	return "sha256-" + base64.StdEncoding.EncodeToString(h[:])
}

// decodeNixBase64 decodes standard base64 the way Nix's base64Decode does for
// keys and signatures: newlines are skipped and the trailing '=' padding may
// be missing. It is stricter than Nix in rejecting anything after the padding,
// wrong amounts of padding and non-zero trailing bits, so that every accepted
// input has a single meaning.
func decodeNixBase64(s string) ([]byte, error) {
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
