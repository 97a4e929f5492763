package gate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strings"
	"testing"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
)

// Seeds live in testdata/fuzz/<FuzzName>/ as well as here.

func FuzzParseUpload(f *testing.F) {
	p := newPKI(f)
	m := p.member(f, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	f.Add(p.chainPEM(m, p.crl(f, 1, p.nix.NotBefore)))
	f.Add(p.crl(f, 2, p.nix.NotBefore))
	f.Add([]byte("-----BEGIN PRIVATE" + " KEY-----\nAAAA\n-----END PRIVATE" + " KEY-----\n"))
	f.Add([]byte("\x30\x82\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, crls, err := parseUpload(data)
		if err != nil {
			return
		}
		if len(certs) > 32 || len(crls) > 8 || len(certs)+len(crls) == 0 {
			t.Fatalf("parseUpload accepted %d certificates and %d CRLs", len(certs), len(crls))
		}
	})
}

// FuzzReceiveNAR feeds arbitrary uploads, in every compression, to the streaming
// NAR check: it must never panic, and whatever it accepts uncompressed is a NAR
// nar.Check accepts with the same hash and size.
func FuzzReceiveNAR(f *testing.F) {
	seed := makeNAR(f, "hello")
	for i, c := range []string{"none", "zstd", "xz", "bzip2"} {
		if c == "bzip2" {
			f.Add(uint8(i), []byte("BZh91AY&SY"))
			continue
		}
		f.Add(uint8(i), compress(f, seed, c))
	}
	f.Add(uint8(0), seed[:len(seed)-3])
	f.Add(uint8(0), bytes.Repeat([]byte{0xff}, 64))
	for _, d := range hugeDictXZ(f) { // a later block or stream declares 1 GiB
		f.Add(uint8(2), d)
	}
	comps := []string{"none", "zstd", "xz", "bzip2"}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		c := comps[int(which)%len(comps)]
		var file bytes.Buffer
		res, err := receiveNAR(bytes.NewReader(data), &file, c, 1<<20, 16<<20)
		if err != nil {
			return
		}
		if !bytes.Equal(file.Bytes(), data) || res.FileHash != sha256.Sum256(data) || res.FileSize != int64(len(data)) {
			t.Fatal("the stored file differs from the upload")
		}
		if c == "none" {
			sum, size, err := nar.Check(bytes.NewReader(data))
			if err != nil || sum != res.NarHash || int64(size) != res.NarSize {
				t.Fatalf("receiveNAR accepted what nar.Check refuses or reads otherwise: %v", err)
			}
		}
	})
}

// FuzzPutNarInfo sends arbitrary narinfos to a gate holding one NAR and one enrolled
// member: nothing may be admitted unless its NAR matches and the member signed it.
func FuzzPutNarInfo(f *testing.F) {
	tg := newTestGate(f, nil)
	alice := tg.pki.member(f, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(f, alice)
	narData := makeNAR(f, "fuzz")
	file := compress(f, narData, "zstd")
	fh := sha256.Sum256(file)
	url := binarycache.NARURL(fh, "zstd")
	if s, b := tg.do(f, "PUT", "/"+url, file); s != 200 {
		f.Fatalf("NAR: %d %s", s, b)
	}
	p := storePath("fuzzed")
	ni := &narinfo.NarInfo{StorePath: p, URL: url, Compression: "zstd", FileHash: &fh, FileSize: uint64(len(file)), NarHash: sha256.Sum256(narData), NarSize: uint64(len(narData))}
	fp, _ := ni.Fingerprint()
	ni.Sigs = []signing.Signature{alice.key.Sign(fp)}
	good, _ := ni.MarshalText()
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("NarSize: "), []byte("NarSize: 1"), 1))
	f.Add(bytes.Replace(good, []byte("References: "), []byte("References: ../../etc"), 1))
	f.Add([]byte("StorePath: " + p + "\nURL: nar/x\nNarHash: sha256:0\nNarSize: 99999999999999999999\n"))
	ctx := context.Background()
	hash := storepath.HashPart(p)
	gatePub := tg.Key.Public()
	f.Fuzz(func(t *testing.T, body []byte) {
		tg.PutNarInfo(ctx, hash, body, "fuzz")
		served, ok, err := tg.db.served(ctx, hash)
		if err != nil || !ok {
			return
		}
		// Whatever is served describes the uploaded NAR and carries alice's and the
		// gate's valid signatures.
		got, err := narinfo.Parse(strings.NewReader(served), storepath.DefaultStoreDir)
		if err != nil || got.NarHash != ni.NarHash || got.NarSize != ni.NarSize || got.URL != url || got.StorePath != p {
			t.Fatalf("serves a narinfo that does not describe the uploaded NAR (%v):\n%s", err, served)
		}
		fp, _ := got.Fingerprint()
		var byAlice, byGate bool
		for _, s := range got.Sigs {
			byAlice = byAlice || alice.key.Public().Verify(fp, s)
			byGate = byGate || gatePub.Verify(fp, s)
		}
		if !byAlice || !byGate {
			t.Fatalf("serves a narinfo without alice's and the gate's signatures:\n%s", served)
		}
	})
}
