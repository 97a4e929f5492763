package pathinfo

import (
	"crypto/sha256"
	"slices"
	"strings"
	"testing"

	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/storepath"
)

// A narinfo turned into an Info and back keeps what signatures and content
// addresses cover, references as full store paths in the Info and base names in
// the narinfo; the fingerprint is the narinfo's.
func TestNarInfoRoundTrip(t *testing.T) {
	const dir = storepath.DefaultStoreDir
	self := "qc2w6f3wzpgjk5k38xzc3irv3mgdghl9-dep"
	other := "iwi0bq47c0m445h3bhficd60pszw92f9-lib"
	ni := &narinfo.NarInfo{
		StorePath: dir + "/" + self, URL: "nar/x.nar.zst", Compression: "zstd",
		NarHash: sha256.Sum256([]byte("nar")), NarSize: 120, References: []string{other, self},
	}
	pi := FromNarInfo(dir, ni)
	if !slices.Equal(pi.References, []string{dir + "/" + other, dir + "/" + self}) || pi.URL != ni.URL || pi.Compression != "zstd" {
		t.Fatalf("FromNarInfo: %+v", pi)
	}
	back := pi.NarInfo()
	if back.StorePath != ni.StorePath || back.NarHash != ni.NarHash || back.NarSize != ni.NarSize || !slices.Equal(back.References, ni.References) {
		t.Fatalf("NarInfo: %+v", back)
	}
	want, err := ni.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pi.Fingerprint(); err != nil || got != want || !strings.HasPrefix(got, "1;"+ni.StorePath+";sha256:") {
		t.Fatalf("Fingerprint = %q, %v; want %q", got, err, want)
	}
	pi.NarSize = 0 // an old database's record: nothing to sign
	if _, err := pi.Fingerprint(); err == nil {
		t.Fatal("a record without NarSize has a fingerprint")
	}
}
