package gate

import (
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"

	"nixpki/internal/nixkey"
)

// BenchmarkAdmitRefs is BenchmarkAdmit for a closure: small NARs (4 KiB, so that the
// database's part shows), each path referencing the 5 pushed before it, as the paths
// of a system closure do, each reference looked up when the path is judged.
func BenchmarkAdmitRefs(b *testing.B) {
	tg := newTestGate(b, nil)
	alice := tg.pki.member(b, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(b, alice)
	type prepared struct {
		narURL, niURL string
		file, ni      []byte
	}
	uploads := make([]prepared, b.N)
	blob := make([]byte, 4<<10)
	var prev []string
	for i := range uploads {
		rand.Read(blob)
		nar := makeNAR(b, string(blob))
		file := compress(b, nar, "zstd")
		fh, nh := sha256.Sum256(file), sha256.Sum256(nar)
		path := storePath("bench")
		ni := &nixkey.NarInfo{StorePath: path, URL: NARURL(fh, "zstd"), Compression: "zstd", FileHash: &fh, FileSize: uint64(len(file)),
			NarHash: nh, NarSize: uint64(len(nar))}
		for _, r := range prev {
			ni.References = append(ni.References, r[strings.LastIndexByte(r, '/')+1:])
		}
		if prev = append(prev, path); len(prev) > 5 {
			prev = prev[1:]
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
		uploads[i] = prepared{"/" + ni.URL, "/" + nixkey.HashPart(path) + ".narinfo", file, text}
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
