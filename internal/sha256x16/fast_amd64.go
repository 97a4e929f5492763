package sha256x16

import "golang.org/x/sys/cpu"

//go:generate sh -c "cd _asm && go run . -out ../blocks_amd64.s -stubs ../stub_amd64.go -pkg sha256x16"

// hasAVX512 is whether the CPU and the OS support the kernel's instructions:
// AVX-512F (rotates, ternary logic, shuffles, masks) and AVX-512BW (VPSHUFB).
var hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW

// forceGeneric makes Fast report false, for tests of the portable path.
var forceGeneric bool

// Fast reports whether Blocks runs the AVX-512 kernel, which hashes sixteen
// lanes in about the time crypto/sha256 (SHA-NI) hashes five or six: with
// fewer busy lanes, crypto/sha256 is the faster choice.
func Fast() bool { return hasAVX512 && !forceGeneric }
