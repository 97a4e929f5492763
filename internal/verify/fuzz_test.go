package verify

// Fuzz targets for the parsers this package adds (database rows, trusted-key text)
// and for the NAR hasher, which must agree with nixkey's on every tree. Seeds are
// added with f.Add and also kept under testdata/fuzz/<Target>/.

import (
	"strings"
	"testing"

	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/testutil"
)

const (
	seedPath = "/nix/store/qc2w6f3wzpgjk5k38xzc3irv3mgdghl9-dep"
	seedRef  = "/nix/store/iwi0bq47c0m445h3bhficd60pszw92f9-dep.drv"
	seedSig  = "test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVs96o0sRxQGMKJtwqhLEL++sk2CbUbpDA=="
)

func FuzzParseDBRow(f *testing.F) {
	f.Add(seedPath, "sha256:e85dceb2e79a15c8f989c633a47e71dbac2f262213fd524a2f58584ee68c37d6", int64(120), int64(1), seedSig+" "+seedSig, "", seedRef)
	f.Add(seedPath, "sha256:1mipikk4wn2q5x555z8k48k2zb6vf5za8cy6i7wwh5cswyrcwpg8", int64(0), int64(0), "x:AAAA :nameless test1:", "fixed:r:sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i", "")
	f.Add(seedRef, "sha256-0QRDK8y6h9qwqKIRmawBEVtyNCjIrlW0wlyRNKowxbQ=", int64(-1), int64(0), "", "text:sha256:0q1mydgxh5sps5dg5b37wnc8iy430qh8v484l9a91aw871jlrpdn", seedPath+" ../x")
	f.Add("/nix/store/x", "md5:00", int64(1), int64(2), "\t\n", "fixed:", "/tmp/x")
	f.Fuzz(func(t *testing.T, path, hash string, narSize, ultimate int64, sigs, ca, refs string) {
		pi, err := parseDBRow(storepath.DefaultStoreDir, dbRow{Path: path, Hash: hash, NarSize: narSize, Ultimate: ultimate, Sigs: sigs, CA: ca, Refs: strings.Fields(refs)})
		if err != nil {
			return
		}
		if pi.Path != path || pi.Ultimate != (ultimate != 0) || len(pi.Sigs)+len(pi.BadSigs) > len(strings.Fields(sigs)) {
			t.Fatalf("row %q %q %q → %+v", path, sigs, refs, pi)
		}
		for _, s := range pi.Sigs {
			back, err := signing.ParseSignature(s.String())
			if err != nil || back.String() != s.String() {
				t.Fatalf("signature %q does not round-trip: %v", s, err)
			}
		}
		if pi.CA != "" {
			if _, err := contentaddress.Parse(pi.CA); err != nil {
				t.Fatalf("canonical CA %q does not parse: %v", pi.CA, err)
			}
		}
		if fp, err := pi.fingerprint(); (err == nil) != (pi.NarSize > 0) || (err == nil && !strings.HasPrefix(fp, "1;"+path+";sha256:")) {
			t.Fatalf("fingerprint %q, %v for NarSize %d", fp, err, pi.NarSize)
		}
		_ = pi.narInfo().CheckContentAddress()
	})
}

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
