//go:build !amd64 || !gc || purego

package sha256x16

// Available reports whether the kernel can run: never on this platform.
func Available() bool { return false }

func blocks(dig, scratch *[512]byte, mask []uint64, in *[Lanes][]byte) {
	panic("sha256x16: not available")
}
