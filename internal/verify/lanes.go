//go:build linux

package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// laneHasher hashes up to sixteen SHA-256 streams, one per lane. A stream
// starts with start, takes whole 64-byte blocks with write and ends with
// sum. The driver of mbhash_linux.go calls it from one goroutine; write may
// keep p for a while after it returns (the AVX-512 hasher hashes in the
// background; see mbLane.flip), so the caller rotates buffers per lane.
type laneHasher interface {
	start(l int)
	write(l int, p []byte)
	// sum hashes the stream's last bytes p (any length; cap(p) must leave room
	// for 72 bytes of padding), given the stream's total length n, and returns
	// its digest.
	sum(l int, p []byte, n uint64) [32]byte
}

// pad appends SHA-256's padding for a message of n bytes to p, its last bytes.
func pad(p []byte, n uint64) []byte {
	p = append(p, 0x80)
	for len(p)%64 != 56 {
		p = append(p, 0)
	}
	return binary.BigEndian.AppendUint64(p, n<<3)
}

// newLaneHasher returns the AVX-512 hasher where the CPU has it, else the
// portable one.
func newLaneHasher() laneHasher {
	if avx512() {
		return newAVX512Lanes()
	}
	return newPortableLanes()
}

// portableLanes runs one crypto/sha256 stream per lane: the same digests as
// the AVX-512 hasher at the speed of sixteen separate streams, for CPUs
// without AVX-512 when the multi-buffer path is forced.
type portableLanes [lanes]hash.Hash

func newPortableLanes() *portableLanes {
	var p portableLanes
	for i := range p {
		p[i] = sha256.New()
	}
	return &p
}

func (p *portableLanes) start(l int)           { p[l].Reset() }
func (p *portableLanes) write(l int, b []byte) { p[l].Write(b) }
func (p *portableLanes) sum(l int, b []byte, _ uint64) (out [32]byte) {
	p[l].Write(b)
	p[l].Sum(out[:0])
	return out
}
