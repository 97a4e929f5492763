package sha256x16

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// digests hashes sixteen messages through Blocks in rounds of a few blocks,
// each lane busy only in some rounds (mask), and finishes each with Continue.
func digests(t *testing.T, msgs [Lanes][]byte, rng *rand.Rand) [Lanes][32]byte {
	t.Helper()
	var s State
	var done [Lanes]int
	for l := range Lanes {
		s.Reset(l)
	}
	for range 200 {
		n := 1 + rng.IntN(4)
		var mask uint16
		var p [Lanes][]byte
		for l := range Lanes {
			if len(msgs[l])-done[l] >= n*BlockSize && rng.IntN(4) != 0 {
				mask |= 1 << l
				p[l] = msgs[l][done[l]:]
			} else if rng.IntN(2) == 0 {
				// A masked-out lane's bytes must not be read: give it none.
				p[l] = nil
			}
		}
		s.Blocks(&p, n, mask)
		for l := range Lanes {
			if mask&(1<<l) != 0 {
				done[l] += n * BlockSize
			}
		}
	}
	var out [Lanes][32]byte
	for l := range Lanes {
		h, err := s.Continue(l, uint64(done[l]))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(msgs[l][done[l]:])
		h.Sum(out[l][:0])
	}
	return out
}

func testDigests(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		var msgs [Lanes][]byte
		for l := range Lanes {
			// Lengths around block boundaries, and longer ones.
			n := rng.IntN(3 * BlockSize)
			if rng.IntN(2) == 0 {
				n = rng.IntN(40 * BlockSize)
			}
			msgs[l] = make([]byte, n)
			for i := range msgs[l] {
				msgs[l][i] = byte(rng.Uint32())
			}
		}
		got := digests(t, msgs, rng)
		for l := range Lanes {
			if want := sha256.Sum256(msgs[l]); got[l] != want {
				t.Fatalf("round %d lane %d (%d bytes): digest %x, want %x", round, l, len(msgs[l]), got[l], want)
			}
		}
	}
}

func TestDigestsMatchCryptoSHA256(t *testing.T) {
	t.Run("fast", func(t *testing.T) {
		if !Fast() {
			t.Skip("this CPU has no AVX-512: the portable subtest covers Blocks")
		}
		testDigests(t)
	})
	t.Run("portable", func(t *testing.T) {
		forceGeneric = true
		defer func() { forceGeneric = false }()
		testDigests(t)
	})
}

// TestTakeContinue moves a lane's stream to crypto/sha256 and back mid-message.
func TestTakeContinue(t *testing.T) {
	msg := bytes.Repeat([]byte("nixpki"), 1000)
	var s State
	s.Reset(3)
	var p [Lanes][]byte
	p[3] = msg
	s.Blocks(&p, 10, 1<<3)
	h, err := s.Continue(3, 640)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(msg[640 : 640+1280])
	var s2 State
	n, err := s2.Take(7, h)
	if err != nil || n != 1920 {
		t.Fatalf("Take: %d, %v; want 1920", n, err)
	}
	p[7] = msg[1920:]
	s2.Blocks(&p, 20, 1<<7)
	h, err = s2.Continue(7, 1920+1280)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(msg[3200:])
	if got, want := [32]byte(h.Sum(nil)), sha256.Sum256(msg); got != want {
		t.Fatalf("digest %x, want %x", got, want)
	}
	if _, err := s.Continue(3, 100); err == nil {
		t.Fatal("Continue took a length that is not a whole number of blocks")
	}
	h.Write([]byte("x"))
	if _, err := s.Take(0, h); err == nil {
		t.Fatal("Take took a hash that is mid-block")
	}
}

// TestGeneratedKernelIsCurrent runs the generator and compares its output with
// the checked-in assembly and stub, so that the kernel is what _asm/asm.go says.
func TestGeneratedKernelIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go run with the avo module")
	}
	// The generator runs from a copy, with the same relative paths as
	// go:generate, because the files' headers name the command line.
	dir := t.TempDir()
	gen := filepath.Join(dir, "_asm")
	if err := os.Mkdir(gen, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"asm.go", "go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join("_asm", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(gen, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "run", ".", "-out", "../blocks_amd64.s", "-stubs", "../stub_amd64.go", "-pkg", "sha256x16")
	cmd.Dir = gen
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./_asm: %v\n%s", err, out)
	}
	for _, f := range []string{"blocks_amd64.s", "stub_amd64.go"} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what _asm/asm.go generates: run go generate ./internal/sha256x16", f)
		}
	}
}
