package push

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

// A frame of raw blocks is read back, byte for byte, by the Go decoder with a small
// window limit and by the zstd command (libzstd, as Nix decompresses), whatever the
// size and however the writes are cut.
func TestRawZstdFrame(t *testing.T) {
	zstdCmd := testutil.NeedTool(t, "zstd")
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxWindow(rawZstdBlock), zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, size := range []int{0, 1, 255, 256, 65791, 65792, rawZstdBlock - 1, rawZstdBlock, rawZstdBlock + 1, 3*rawZstdBlock + 17} {
		data := make([]byte, size)
		rand.Read(data)
		for _, cut := range []int{1, 7, 64 << 10, size + 1} {
			if cut == 1 && size > 70000 {
				continue
			}
			var frame bytes.Buffer
			zw := newRawZstdWriter(&frame, uint64(size))
			for p := data; len(p) > 0; {
				k := min(cut, len(p))
				if n, err := zw.Write(p[:k]); err != nil || n != k {
					t.Fatalf("size %d, writes of %d: wrote %d: %v", size, cut, n, err)
				}
				p = p[k:]
			}
			if err := zw.Close(); err != nil {
				t.Fatalf("size %d: close: %v", size, err)
			}
			blocks := max(1, (size+rawZstdBlock-1)/rawZstdBlock)
			if want := 4 + 2 + 4 + 3*blocks + size; frame.Len() != want {
				t.Errorf("size %d, writes of %d: frame of %d bytes, want %d", size, cut, frame.Len(), want)
			}
			var h zstd.Header
			if err := h.Decode(frame.Bytes()); err != nil || !h.HasFCS || h.FrameContentSize != uint64(size) || h.WindowSize != rawZstdBlock {
				t.Errorf("size %d: header %+v: %v", size, h, err)
			}
			got, err := dec.DecodeAll(frame.Bytes(), nil)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("size %d, writes of %d: Go decoder: %d bytes back: %v", size, cut, len(got), err)
			}
			if cut != 64<<10 {
				continue
			}
			cmd := exec.Command(zstdCmd, "-d", "-c")
			cmd.Stdin = bytes.NewReader(frame.Bytes())
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			if err := cmd.Run(); err != nil || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("size %d: zstd -d: %d bytes back: %v %s", size, out.Len(), err, errOut.String())
			}
		}
	}
}

// shortWriter takes at most 5 bytes a write and reports no error, against io.Writer's
// contract.
type shortWriter struct{ bytes.Buffer }

func (w *shortWriter) Write(p []byte) (int, error) { return w.Buffer.Write(p[:min(len(p), 5)]) }

// A frame's writer refuses more bytes than it announced, and fewer; it reports a
// short write instead of writing a corrupt frame; closing an empty frame twice
// writes it once.
func TestRawZstdFrameSize(t *testing.T) {
	var frame bytes.Buffer
	zw := newRawZstdWriter(&frame, 10)
	if _, err := zw.Write(make([]byte, 11)); err == nil || !strings.Contains(err.Error(), "more than the 10 announced") {
		t.Fatalf("11 bytes into a frame of 10: %v", err)
	}
	zw.Write(make([]byte, 9))
	if err := zw.Close(); err == nil || !strings.Contains(err.Error(), "1 of the announced bytes not written") {
		t.Fatalf("9 bytes into a frame of 10: %v", err)
	}
	if _, err := newRawZstdWriter(&shortWriter{}, 10).Write(make([]byte, 10)); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("a writer taking 5 bytes at a time: %v", err)
	}
	frame.Reset()
	zw = newRawZstdWriter(&frame, 0)
	zw.Close()
	zw.Close()
	if frame.Len() != 4+2+4+3 {
		t.Fatalf("an empty frame closed twice: %d bytes", frame.Len())
	}
}
