package sha256x16

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// hashAll hashes msgs (one per lane) in rounds of at most chunk bytes per lane,
// lanes starting and ending at different rounds, and returns the digests.
func hashAll(t *testing.T, s *State, msgs *[Lanes][]byte, chunk int, rng *rand.Rand) [Lanes][32]byte {
	t.Helper()
	var off [Lanes]int
	var done [Lanes]bool
	var out [Lanes][32]byte
	for {
		var in [Lanes][]byte
		var final [Lanes]bool
		busy := false
		for l, m := range msgs {
			if done[l] {
				continue
			}
			busy = true
			if rng.IntN(4) == 0 { // sit this round out
				continue
			}
			n := min(rng.IntN(chunk/BlockSize+1)*BlockSize, (len(m)-off[l])&^(BlockSize-1))
			if n == 0 && len(m)-off[l] < BlockSize {
				in[l] = s.Pad(l, append([]byte(nil), m[off[l]:]...))
				final[l] = true
			} else {
				in[l] = m[off[l] : off[l]+n]
				off[l] += n
			}
		}
		if !busy {
			return out
		}
		s.Blocks(&in)
		for l := range msgs {
			if final[l] {
				out[l], done[l] = s.Sum(l), true
				s.Reset(l)
			}
		}
	}
}

// kernels are the kernels this machine runs: the portable one always, the
// AVX-512 one where the CPU has it.
func kernels() map[string]*State {
	m := map[string]*State{"portable": newState(false)}
	if Available() {
		m["avx512"] = newState(true)
	}
	return m
}

func TestMatchesCryptoSHA256(t *testing.T) {
	for name, s := range kernels() {
		t.Run(name, func(t *testing.T) { testMatchesCryptoSHA256(t, s) })
	}
}

func testMatchesCryptoSHA256(t *testing.T, s *State) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 4095, 4096, 4097, 65535, 65536, 65537, 3<<20 + 17}
	for round := range 6 {
		var msgs [Lanes][]byte
		for l := range msgs {
			n := sizes[(l+round*Lanes)%len(sizes)]
			if round >= 3 {
				n = rng.IntN(300 << 10)
			}
			msgs[l] = make([]byte, n)
			for i := range msgs[l] {
				msgs[l][i] = byte(rng.Uint32())
			}
		}
		got := hashAll(t, s, &msgs, 96<<10, rng)
		for l, m := range msgs {
			if want := sha256.Sum256(m); got[l] != want {
				t.Errorf("round %d lane %d (%d bytes): got %x, want %x", round, l, len(m), got[l], want)
			}
		}
	}
}

func FuzzMatchesCryptoSHA256(f *testing.F) {
	ks := kernels()
	f.Add([]byte("abc"), uint64(1), uint16(64))
	f.Add(make([]byte, 1000), uint64(7), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, chunk uint16) {
		rng := rand.New(rand.NewPCG(seed, 0))
		var msgs [Lanes][]byte
		for l := range msgs {
			a := rng.IntN(len(data) + 1)
			b := a + rng.IntN(len(data)-a+1)
			msgs[l] = data[a:b]
		}
		for name, s := range ks {
			rng := rand.New(rand.NewPCG(seed, 0))
			got := hashAll(t, s, &msgs, max(int(chunk), BlockSize), rng)
			for l, m := range msgs {
				if want := sha256.Sum256(m); got[l] != want {
					t.Fatalf("%s kernel, lane %d (%d bytes): got %x, want %x", name, l, len(m), got[l], want)
				}
			}
		}
	})
}
