package verify

// Fuzz targets for the parser this package adds (trusted-key text)
// and for the NAR hasher, which must agree with nixkey's on every tree. Seeds are
// added with f.Add and also kept under testdata/fuzz/<Target>/.

import (
	"strings"
	"testing"

	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/signing"
	"nixpki/internal/testutil"
)

func FuzzParseTrustedKeys(f *testing.F) {
	for _, s := range []string{
		"cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=",
		"a-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=\n b-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY\n",
		"", " ", "no-colon", ":AAAA", "k:AAAA", "k:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		keys, err := ParseTrustedKeys(text)
		if err != nil {
			return
		}
		if len(keys) != len(strings.Fields(text)) {
			t.Fatalf("%q gave %d keys", text, len(keys))
		}
		var p Policy
		for _, k := range keys {
			back, err := signing.ParsePublicKey([]byte(k.String()))
			if err != nil || !back.Equal(k) {
				t.Fatalf("key %q does not round-trip: %v", k, err)
			}
			p.AddTrustedKey(k)
		}
	})
}

// FuzzHashPath builds a file tree from the input (testutil.BuildTree) and checks
// that hashPath with multi-buffer SHA-256 and nar.HashPath (cross-checked with
// real Nix in its own tests) agree.
func FuzzHashPath(f *testing.F) {
	testutil.FuzzTrees(f, func(t *testing.T, root string) {
		want, wantSize, wantErr := nar.HashPath(root)
		for name, hash := range hashPaths() {
			got, gotSize, gotErr := hash(root)
			if (wantErr == nil) != (gotErr == nil) || want != got || wantSize != gotSize {
				t.Fatalf("nixkey: %x %d %v; verify (%s): %x %d %v", want, wantSize, wantErr, name, got, gotSize, gotErr)
			}
		}
	})
}

// hashPaths are the ways hashPath can hash a NAR here.
func hashPaths() map[string]func(string) ([32]byte, uint64, error) {
	m := map[string]func(string) ([32]byte, uint64, error){}
	if multiBufferOS { // the portable kernel where the CPU lacks AVX-512
		m["multi-buffer"] = mbHashPath
	}
	return m
}
