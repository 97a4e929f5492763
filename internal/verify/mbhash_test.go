//go:build linux

package verify

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"nixpki/internal/nix/nar"
)

// TestHashPathsAgree hashes many trees at once — more than there are lanes, so
// lanes are reused, with files whose sizes straddle SHA-256's block, its padding
// and the lane's block — with every implementation, and compares each NAR hash
// and size with nar.HashPath's. A tree that cannot be hashed (a FIFO inside)
// and a missing one fail alone.
func TestHashPathsAgree(t *testing.T) {
	sizes := []int{0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 4096, mbBlock - 1, mbBlock, mbBlock + 1, 2*mbBlock - 40, 3<<20 + 5}
	rng := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	var roots []string
	for i := range 2*2*lanes + 5 {
		root := filepath.Join(dir, fmt.Sprintf("p%d", i))
		switch {
		case i%7 == 3: // a single file
			writeRandom(t, rng, root, sizes[i%len(sizes)], 0o644)
		default:
			for f := range 1 + rng.IntN(12) {
				sub := filepath.Join(root, fmt.Sprintf("d%d", f%3))
				os.MkdirAll(sub, 0o755)
				mode := os.FileMode(0o644)
				if f%4 == 1 {
					mode = 0o755
				}
				writeRandom(t, rng, filepath.Join(sub, fmt.Sprintf("f%d", f)), sizes[(i+f)%len(sizes)], mode)
			}
			os.Symlink("d0/f0", filepath.Join(root, "link"))
		}
		roots = append(roots, root)
	}
	bad := filepath.Join(dir, "bad")
	os.MkdirAll(filepath.Join(bad, "a"), 0o755)
	writeRandom(t, rng, filepath.Join(bad, "a", "big"), 1<<20, 0o644)
	if err := syscall.Mkfifo(filepath.Join(bad, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	roots = append(roots, bad, filepath.Join(dir, "missing"))

	for name, hash := range hashPaths() {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			for _, root := range roots {
				wg.Go(func() {
					want, wantSize, wantErr := nar.HashPath(root)
					got, gotSize, err := hash(root)
					switch {
					case wantErr != nil && err == nil:
						t.Errorf("%s: hashed to %x, want an error like %v", root, got, wantErr)
					case wantErr == nil && err != nil:
						t.Errorf("%s: %v", root, err)
					case want != got || wantSize != gotSize:
						t.Errorf("%s: NAR hash %x size %d, want %x size %d", root, got, gotSize, want, wantSize)
					}
				})
			}
			wg.Wait()
		})
	}
}

func writeRandom(t *testing.T, rng *rand.Rand, path string, size int, mode os.FileMode) {
	t.Helper()
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}
