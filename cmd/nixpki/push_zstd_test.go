package main

import (
	"bytes"
	"crypto/rand"
	"errors"
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
// after a frame whose destination failed.
func TestZstdEncoder(t *testing.T) {
	zstdCmd := testutil.NeedTool(t, "zstd")
	random := make([]byte, 3<<20)
	rand.Read(random)
	text := []byte(strings.Repeat("store paths compress like this line, 0123456789\n", 70000)) // ~3.4 MiB
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
	pool := newEncoderPool(1)
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
					t.Fatalf("%s: write: %v", name, err)
				}
			}
			if err := enc.Close(); err != nil {
				t.Fatalf("%s: close: %v", name, err)
			}
			pool.put(enc)

			checkFrameHeader(t, name, frame.Bytes())
			if err := gate.Reset(bytes.NewReader(frame.Bytes())); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(gate)
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("round %d, %s: the gate's decoder read %d bytes of %d back (err %v)", round, name, len(got), len(in), err)
			}
			cmd := exec.Command(zstdCmd, "-d", "-c")
			cmd.Stdin = bytes.NewReader(frame.Bytes())
			out, err := cmd.Output()
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("round %d, %s: zstd -d read %d bytes of %d back (err %v)", round, name, len(out), len(in), err)
			}
			if name == "text" && frame.Len() > len(in)/10 {
				t.Errorf("text: %d bytes compressed to %d: not compressed", len(in), frame.Len())
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
