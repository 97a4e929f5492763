// Command asm generates blocks_amd64.s and stub_amd64.go, the AVX-512 kernel of
// package sha256x16: SHA-256 (FIPS 180-4) of sixteen independent messages, one
// per 32-bit lane of the ZMM registers.
//
//	cd internal/sha256x16/_asm && go run . -out ../blocks_amd64.s -stubs ../stub_amd64.go -pkg sha256x16
//
// The kernel takes the sixteen messages' next 64-byte blocks through one pointer
// per lane, loads each lane's block as a row, and transposes the 16×16 words so
// that word j of every lane sits in one register. The rounds then run on all
// lanes at once: rotations are VPRORD, Ch, Maj and the three-way XORs of Σ and σ
// one VPTERNLOGD each. The sixteen schedule words stay in registers (a ring), so
// that a block touches memory only to load its rows and the chaining values.
package main

import (
	"encoding/binary"
	"math/big"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// roundConstants are SHA-256's K (FIPS 180-4, section 4.2.2): the first 32 bits
// of the fractional parts of the cube roots of the first 64 primes, computed
// exactly: the integer cube root of p·2^96 is cbrt(p)·2^32, rounded down.
func roundConstants() (k [64]uint32) {
	i := 0
	for p := int64(2); i < 64; p++ {
		if !big.NewInt(p).ProbablyPrime(0) {
			continue
		}
		x := new(big.Int).Lsh(big.NewInt(p), 96)
		lo, hi := big.NewInt(0), new(big.Int).Lsh(big.NewInt(1), 40)
		for new(big.Int).Sub(hi, lo).Cmp(big.NewInt(1)) > 0 { // largest r with r³ ≤ x
			mid := new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1)
			if new(big.Int).Exp(mid, big.NewInt(3), nil).Cmp(x) <= 0 {
				lo = mid
			} else {
				hi = mid
			}
		}
		k[i] = uint32(lo.Uint64())
		i++
	}
	return k
}

// VPTERNLOGD's truth-table operands, as Go's operand order names them:
// VPTERNLOGD(imm, x, y, dst) computes dst = f(dst, y, x).
const (
	tX = uint8(0xaa)
	tY = uint8(0xcc)
	tD = uint8(0xf0)

	xor3 = tD ^ tY ^ tX
	ch   = (tD & tY) | (^tD & tX)            // dst = e, y = f, x = g
	maj  = (tD & tY) | (tD & tX) | (tY & tX) // dst = a, y = b, x = c
)

func main() {
	consts := GLOBL("k256", RODATA|NOPTR)
	for i, c := range roundConstants() {
		DATA(4*i, U32(c))
	}
	// VPSHUFB control that reverses the bytes of each 32-bit word: message words
	// are big-endian.
	bswap := GLOBL("bswap32", RODATA|NOPTR)
	for i := 0; i < 64; i += 4 {
		j := i % 16 // VPSHUFB indexes within each 128-bit chunk
		DATA(i, U32(binary.LittleEndian.Uint32([]byte{byte(j + 3), byte(j + 2), byte(j + 1), byte(j)})))
	}

	TEXT("blocksAVX512", NOSPLIT, "func(state *[8][16]uint32, ptrs *[16]*byte, n int, mask uint16)")
	Doc(
		"blocksAVX512 hashes n 64-byte blocks of each lane's message, read from",
		"ptrs[l], into the chaining values state[0..7][l], for the lanes set in mask.",
		"Every pointer must address n*64 readable bytes, masked-out lanes included;",
		"their chaining values are left as they were.",
	)
	state := Mem{Base: Load(Param("state"), GP64())}
	ptrs := Mem{Base: Load(Param("ptrs"), GP64())}
	n := Load(Param("n"), GP64())
	km := K()
	KMOVW(Load(Param("mask"), GP32()), km)

	swap := ZMM()
	VMOVDQU32(bswap, swap)
	off := GP64()
	XORQ(off, off)

	Label("loop")
	TESTQ(n, n)
	JZ(LabelRef("done"))

	Comment("Load the sixteen lanes' blocks as rows and put word j of every lane in w[j].")
	w := loadTransposed(ptrs, off, swap)

	Comment("Working variables from the chaining values.")
	var v [8]VecVirtual
	for i := range v {
		v[i] = ZMM()
		VMOVDQU32(state.Offset(64*i), v[i])
	}
	a, b, c, d, e, f, g, h := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]

	for t := 0; t < 64; t++ {
		if t >= 16 {
			schedule(w, t)
		}
		Commentf("Round %d.", t)
		VPADDD(w[t%16], h, h)
		VPADDD_BCST(consts.Offset(4*t), h, h)
		// T1 = h + Σ1(e) + Ch(e, f, g) + K[t] + W[t]
		chv := ZMM()
		VMOVDQU32(e, chv)
		VPTERNLOGD(U8(ch), g, f, chv)
		VPADDD(chv, h, h)
		VPADDD(sigma(e, 6, 11, 25, false), h, h)
		// e' = d + T1; a' = T1 + Σ0(a) + Maj(a, b, c)
		VPADDD(h, d, d)
		mj := ZMM()
		VMOVDQU32(a, mj)
		VPTERNLOGD(U8(maj), c, b, mj)
		VPADDD(mj, h, h)
		VPADDD(sigma(a, 2, 13, 22, false), h, h)
		a, b, c, d, e, f, g, h = h, a, b, c, d, e, f, g
	}

	Comment("Add the working variables to the chaining values of the masked lanes.")
	for i, x := range []VecVirtual{a, b, c, d, e, f, g, h} {
		s := ZMM()
		VMOVDQU32(state.Offset(64*i), s)
		VPADDD(x, s, km, s)
		VMOVDQU32(s, state.Offset(64*i))
	}

	ADDQ(U32(64), off)
	DECQ(n)
	JMP(LabelRef("loop"))

	Label("done")
	VZEROUPPER()
	RET()

	Generate()
}

