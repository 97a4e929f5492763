package nixhash_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/testutil"
)

func hashSeeds() []string {
	return []string{
		"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
		"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
		"fixed:r:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs",
		"text:sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i",
		"sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2ql616i", // 44 chars, decodes to 33 bytes
	}
}

func FuzzParseSHA256(f *testing.F) {
	for _, s := range hashSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if h, err := nixhash.ParseSHA256(s); err == nil {
			// The input is h in one of the notations, exactly.
			sri := nixhash.FormatSHA256SRI(h)
			if s != nixhash.FormatSHA256(h) && !strings.EqualFold(s, "sha256:"+hex.EncodeToString(h[:])) &&
				s != "sha256:"+sri[len("sha256-"):] && s != sri && s != strings.TrimRight(sri, "=") {
				t.Fatalf("ParseSHA256(%q) = %x, which is written differently", s, h)
			}
			if h2, err := nixhash.ParseSHA256(nixhash.FormatSHA256(h)); err != nil || h2 != h {
				t.Fatalf("nix32 round trip of %q", s)
			}
			if h2, err := nixhash.ParseSHA256(nixhash.FormatSHA256SRI(h)); err != nil || h2 != h {
				t.Fatalf("SRI round trip of %q", s)
			}
		}
		if ca, err := contentaddress.Parse(s); err == nil {
			ca2, err := contentaddress.Parse(ca.String())
			if err != nil || ca2.String() != ca.String() {
				t.Fatalf("content address round trip of %q: %v", s, err)
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz from the seeds above
// (NIXPKI_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	testutil.WriteFuzzCorpus(t, "FuzzParseSHA256", "string", hashSeeds())
}
