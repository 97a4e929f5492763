// Package base32 implements nixbase32, the base-32 encoding Nix uses for
// store-path hashes and for hashes in narinfo files and fingerprints.
package base32

import (
	"fmt"
)

// alphabet is Nix's base-32 alphabet: digits and lower-case letters
// without e, o, u and t.
const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// index maps a byte to its digit value, or 0xff if it is not a
// nixbase32 digit.
var index = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// EncodedLen returns the length of the nixbase32 encoding of n bytes:
// ceil(8n/5). A 20-byte store-path hash is 32 characters, a sha256 digest 52.
func EncodedLen(n int) int {
	if n <= 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// Encode encodes b in nixbase32 as Nix's printHash32 does: the output is
// read as one little-endian number, most significant 5-bit digit first, so
// the bytes appear in reverse order compared with RFC 4648 base32.
func Encode(b []byte) string {
	n := EncodedLen(len(b))
	out := make([]byte, n)
	for i := 0; i < n; i++ {
		pos := n - 1 - i // digit index counted from the least significant end
		bit := pos * 5
		byteIdx, shift := bit/8, uint(bit%8)
		c := b[byteIdx] >> shift
		if byteIdx+1 < len(b) {
			c |= b[byteIdx+1] << (8 - shift)
		}
		out[i] = alphabet[c&0x1f]
	}
	return string(out)
}

// Decode decodes a nixbase32 string. The string's length must be the
// encoded length of some byte count (see EncodedLen) and any bits
// beyond that byte count must be zero, as Nix requires.
func Decode(s string) ([]byte, error) {
	n := len(s) * 5 / 8
	if EncodedLen(n) != len(s) {
		return nil, fmt.Errorf("nixbase32: length %d is not the encoded length of any byte count", len(s))
	}
	out := make([]byte, n)
	for i := 0; i < len(s); i++ {
		c := s[len(s)-1-i]
		d := index[c]
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

// IsDigit reports whether c is a nixbase32 digit.
func IsDigit(c byte) bool { return index[c] != 0xff }