// sigma returns rotr(x, r1) ^ rotr(x, r2) ^ rotr(x, r3), or with shift the last
// term a right shift (the σ of the message schedule).
func sigma(x VecVirtual, r1, r2, r3 uint8, shift bool) VecVirtual {
	s1, s2, s3 := ZMM(), ZMM(), ZMM()
	VPRORD(U8(r1), x, s1)
	VPRORD(U8(r2), x, s2)
	if shift {
		VPSRLD(U8(r3), x, s3)
	} else {
		VPRORD(U8(r3), x, s3)
	}
	VPTERNLOGD(U8(xor3), s3, s2, s1)
	return s1
}

// schedule computes W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16] into the
// ring slot of W[t-16].
func schedule(w []VecVirtual, t int) {
	Commentf("W[%d].", t)
	x := w[t%16]
	VPADDD(w[(t-7)%16], x, x)
	VPADDD(sigma(w[(t-15)%16], 7, 18, 3, true), x, x)
	VPADDD(sigma(w[(t-2)%16], 17, 19, 10, true), x, x)
}

// loadTransposed loads lane l's block (64 bytes at ptrs[l]+off) as row l and
// returns the sixteen columns, byte-swapped: w[j] holds word j of every lane.
func loadTransposed(ptrs Mem, off GPVirtual, swap VecVirtual) []VecVirtual {
	r := make([]VecVirtual, 16)
	for l := range r {
		p := GP64()
		MOVQ(ptrs.Offset(8*l), p)
		r[l] = ZMM()
		VMOVDQU32(Mem{Base: p, Index: off, Scale: 1}, r[l])
		VPSHUFB(swap, r[l], r[l])
	}
	// Interleave words of row pairs, then quadwords of pair pairs: t[4g+m]
	// holds, in its 128-bit chunk q, word 4q+m of rows 4g..4g+3.
	t := make([]VecVirtual, 16)
	for g := 0; g < 4; g++ {
		var u [4]VecVirtual
		for p := 0; p < 2; p++ {
			lo, hi := ZMM(), ZMM()
			VPUNPCKLDQ(r[4*g+2*p+1], r[4*g+2*p], lo)
			VPUNPCKHDQ(r[4*g+2*p+1], r[4*g+2*p], hi)
			u[2*p], u[2*p+1] = lo, hi
		}
		// u[0]: words 4q, 4q+1 of rows 4g, 4g+1; u[1]: words 4q+2, 4q+3 of
		// them; u[2], u[3]: the same of rows 4g+2, 4g+3.
		for m := 0; m < 4; m++ {
			t[4*g+m] = ZMM()
		}
		VPUNPCKLQDQ(u[2], u[0], t[4*g+0])
		VPUNPCKHQDQ(u[2], u[0], t[4*g+1])
		VPUNPCKLQDQ(u[3], u[1], t[4*g+2])
		VPUNPCKHQDQ(u[3], u[1], t[4*g+3])
	}
	// Gather chunk q of t[m], t[4+m], t[8+m], t[12+m] (rows 0-3, 4-7, 8-11,
	// 12-15 of word 4q+m) into w[4q+m].
	w := make([]VecVirtual, 16)
	for m := 0; m < 4; m++ {
		A, B, C, D := t[m], t[4+m], t[8+m], t[12+m]
		s0, s1, s2, s3 := ZMM(), ZMM(), ZMM(), ZMM()
		VSHUFI32X4(U8(0x88), B, A, s0) // A.0 A.2 B.0 B.2
		VSHUFI32X4(U8(0xdd), B, A, s1) // A.1 A.3 B.1 B.3
		VSHUFI32X4(U8(0x88), D, C, s2) // C.0 C.2 D.0 D.2
		VSHUFI32X4(U8(0xdd), D, C, s3) // C.1 C.3 D.1 D.3
		for q := 0; q < 4; q++ {
			w[4*q+m] = ZMM()
		}
		VSHUFI32X4(U8(0x88), s2, s0, w[m])    // A.0 B.0 C.0 D.0
		VSHUFI32X4(U8(0xdd), s2, s0, w[8+m])  // A.2 B.2 C.2 D.2
		VSHUFI32X4(U8(0x88), s3, s1, w[4+m])  // A.1 B.1 C.1 D.1
		VSHUFI32X4(U8(0xdd), s3, s1, w[12+m]) // A.3 B.3 C.3 D.3
	}
	return w
}
