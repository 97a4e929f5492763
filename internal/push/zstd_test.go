package push

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"nixpki/internal/testutil"
)

// The push's zstd encoders write frames that libzstd's decoder (the zstd tool, as Nix
// decodes) and the gate's decoder read back exactly, with a window of at most 2 MiB
// and no checksum, as Nix writes them; an encoder is reused frame after frame, also
// after a frame whose destination failed. So at every --compression-level, and a
// higher level compresses text better.
func TestZstdEncoder(t *testing.T) {
	zstdCmd := testutil.NeedTool(t, "zstd")
	random := make([]byte, 3<<20)
	rand.Read(random)
	text := testutil.GoSource(t, 3<<20)
	inputs := map[string][]byte{
		"empty":           nil,
		"one byte":        {'x'},
		"text":            text,
		"random":          random,
		"text and random": append(append([]byte{}, text[:1<<20]...), random[:1<<20]...),
	}
	gate, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	textSize := map[int]int{}
	for _, level := range []int{1, DefaultZstdLevel, 3, 7, 19} {
		textSize[level] = checkEncoderLevel(t, zstdCmd, level, inputs, gate)
	}
	// The level is used: the Go encoder has four modes (levels 1–2, 3–5, 6–9, 10–22),
	// and each compresses Go source smaller than the one before.
	if !(textSize[1] >= textSize[DefaultZstdLevel] && textSize[DefaultZstdLevel] > textSize[3] && textSize[3] > textSize[7] && textSize[7] > textSize[19]) {
		t.Errorf("text compressed to %v bytes by level: want each mode smaller than the one before", textSize)
	}
}

// checkEncoderLevel checks an encoder pool of the given level on inputs (see
// TestZstdEncoder) and returns the size of the compressed text.
func checkEncoderLevel(t *testing.T, zstdCmd string, level int, inputs map[string][]byte, gate *zstd.Decoder) (textSize int) {
	t.Helper()
	text := inputs["text"]
	pool := newEncoderPool(1, level)
	for round := range 2 {
		for name, in := range inputs {
			enc, err := pool.get(nil)
			if err != nil {
				t.Fatal(err)
			}
			var frame bytes.Buffer
			enc.ResetContentSize(&frame, int64(len(in)))
			for off := 0; off < len(in); off += 64 << 10 {
				if _, err := enc.Write(in[off:min(off+64<<10, len(in))]); err != nil {
					t.Fatalf("level %d, %s: write: %v", level, name, err)
				}
			}
			if err := enc.Close(); err != nil {
				t.Fatalf("level %d, %s: close: %v", level, name, err)
			}
			pool.put(enc)

			checkFrameHeader(t, name, frame.Bytes())
			if err := gate.Reset(bytes.NewReader(frame.Bytes())); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(gate)
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("level %d, round %d, %s: the gate's decoder read %d bytes of %d back (err %v)", level, round, name, len(got), len(in), err)
			}
			cmd := exec.Command(zstdCmd, "-d", "-c")
			cmd.Stdin = bytes.NewReader(frame.Bytes())
			out, err := cmd.Output()
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("level %d, round %d, %s: zstd -d read %d bytes of %d back (err %v)", level, round, name, len(out), len(in), err)
			}
			if name == "text" {
				if frame.Len() > len(in)/3 {
					t.Errorf("level %d, text: %d bytes compressed to %d: not compressed", level, len(in), frame.Len())
				}
				textSize = frame.Len()
			}
		}
		// A frame whose destination fails: the error comes back, the encoder stays usable.
		enc, _ := pool.get(nil)
		enc.ResetContentSize(failingWriter{}, int64(len(text)))
		_, werr := enc.Write(text)
		if cerr := enc.Close(); werr == nil && cerr == nil {
			t.Fatal("a frame written to a failing destination reported no error")
		}
		pool.put(enc)
	}
	return textSize
}

// checkFrameHeader checks that frame is one zstd frame without a checksum whose
// window is at most 2 MiB (RFC 8878, 3.1.1.1).
func checkFrameHeader(t *testing.T, name string, frame []byte) {
	t.Helper()
	if len(frame) < 6 || !bytes.Equal(frame[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Fatalf("%s: not a zstd frame: % x", name, frame[:min(len(frame), 6)])
	}
	fhd := frame[4]
	if fhd&0x04 != 0 {
		t.Errorf("%s: the frame has a checksum (Nix writes none; the gate checks the NarHash)", name)
	}
	if fhd&0x20 == 0 { // not single-segment: a window descriptor follows
		wd := frame[5]
		base := uint64(1) << (10 + wd>>3)
		if window := base + base/8*uint64(wd&7); window > 2<<20 {
			t.Errorf("%s: window %d bytes, want at most 2 MiB", name, window)
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("destination failed") }

// BenchmarkZstdLevel compresses pieces of the Go installation's files, 1 MiB each
// (a store path's typical NAR in the gate benchmark's go closure), as the push does
// at each level: MB/s of input and the compression ratio.
//
//	go test -run x -bench ZstdLevel ./cmd/nixpki
func BenchmarkZstdLevel(b *testing.B) {
	data := goInstallationBytes(b, 64<<20)
	const piece = 1 << 20
	for _, level := range []int{1, DefaultZstdLevel, 3, 7} {
		b.Run(fmt.Sprintf("level-%d", level), func(b *testing.B) {
			pool := newEncoderPool(1, level)
			enc, err := pool.get(nil)
			if err != nil {
				b.Fatal(err)
			}
			var out countingWriter
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				out = 0
				for off := 0; off < len(data); off += piece {
					p := data[off:min(off+piece, len(data))]
					enc.ResetContentSize(&out, int64(len(p)))
					for w := 0; w < len(p); w += 64 << 10 { // as the NAR dump writes
						if _, err := enc.Write(p[w:min(w+64<<10, len(p))]); err != nil {
							b.Fatal(err)
						}
					}
					if err := enc.Close(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(len(data))/float64(out), "ratio")
		})
	}
}

// goInstallationBytes returns n bytes of the Go installation's files, in path
// order: sources, binaries and test data, compressible like store paths.
func goInstallationBytes(b *testing.B, n int) []byte {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Fatal("go env GOROOT:", err)
	}
	return testutil.FilesBytes(b, strings.TrimSpace(string(out)), "", n)
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
