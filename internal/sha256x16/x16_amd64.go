//go:build amd64 && gc && !purego

package sha256x16

import "golang.org/x/sys/cpu"

// Available reports whether the CPU (and OS) support the kernel's AVX-512.
func Available() bool {
	return cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL
}

//go:noescape
func sha256X16Avx512(digests *[512]byte, scratch *[512]byte, table *[512]uint64, mask []uint64, inputs [16][]byte)

func blocks(dig, scratch *[512]byte, mask []uint64, in *[Lanes][]byte) {
	sha256X16Avx512(dig, scratch, &table, mask, *in)
}

// table holds SHA-256's round constants, each repeated in all sixteen lanes.
var table = func() (t [512]uint64) {
	for i, k := range roundK {
		for j := range 8 {
			t[8*i+j] = uint64(k)<<32 | uint64(k)
		}
	}
	return t
}()
