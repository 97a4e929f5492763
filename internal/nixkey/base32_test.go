package nixkey

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
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
		if got := EncodeBase32(b); got != c.nix32 {
			t.Errorf("EncodeBase32(%s) = %q, want %q", c.hex, got, c.nix32)
		}
		got, err := DecodeBase32(c.nix32)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("DecodeBase32(%q) = %x, %v; want %s", c.nix32, got, err, c.hex)
		}
	}
}

func TestBase32RoundTrip(t *testing.T) {
	for n := 0; n <= 70; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*37 + n)
		}
		s := EncodeBase32(b)
		if len(s) != Base32EncodedLen(n) {
			t.Errorf("len(EncodeBase32(%d bytes)) = %d, want %d", n, len(s), Base32EncodedLen(n))
		}
		got, err := DecodeBase32(s)
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
		if b, err := DecodeBase32(s); err == nil {
			t.Errorf("DecodeBase32(%q) = %x, want error", s, b)
		}
	}
}

func TestParseSHA256(t *testing.T) {
	want := sha256.Sum256(nil)
	for _, s := range []string{
		"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
		"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
		"sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
	} {
		got, err := ParseSHA256(s)
		if err != nil || got != want {
			t.Errorf("ParseSHA256(%q) = %x, %v", s, got, err)
		}
	}
	if got := FormatSHA256(want); got != "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73" {
		t.Errorf("FormatSHA256 = %s", got)
	}
	if got := FormatSHA256SRI(want); got != "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" {
		t.Errorf("FormatSHA256SRI = %s", got)
	}
	for _, c := range []struct{ in, errPart string }{
		{"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", "algorithm"},
		{"sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs", "want sha256"},
		{"sha257:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", "unknown algorithm"},
		{"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7", "wrong length"},
		{"sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "wrong length"}, // non-SRI base64 needs padding
		{"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF", "SRI"},
		{"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFUA", "has 33 bytes"},
		{"sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "base16"},
		{"sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2ql616i", "33 bytes"}, // 44 chars, no padding
		{"", "algorithm"},
	} {
		_, err := ParseSHA256(c.in)
		if err == nil || !strings.Contains(err.Error(), c.errPart) {
			t.Errorf("ParseSHA256(%q) error = %v, want one mentioning %q", c.in, err, c.errPart)
		}
	}
}

func TestDecodeNixBase64(t *testing.T) {
	for in, want := range map[string]string{
		"aGVsbG8=":   "hello",
		"aGVsbG8":    "hello",
		"aGVs\nbG8=": "hello",
		"aGVsbG8=\n": "hello",
		"":           "",
	} {
		got, err := decodeNixBase64(in)
		if err != nil || string(got) != want {
			t.Errorf("decodeNixBase64(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"aGVsbG8==", "aGVsbG9=", "aGV sbG8=", "aGVsbG8=x", "a", "aGVsbG8=="} {
		if got, err := decodeNixBase64(in); err == nil {
			t.Errorf("decodeNixBase64(%q) = %q, want error", in, got)
		}
	}
}
