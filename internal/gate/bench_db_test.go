package gate

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"nixpki/internal/nix/base32"
	"nixpki/internal/nix/storepath"
)

// BenchmarkDBAdmission measures the database's part of one path's push as the gate
// made it statement by statement ("statements": each its own transaction, each
// reference looked up alone, the candidates twice) and as it makes it now
// ("change": the NAR lookup in one statement, the references together, the writes
// in one transaction): a NAR's row inserted, then a narinfo with 5 references
// admitted.
func BenchmarkDBAdmission(b *testing.B) {
	for _, mode := range []string{"statements", "change"} {
		b.Run(mode, func(b *testing.B) {
			d, err := openDB(filepath.Join(b.TempDir(), "gate.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ctx := context.Background()
			var prev []string
			path := func(i int) PathRec {
				h := sha256.Sum256(fmt.Append(nil, i))
				hash := base32.Encode(h[:20])
				return PathRec{Hash: hash, NarHash: h, StorePath: storepath.DefaultStoreDir + "/" + hash + "-p", NarInfo: "x", URL: fmt.Sprintf("nar/%d.nar.zst", i),
					State: StateAdmitted, FirstSeen: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0), AdmittedAt: time.Unix(1, 0)}
			}
			step := func(i int) {
				p := path(i)
				n := narRec{URL: p.URL, Compression: "zstd", FileSize: 1000, NarHash: p.NarHash, NarSize: 2000, ReceivedAt: time.Unix(1, 0)}
				var err error
				if mode == "statements" {
					if _, _, err = d.getNAR(ctx, n.URL); err == nil {
						_, err = d.stagingBytes(ctx)
					}
				} else {
					_, _, err = d.narHeld(ctx, n.URL)
				}
				if err == nil {
					err = d.insertNAR(ctx, n)
				}
				if err != nil {
					b.Fatal(err)
				}
				c := d
				if mode == "change" {
					c = d.begin()
				}
				if _, _, err = d.getNAR(ctx, n.URL); err != nil { // outside the lock
					b.Fatal(err)
				}
				if _, _, err = c.getNAR(ctx, n.URL); err != nil {
					b.Fatal(err)
				}
				if _, err = c.candidates(ctx, p.Hash); err != nil {
					b.Fatal(err)
				}
				if mode == "statements" {
					for _, r := range prev {
						if _, err = c.candidates(ctx, r); err != nil {
							b.Fatal(err)
						}
					}
				} else if _, err = c.candidatesOf(ctx, prev); err != nil {
					b.Fatal(err)
				}
				if err = c.putPath(ctx, p); err != nil {
					b.Fatal(err)
				}
				if mode == "statements" {
					if _, err = c.candidates(ctx, p.Hash); err != nil {
						b.Fatal(err)
					}
				}
				if _, err = c.pathsInState(ctx, StatePending); err != nil {
					b.Fatal(err)
				}
				if err = c.commit(); err != nil {
					b.Fatal(err)
				}
				if prev = append(prev, p.Hash); len(prev) > 5 {
					prev = prev[1:]
				}
			}
			for i := 0; i < 100; i++ { // a database with some paths
				step(-1 - i)
			}
			b.ResetTimer()
			defer reportCPU(b)()
			for i := 0; i < b.N; i++ {
				step(i)
			}
		})
	}
}
