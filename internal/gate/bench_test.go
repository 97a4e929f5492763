package gate

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/storepath"
)

// BenchmarkReceiveNAR measures the streaming check of one 1 MiB NAR of random bytes.
func BenchmarkReceiveNAR(b *testing.B) {
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	nar := makeNAR(b, string(blob))
	for _, c := range []string{"none", "zstd", "zstd-named-by-narhash"} {
		comp, hashFile := c, true
		if c == "zstd-named-by-narhash" { // as nix push sends it: the file is not hashed
			comp, hashFile = "zstd", false
		}
		file := compress(b, nar, comp)
		b.Run(c, func(b *testing.B) {
			b.SetBytes(int64(len(nar)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := receiveNARFile(bytes.NewReader(file), io.Discard, comp, 1<<30, 64<<20, hashFile); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReceiveNARFile is BenchmarkReceiveNAR writing to a real NAR file in a
// temporary directory, flushed as PutNARNamed does (not fsynced: the CPU of receiving
// is what is measured; cpu-ns/op counts the system calls' too).
func BenchmarkReceiveNARFile(b *testing.B) {
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	nar := makeNAR(b, string(blob))
	for _, c := range []string{"none", "zstd-named-by-narhash"} {
		comp, hashFile := c, true
		if c == "zstd-named-by-narhash" {
			comp, hashFile = "zstd", false
		}
		file := compress(b, nar, comp)
		b.Run(c, func(b *testing.B) {
			dir := b.TempDir()
			b.SetBytes(int64(len(nar)))
			b.ReportAllocs()
			defer reportCPU(b)()
			for i := 0; i < b.N; i++ {
				f, err := createNARFile(dir, "nar")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := receiveNARFile(bytes.NewReader(file), f, comp, 1<<30, 64<<20, hashFile); err != nil {
					b.Fatal(err)
				}
				if err := f.Flush(); err != nil {
					b.Fatal(err)
				}
				f.Close()
				os.Remove(f.Name())
			}
		})
	}
}

// BenchmarkNARFileWrite measures writing and fsyncing one 1 MiB NAR file as PutNAR
// does (1 MiB writes from an aligned buffer, a short tail): O_DIRECT against the page
// cache.
func BenchmarkNARFileWrite(b *testing.B) {
	data := alignedBufPool.Get().(*alignedBuf).mem
	rand.Read(data)
	tail := data[:1234]
	for _, direct := range []bool{true, false} {
		name := "direct"
		if !direct {
			name = "buffered"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			b.SetBytes(int64(len(data) + len(tail)))
			defer reportCPU(b)()
			for i := 0; i < b.N; i++ {
				f, err := createNARFile(dir, "nar")
				if err != nil {
					b.Fatal(err)
				}
				if direct && !f.direct {
					b.Skip("O_DIRECT refused by this file system")
				}
				if !direct && f.direct {
					if err := f.stopDirect(); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := f.Write(data); err != nil {
					b.Fatal(err)
				}
				if _, err := f.Write(tail); err != nil {
					b.Fatal(err)
				}
				if err := f.Flush(); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				f.Close() // kept, as the gate keeps NARs: the page cache grows
			}
		})
	}
}

// BenchmarkAdmit measures one path through the gate over HTTP: a 64 KiB zstd NAR
// uploaded, checked, written and fsynced, then its narinfo judged, logged and
// admitted (the statements prepared once, the NAR written with O_DIRECT). The NARs
// and narinfos are made before the timer starts.
func BenchmarkAdmit(b *testing.B) { benchAdmit(b, 64<<10, 0) }

// BenchmarkAdmitRefs is BenchmarkAdmit for a closure: small NARs (4 KiB, so that the
// database's part shows), each path referencing the 5 pushed before it, as the paths
// of a system closure do, each reference looked up when the path is judged.
func BenchmarkAdmitRefs(b *testing.B) { benchAdmit(b, 4<<10, 5) }

// benchAdmit pushes b.N paths of size random bytes, each referencing the refs paths
// pushed before it.
func benchAdmit(b *testing.B, size, refs int) {
	tg := newTestGate(b, nil)
	alice := tg.pki.member(b, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(b, alice)
	type prepared struct {
		narURL, niURL string
		file, ni      []byte
	}
	uploads := make([]prepared, b.N)
	blob := make([]byte, size)
	var prev []string
	for i := range uploads {
		rand.Read(blob)
		nar := makeNAR(b, string(blob))
		file := compress(b, nar, "zstd")
		fh, nh := sha256.Sum256(file), sha256.Sum256(nar)
		path := storePath("bench")
		ni := &narinfo.NarInfo{StorePath: path, URL: binarycache.NARURL(fh, "zstd"), Compression: "zstd", FileHash: &fh, FileSize: uint64(len(file)),
			NarHash: nh, NarSize: uint64(len(nar))}
		for _, r := range prev {
			ni.References = append(ni.References, r[strings.LastIndexByte(r, '/')+1:])
		}
		if refs > 0 {
			if prev = append(prev, path); len(prev) > refs {
				prev = prev[1:]
			}
		}
		fp, err := ni.Fingerprint()
		if err != nil {
			b.Fatal(err)
		}
		ni.Sigs = append(ni.Sigs, alice.key.Sign(fp))
		text, err := ni.MarshalText()
		if err != nil {
			b.Fatal(err)
		}
		uploads[i] = prepared{"/" + ni.URL, "/" + storepath.HashPart(path) + ".narinfo", file, text}
	}
	b.ResetTimer()
	defer reportCPU(b)()
	for _, u := range uploads {
		if s, body := tg.do(b, "PUT", u.narURL, u.file); s != 200 {
			b.Fatalf("NAR: %d %s", s, body)
		}
		if s, body := tg.do(b, "PUT", u.niURL, u.ni); s != 200 {
			b.Fatalf("narinfo: %d %s", s, body)
		}
	}
}

// reportCPU adds the process's CPU time per operation (user and system: what O_DIRECT
// and fewer system calls save, where the wall time waits on the disk).
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}
