// Package sha256x16 computes sixteen SHA-256 digests at once, one per 32-bit lane
// of AVX-512 registers: several times the throughput of one SHA-NI stream per
// core, for callers with many independent messages (nixpki verify hashes the NARs
// of many store paths). The kernel is minio/sha256-simd's (x16_amd64.s, Apache
// License 2.0, see LICENSE here), called directly: one goroutine drives sixteen
// lanes with no channel or server in between. Without AVX-512 a portable Go
// kernel computes the same digests, slowly (x16_generic.go). Digests of both are
// checked against crypto/sha256 in tests.
package sha256x16

import (
	"encoding/binary"
)

// BlockSize is SHA-256's block size: inputs to Blocks are multiples of it.
const BlockSize = 64

// Lanes is the number of messages hashed at once.
const Lanes = 16

var iv = [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}

// State is sixteen SHA-256 computations. Its zero value is not ready: use New.
type State struct {
	dig     [512]byte // word w of lane l at (l + 16w)*4, little-endian
	scratch [512]byte
	mask    []uint64
	len     [Lanes]uint64 // bytes hashed per lane
	fast    bool          // the AVX-512 kernel, not the portable one
}

// New returns sixteen fresh computations: on the AVX-512 kernel where Available,
// else on the portable one (the same digests, much slower: for tests and runs that
// force the multi-buffer path).
func New() *State {
	return newState(Available())
}

func newState(fast bool) *State {
	s := &State{fast: fast}
	for l := range Lanes {
		s.Reset(l)
	}
	return s
}

// Reset starts a new message in lane l.
func (s *State) Reset(l int) {
	for w, v := range iv {
		binary.LittleEndian.PutUint32(s.dig[(l+16*w)*4:], v)
	}
	s.len[l] = 0
}

// Blocks hashes in[l] into lane l, for every lane; each input's length must be a
// multiple of BlockSize (empty inputs leave their lane as it is). Its cost is
// that of the longest input, whichever lanes are busy.
func (s *State) Blocks(in *[Lanes][]byte) {
	rounds := 0
	for l, p := range in {
		if len(p)%BlockSize != 0 {
			panic("sha256x16: input length is not a multiple of the block size")
		}
		rounds = max(rounds, len(p)/BlockSize)
		s.len[l] += uint64(len(p))
	}
	if rounds == 0 {
		return
	}
	if !s.fast {
		blocksGeneric(&s.dig, in)
		return
	}
	if cap(s.mask) < rounds {
		s.mask = make([]uint64, rounds)
	}
	mask := s.mask[:rounds]
	for r := range mask {
		var m uint64
		for l, p := range in {
			if len(p) > r*BlockSize {
				m |= 1 << l
			}
		}
		mask[r] = m
	}
	blocks(&s.dig, &s.scratch, mask, in)
}

// Pad appends SHA-256's padding to p, the last bytes (fewer than BlockSize) of a
// message of which lane l has hashed the rest, so that hashing the result into
// lane l gives the final digest.
func (s *State) Pad(l int, p []byte) []byte {
	n := s.len[l] + uint64(len(p))
	p = append(p, 0x80)
	for len(p)%BlockSize != 56 {
		p = append(p, 0)
	}
	return binary.BigEndian.AppendUint64(p, n<<3)
}

// Sum returns lane l's digest: after Pad's blocks, the SHA-256 of the message.
func (s *State) Sum(l int) (out [32]byte) {
	for w := range 8 {
		binary.BigEndian.PutUint32(out[4*w:], binary.LittleEndian.Uint32(s.dig[(l+16*w)*4:]))
	}
	return out
}
