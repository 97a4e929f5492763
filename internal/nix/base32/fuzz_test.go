package base32_test

import (
	"bytes"
	"testing"

	"nixpki/internal/nix/base32"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/testutil"
)

func base32Seeds() []string {
	return []string{"", "00", "7z", "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", "143xibwh31h9bvxzalr0sjvbbvpa6ffs", "zz", "e0", "0"}
}

func FuzzDecodeBase32(f *testing.F) {
	for _, s := range base32Seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Any bytes encode and decode back.
		raw := []byte(s)
		if got, err := base32.Decode(base32.Encode(raw)); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("round trip of %x: %x, %v", raw, got, err)
		}
		// A string that decodes is the canonical encoding.
		b, err := base32.Decode(s)
		if err != nil {
			return
		}
		if enc := base32.Encode(b); enc != s {
			t.Fatalf("Decode(%q) = %x, which encodes as %q", s, b, enc)
		}
		// And as a hash, if it has a hash's length.
		if len(b) == 32 {
			h, err := nixhash.ParseSHA256("sha256:" + s)
			if err != nil || !bytes.Equal(h[:], b) {
				t.Fatalf("ParseSHA256(sha256:%s) = %x, %v", s, h, err)
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz from the seeds above
// (NIXPKI_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	testutil.WriteFuzzCorpus(t, "FuzzDecodeBase32", "string", base32Seeds())
}
