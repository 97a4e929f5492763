//go:build !amd64

package sha256x16

var forceGeneric bool

// Fast reports whether Blocks runs a multi-lane kernel: not on this
// architecture, where crypto/sha256 is the faster choice.
func Fast() bool { return false }

func blocksAVX512(state *[8][16]uint32, ptrs *[16]*byte, n int, mask uint16) {
	panic("sha256x16: no AVX-512 kernel on this architecture")
}
