package gate

import (
	"bytes"
	"crypto/rand"
	"os"
	"testing"
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
