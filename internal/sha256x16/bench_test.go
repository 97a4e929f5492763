package sha256x16

import (
	"crypto/sha256"
	"testing"
)

// The two benchmarks hash the same bytes, 16 × 32 KiB, so that their MB/s
// compare the kernel with one crypto/sha256 stream side by side:
//
//	go test -run '^$' -bench . -count 5 ./internal/sha256x16
const benchChunk = 32 << 10

func BenchmarkSixteenLanes(b *testing.B) {
	var p [Lanes][]byte
	for l := range p {
		p[l] = make([]byte, benchChunk)
	}
	var s State
	b.SetBytes(Lanes * benchChunk)
	for b.Loop() {
		s.Blocks(&p, benchChunk/BlockSize, 0xffff)
	}
}

func BenchmarkCryptoSHA256(b *testing.B) {
	buf := make([]byte, Lanes*benchChunk)
	h := sha256.New()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		h.Write(buf)
	}
}
