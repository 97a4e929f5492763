package gate

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
)

// BenchmarkReceiveNAR measures the streaming check of one 1 MiB NAR of random bytes.
func BenchmarkReceiveNAR(b *testing.B) {
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	nar := makeNAR(b, string(blob))
	for _, c := range []string{"none", "zstd"} {
		file := compress(b, nar, c)
		b.Run(c, func(b *testing.B) {
			b.SetBytes(int64(len(nar)))
			for i := 0; i < b.N; i++ {
				if _, err := receiveNAR(bytes.NewReader(file), io.Discard, c, 1<<30, 64<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
