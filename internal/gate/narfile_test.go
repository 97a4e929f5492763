package gate

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
)

// A NAR file holds exactly the bytes written, however they are cut: aligned whole
// blocks (written straight from the caller's buffer), odd sizes (staged), a partial
// last block, O_DIRECT turned off midway, and no O_DIRECT at all.
func TestNARFile(t *testing.T) {
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	alignedChunk := alignedBufPool.Get().(*alignedBuf).mem // 1 MiB, aligned
	cases := map[string]func(f *narFile) error{
		"odd chunks": func(f *narFile) error { return writeChunks(f, data, 100_000) },
		"aligned then odd": func(f *narFile) error {
			copy(alignedChunk, data[:len(alignedChunk)])
			if _, err := f.Write(alignedChunk); err != nil {
				return err
			}
			return writeChunks(f, data[len(alignedChunk):], 777)
		},
		"O_DIRECT turned off midway": func(f *narFile) error {
			if err := writeChunks(f, data[:3<<20+5], 65536); err != nil {
				return err
			}
			if err := f.stopDirect(); err != nil {
				return err
			}
			return writeChunks(f, data[3<<20+5:], 65536)
		},
		"tiny": func(f *narFile) error { _, err := f.Write(data[:10]); return err },
	}
	for name, write := range cases {
		t.Run(name, func(t *testing.T) {
			for _, direct := range []bool{true, false} {
				f, err := createNARFile(t.TempDir(), "nar")
				if err != nil {
					t.Fatal(err)
				}
				if direct && !f.direct {
					t.Log("O_DIRECT refused here: only the fallback is tested")
				}
				if !direct && f.direct {
					if err := f.stopDirect(); err != nil {
						t.Fatal(err)
					}
				}
				if err := write(f); err != nil {
					t.Fatal(err)
				}
				if err := f.Flush(); err != nil {
					t.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				f.Close()
				got, err := os.ReadFile(f.Name())
				if err != nil {
					t.Fatal(err)
				}
				want := data
				if name == "tiny" {
					want = data[:10]
				}
				if !bytes.Equal(got, want) {
					t.Errorf("direct=%v: the file holds %d bytes, not the %d written", direct, len(got), len(want))
				}
			}
		})
	}
}

func writeChunks(f *narFile, p []byte, size int) error {
	for len(p) > 0 {
		n := min(size, len(p))
		if _, err := f.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// chunkReader returns at most n bytes a read, as a network body does.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// failWriter fails every write after the first ok ones.
type failWriter struct{ ok int }

var errWrite = errors.New("disk on fire")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.ok == 0 {
		return 0, errWrite
	}
	w.ok--
	return len(p), nil
}

// An upload of several spool buffers, read in odd pieces, is stored whole in a NAR
// file and hashed as it is; an error writing it is an error writing it; an error
// reading the body is that error.
func TestReceiveNARFileSpool(t *testing.T) {
	blob := make([]byte, 3<<20+12345)
	rand.Read(blob)
	nar := makeNAR(t, string(blob))
	for _, c := range []string{"none", "zstd", "xz"} {
		file := compress(t, nar, c)
		for _, piece := range []int{777, 64 << 10, 1 << 30} {
			f, err := createNARFile(t.TempDir(), "nar")
			if err != nil {
				t.Fatal(err)
			}
			res, err := receiveNAR(&chunkReader{bytes.NewReader(file), piece}, f, c, 1<<30, 64<<20)
			if err != nil {
				t.Fatalf("%s, pieces of %d: %v", c, piece, err)
			}
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, file) || res.FileHash != sha256.Sum256(file) || res.FileSize != int64(len(file)) ||
				res.NarHash != sha256.Sum256(nar) || res.NarSize != int64(len(nar)) {
				t.Errorf("%s, pieces of %d: the file (%d bytes) or the hashes differ from the upload (%d bytes)", c, piece, len(got), len(file))
			}
		}
		_, err := receiveNAR(bytes.NewReader(file), &failWriter{ok: 1}, c, 1<<30, 64<<20)
		if !errors.Is(err, errWrite) || !strings.Contains(err.Error(), "writing the NAR") {
			t.Errorf("%s: a failing write gives %v", c, err)
		}
		errBody := errors.New("connection reset")
		_, err = receiveNAR(io.MultiReader(bytes.NewReader(file[:len(file)/2]), iotest.ErrReader(errBody)), io.Discard, c, 1<<30, 64<<20)
		if !errors.Is(err, errBody) {
			t.Errorf("%s: a failing body gives %v", c, err)
		}
	}
}

// errWriter fails every write with err.
type errWriter struct{ err error }

func (f errWriter) Write([]byte) (int, error) { return 0, f.err }

// A NAR that cannot be written to the gate's disk is the gate's failure (errWriting,
// answered 5xx), not a malformed upload.
func TestReceiveNARWriteFailure(t *testing.T) {
	nar := makeNAR(t, "contents")
	for _, c := range []string{"none", "zstd", "xz"} {
		_, err := receiveNARFile(bytes.NewReader(compress(t, nar, c)), errWriter{syscall.ENOSPC}, c, 1<<30, 64<<20, true)
		if !errors.As(err, new(errWriting)) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%s: %v, want a write error wrapping ENOSPC", c, err)
		}
	}
}
