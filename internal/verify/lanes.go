//go:build linux

package verify

import (
	"math/bits"

	"nixpki/internal/sha256x16"
)

// kernelMinLanes is the fewest busy lanes for which one kernel round costs less
// than crypto/sha256 on each lane: the kernel hashes sixteen lanes in about the
// time one SHA-NI stream hashes five and a half (5.1 against 1.7 GB/s with
// go test -bench . ./internal/sha256x16).
const kernelMinLanes = 6

// hashRound hashes mbBlock bytes of p[i] into lane i of s for every lane set in
// mask; done[i] counts the bytes of lane i's stream hashed so far. With enough
// busy lanes it is one call of sha256x16's AVX-512 kernel, whose cost does not
// depend on how many lanes are busy; with fewer (a run's last paths, or a CPU
// without the kernel), each lane's block goes through crypto/sha256 (SHA-NI
// where the CPU has it) from the lane's chaining value.
func hashRound(s *sha256x16.State, p *[lanes][]byte, mask uint16, done *[lanes]uint64) error {
	if sha256x16.Fast() && bits.OnesCount16(mask) >= kernelMinLanes {
		s.Blocks(p, mbBlock/sha256x16.BlockSize, mask)
		for i := range lanes {
			if mask&(1<<i) != 0 {
				done[i] += mbBlock
			}
		}
		return nil
	}
	for i := range lanes {
		if mask&(1<<i) == 0 {
			continue
		}
		h, err := s.Continue(i, done[i])
		if err != nil {
			return err
		}
		h.Write(p[i][:mbBlock])
		if done[i], err = s.Take(i, h); err != nil {
			return err
		}
	}
	return nil
}

// hashTail hashes a stream's last bytes, from the chaining value in lane i of s
// after done bytes, and returns the stream's digest.
func hashTail(s *sha256x16.State, i int, done uint64, tail []byte) ([32]byte, error) {
	h, err := s.Continue(i, done)
	if err != nil {
		return [32]byte{}, err
	}
	h.Write(tail)
	return [32]byte(h.Sum(nil)), nil
}
