package nixhash

import (
	"crypto/sha256"
	"strings"
	"testing"
)

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
		got, err := DecodeBase64(in)
		if err != nil || string(got) != want {
			t.Errorf("DecodeBase64(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"aGVsbG8==", "aGVsbG9=", "aGV sbG8=", "aGVsbG8=x", "a", "aGVsbG8=="} {
		if got, err := DecodeBase64(in); err == nil {
			t.Errorf("DecodeBase64(%q) = %q, want error", in, got)
		}
	}
}
