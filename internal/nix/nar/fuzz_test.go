package nar

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"nixpki/internal/testutil"
)

// Seeds for the fuzz targets. They are added with f.Add and also stored
// under testdata/fuzz/<Target>/ (regenerate with NIXPKI_WRITE_FUZZ_CORPUS=1
// go test -run TestWriteFuzzCorpus).

func narSeeds() [][]byte {
	seeds := [][]byte{sampleNAR(), nar(regular("x")), nar(symlink("/nix/store")), nar(directory())}
	for _, c := range badNARs() {
		seeds = append(seeds, c.data)
	}
	return seeds
}

func FuzzNARReader(f *testing.F) {
	for _, s := range narSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, out, err := rewriteNAR(data)
		if err != nil {
			if strings.Contains(err.Error(), "Writer refused") {
				t.Fatal(err)
			}
			return
		}
		// A NAR the reader accepts is canonical: rewriting it gives
		// the same bytes, and reading it again the same entries.
		if !bytes.Equal(out, data) {
			t.Fatalf("round trip changed the archive:\n%x\n%x", data, out)
		}
		entries2, _, err := rewriteNAR(out)
		if err != nil || !reflect.DeepEqual(entries, entries2) {
			t.Fatalf("re-reading: %v\n%v\n%v", err, entries, entries2)
		}
		if _, size, err := Check(bytes.NewReader(data)); err != nil || size != uint64(len(data)) {
			t.Fatalf("Check = %d, %v", size, err)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz from the seeds above
// (NIXPKI_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	var seeds []string
	for _, s := range narSeeds() {
		seeds = append(seeds, string(s))
	}
	testutil.WriteFuzzCorpus(t, "FuzzNARReader", "[]byte", seeds)
}
