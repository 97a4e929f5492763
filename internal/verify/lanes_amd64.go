//go:build linux

package verify

import (
	sha256simd "github.com/minio/sha256-simd"
	"golang.org/x/sys/cpu"
)

// avx512 reports whether the CPU (and OS) support sha256-simd's AVX-512 kernel.
func avx512() bool {
	return cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL
}

// avx512Lanes drives a github.com/minio/sha256-simd Avx512Server, which hashes
// sixteen streams in the lanes of AVX-512 registers. The server puts a stream
// in lane uid%16: each of our lanes l uses the ids l, l+16, l+32, … one per
// stream. Its goroutine hashes a round once all sixteen lanes hold a block,
// when a lane receives a second block (so at the latest when the next round's
// first write arrives) or after a short idle wait; sum waits for its stream's
// digest.
type avx512Lanes struct {
	srv *sha256simd.Avx512Server
	uid [lanes]uint64
}

func newAVX512Lanes() *avx512Lanes {
	a := &avx512Lanes{srv: sha256simd.NewAvx512Server()}
	for l := range a.uid {
		a.uid[l] = uint64(l)
	}
	return a
}

func (a *avx512Lanes) start(l int) { a.uid[l] += lanes }

func (a *avx512Lanes) write(l int, p []byte) {
	a.srv.Write(a.uid[l], p)
}

func (a *avx512Lanes) sum(l int, p []byte, n uint64) [32]byte {
	return a.srv.Sum(a.uid[l], pad(p, n))
}
