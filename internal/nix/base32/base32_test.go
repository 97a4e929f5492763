package base32

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBase32KnownAnswers(t *testing.T) {
	for _, c := range []struct{ hex, nix32 string }{
		// sha256("") and sha1("") as printed by nix hash to-base32.
		{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"},
		{"da39a3ee5e6b4b0d3255bfef95601890afd80709", "143xibwh31h9bvxzalr0sjvbbvpa6ffs"},
		// A NarHash seen in a narinfo and as SRI in nix path-info --json.
		{"d104432bccba87dab0a8a21199ac01115b723428c8ae55b4c25c9134aa30c5b4", "1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i"},
		{"", ""},
		{"00", "00"},
		{"ff", "7z"},
		{"0100000000", "00000001"},
	} {
		b := mustHex(t, c.hex)
		if got := Encode(b); got != c.nix32 {
			t.Errorf("Encode(%s) = %q, want %q", c.hex, got, c.nix32)
		}
		got, err := Decode(c.nix32)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("Decode(%q) = %x, %v; want %s", c.nix32, got, err, c.hex)
		}
	}
}

func TestBase32RoundTrip(t *testing.T) {
	for n := 0; n <= 70; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*37 + n)
		}
		s := Encode(b)
		if len(s) != EncodedLen(n) {
			t.Errorf("len(Encode(%d bytes)) = %d, want %d", n, len(s), EncodedLen(n))
		}
		got, err := Decode(s)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("round trip of %x: %x, %v", b, got, err)
		}
	}
}

func TestBase32Rejects(t *testing.T) {
	for _, s := range []string{
		"e",  // not in the alphabet
		"0",  // length 1 encodes no byte count
		"80", // 1 byte: top digit may only be 0-7
		"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7u",
		"0MDQA9W1P6CMLI6976V4WI0SW9R4P5PRKJ7LZFD1877WK11C9C73",
		"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", // overflows 256 bits
	} {
		if b, err := Decode(s); err == nil {
			t.Errorf("Decode(%q) = %x, want error", s, b)
		}
	}
}
