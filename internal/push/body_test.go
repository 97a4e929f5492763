package push

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"nixpki/internal/nix/nar"
)

// --compression auto sends a NAR uncompressed only when its start, middle and end
// all look incompressible, and --compression zstd sends such a NAR in raw zstd
// blocks; the body is always exactly the NAR (decompressed when zstd), and
// compressed when the probe finds it compressible.
func TestAutoCompression(t *testing.T) {
	random := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }
	text := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog 0123456789\n", 20000)) // ~1 MiB
	cases := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"random", map[string][]byte{"blob": random(1 << 20)}, "none"},
		{"text", map[string][]byte{"doc.txt": text}, "zstd"},
		{"random then text", map[string][]byte{"a.png": random(300 << 10), "b.txt": text}, "zstd"},
		{"text then random", map[string][]byte{"a.txt": text[:64<<10], "b.bin": random(2 << 20)}, "zstd"},
		{"small random", map[string][]byte{"k": random(20 << 10)}, "none"},
		{"tiny", map[string][]byte{"k": random(100)}, "zstd"},
		{"many random files", map[string][]byte{"1": random(200 << 10), "2": random(300 << 10), "3/4": random(500 << 10)}, "none"},
	}
	for _, mode := range []string{"auto", "zstd"} {
		testProbedCompression(t, mode, cases)
	}
}

func testProbedCompression(t *testing.T, mode string, cases []struct {
	name  string
	files map[string][]byte
	want  string
}) {
	u := &uploader{compression: mode, encoders: newEncoderPool(1, DefaultZstdLevel)}
	w := &worker{}
	for _, c := range cases {
		dir := t.TempDir()
		for name, data := range c.files {
			os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var narBuf bytes.Buffer
		if err := nar.DumpPath(&narBuf, dir); err != nil {
			t.Fatal(err)
		}
		body, size, stream, comp, err := u.narBody(w, pathInfo{Path: dir, NarSize: uint64(narBuf.Len())})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		file, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			t.Fatalf("%s: reading the body: %v", c.name, err)
		}
		if stream != nil {
			stream.wait()
		} else {
			body.(*bodyReader).wait()
		}
		want, flat := c.want, c.want == "none"
		if mode == "zstd" {
			want = "zstd"
		}
		if comp != want {
			t.Errorf("%s, --compression %s: sent %s, want %s", c.name, mode, comp, want)
		}
		if size >= 0 && size != int64(len(file)) {
			t.Errorf("%s: body declared %d bytes, has %d", c.name, size, len(file))
		}
		got := file
		if comp == "zstd" {
			d, _ := zstd.NewReader(nil)
			if got, err = d.DecodeAll(file, nil); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if !flat && len(file) >= narBuf.Len() {
				t.Errorf("%s: zstd did not shrink it (%d of %d bytes)", c.name, len(file), narBuf.Len())
			}
			if flat && len(file) > narBuf.Len()+narBuf.Len()/1000+16 {
				t.Errorf("%s: the raw zstd frame has %d bytes for a NAR of %d", c.name, len(file), narBuf.Len())
			}
		}
		if !bytes.Equal(got, narBuf.Bytes()) {
			t.Errorf("%s, --compression %s: the body is not the NAR (%d bytes, want %d)", c.name, mode, len(got), narBuf.Len())
		}
	}
}
