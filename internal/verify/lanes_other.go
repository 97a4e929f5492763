//go:build linux && !amd64

package verify

// avx512 reports whether the CPU has the AVX-512 kernel: only amd64 does.
func avx512() bool { return false }

func newAVX512Lanes() laneHasher { panic("unreachable") }
