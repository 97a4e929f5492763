//go:build linux

package verify

import (
	"math/bits"

	"nixpki/internal/sha256x16"
)

// laneHashers hashes up to sixteen NAR streams, one per lane, for one driver of
// mbhash_linux.go. A round takes a full block (mbBlock bytes) from each busy
// lane. With enough busy lanes it is one call of sha256x16's AVX-512 kernel,
// whose cost does not depend on how many lanes are busy; with fewer (a run's
// last paths, or a CPU without the kernel), each lane's block goes through
// crypto/sha256 (SHA-NI where the CPU has it) from the lane's chaining value.
type laneHashers struct {
	s    sha256x16.State
	done [lanes]uint64 // bytes of each lane's stream hashed so far
}

// kernelMinLanes is the fewest busy lanes for which one kernel round costs less
// than crypto/sha256 on each lane: the kernel hashes sixteen lanes in about the
// time one SHA-NI stream hashes five and a half (5.1 against 1.7 GB/s with
// go test -bench . ./internal/sha256x16).
const kernelMinLanes = 6

func (h *laneHashers) start(l int) {
	h.s.Reset(l)
	h.done[l] = 0
}

// round hashes mbBlock bytes of p[l] into every lane l set in mask.
func (h *laneHashers) round(p *[lanes][]byte, mask uint16) error {
	if sha256x16.Fast() && bits.OnesCount16(mask) >= kernelMinLanes {
		h.s.Blocks(p, mbBlock/sha256x16.BlockSize, mask)
		for l := range lanes {
			if mask&(1<<l) != 0 {
				h.done[l] += mbBlock
			}
		}
		return nil
	}
	for l := range lanes {
		if mask&(1<<l) == 0 {
			continue
		}
		s, err := h.s.Continue(l, h.done[l])
		if err != nil {
			return err
		}
		s.Write(p[l][:mbBlock])
		if h.done[l], err = h.s.Take(l, s); err != nil {
			return err
		}
	}
	return nil
}

// sum hashes lane l's last bytes and returns its stream's digest.
func (h *laneHashers) sum(l int, tail []byte) ([32]byte, error) {
	s, err := h.s.Continue(l, h.done[l])
	if err != nil {
		return [32]byte{}, err
	}
	s.Write(tail)
	return [32]byte(s.Sum(nil)), nil
}
