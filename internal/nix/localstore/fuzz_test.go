package localstore

// Fuzz target for the database rows this package parses. Seeds are added with
// f.Add and also kept under testdata/fuzz/FuzzParseDBRow/.

import (
	"strings"
	"testing"

	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
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
		if fp, err := pi.Fingerprint(); (err == nil) != (pi.NarSize > 0) || (err == nil && !strings.HasPrefix(fp, "1;"+path+";sha256:")) {
			t.Fatalf("fingerprint %q, %v for NarSize %d", fp, err, pi.NarSize)
		}
		_ = pi.NarInfo().CheckContentAddress()
	})
}
