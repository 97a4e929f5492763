package nar

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// DumpPathFrom(off) writes exactly the bytes of DumpPath from off on, at every kind
// of offset: in a header, inside a small file, inside a large file (skipped by a
// seek), at a file's end, and at the NAR's end.
func TestDumpPathFrom(t *testing.T) {
	root := t.TempDir()
	files := map[string][]byte{"a-small": []byte("small"), "b-big": make([]byte, directMin+12345), "c/d-exact": make([]byte, directMin), "c/e-small": []byte("x")}
	for i := range 40 {
		files[fmt.Sprintf("e/f%02d", i)] = make([]byte, 1000+i*37)
	}
	for name, data := range files {
		rand.Read(data)
		os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755)
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var whole bytes.Buffer
	if err := DumpPath(&whole, root); err != nil {
		t.Fatal(err)
	}
	n := int64(whole.Len())
	big := int64(bytes.Index(whole.Bytes(), files["b-big"]))
	offs := []int64{1, 8, 100, big - 1, big, big + 1, big + 70000, big + int64(len(files["b-big"])), n - directMin - 200, n - 1, n}
	for off := n - 60000; off < n; off += 997 { // among the small files
		offs = append(offs, off)
	}
	for _, off := range offs {
		for _, w := range []struct {
			name string
			dst  func(*bytes.Buffer) interface{ Write([]byte) (int, error) }
		}{
			{"ReaderFrom", func(b *bytes.Buffer) interface{ Write([]byte) (int, error) } { return b }},
			{"Writer", func(b *bytes.Buffer) interface{ Write([]byte) (int, error) } { return writerOnly{b} }},
		} {
			var got bytes.Buffer
			if err := DumpPathFrom(w.dst(&got), root, off); err != nil {
				t.Fatalf("offset %d (%s): %v", off, w.name, err)
			}
			if !bytes.Equal(got.Bytes(), whole.Bytes()[off:]) {
				t.Fatalf("offset %d (%s): %d bytes differ from the NAR's last %d", off, w.name, got.Len(), n-off)
			}
		}
	}
}
