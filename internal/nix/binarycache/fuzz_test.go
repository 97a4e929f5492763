package binarycache

// Fuzz targets for what this package parses: NAR file names and nix-cache-info
// files. Seeds are added with f.Add and also kept under testdata/fuzz/<Target>/.

import (
	"bytes"
	"strings"
	"testing"

	"nixpki/internal/nix/storepath"
	"nixpki/internal/testutil"
)

func FuzzParseNARURL(f *testing.F) {
	f.Add("nar/" + strings.Repeat("0", 52) + ".nar.zst")
	f.Add("nar/" + strings.Repeat("z", 52) + ".nar")
	f.Add("nar/../" + strings.Repeat("0", 49) + ".nar")
	f.Add("nar/" + strings.Repeat("0", 52) + ".nar.xz/../x")
	f.Fuzz(func(t *testing.T, u string) {
		h, c, err := ParseNARURL(u)
		if err != nil {
			return
		}
		if got := NARURL(h, c); got != u {
			t.Fatalf("ParseNARURL(%q) round-trips to %q", u, got)
		}
		if strings.Contains(u[4:], "/") || strings.Contains(u, "..") || strings.ContainsRune(u, 0) {
			t.Fatalf("accepted an unsafe name %q", u)
		}
	})
}

// cacheInfoSeeds are the seeds of FuzzParseCacheInfo kept under testdata.
func cacheInfoSeeds() []string {
	return []string{
		"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n",
		"StoreDir: /gnu/store\r\n",
		"StoreDir: relative\n",
		"StoreDir: /nix/store/\n",
		"StoreDir:/nix/store\nStoreDir: /a\nStoreDir: /b\n",
		"", "\n\n", "no colon",
	}
}

func FuzzParseCacheInfo(f *testing.F) {
	for _, s := range append(cacheInfoSeeds(), strings.Repeat("x", MaxCacheInfoSize+1)) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ParseCacheInfo(bytes.NewReader(data))
		if len(data) > MaxCacheInfoSize && err == nil {
			t.Fatalf("accepted %d bytes", len(data))
		}
		if err != nil {
			return
		}
		if err := storepath.ValidateStoreDir(info.StoreDir); err != nil {
			t.Fatalf("StoreDir %q: %v", info.StoreDir, err)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzParseCacheInfo from the
// seeds above (NIXPKI_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	testutil.WriteFuzzCorpus(t, "FuzzParseCacheInfo", "[]byte", cacheInfoSeeds())
}
