package gate

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nixcert"
)

// A NAR named by its NarHash (nixpki nix push): the gate checks the name against the
// NAR, does not hash the file, and serves a narinfo without FileHash.
func TestNARNamedByNarHash(t *testing.T) {
	tg := newTestGate(t, nil)
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, nixcert.Scope{}, nil)
	tg.enroll(t, alice)

	for _, c := range []string{"zstd", "xz", "none"} {
		p := storePath("named-" + c)
		contents := strings.Repeat("named "+c, 3000)
		if ns, s, b := tg.push(t, upload{path: p, contents: contents, compression: c, signers: []member{alice}, byNarHash: true}); ns != 200 || s != 200 {
			t.Fatalf("%s: NAR %d, narinfo %d: %s", c, ns, s, b)
		}
		ni, ok := tg.served(t, p)
		if !ok {
			t.Fatalf("%s: not served", c)
		}
		nar := makeNAR(t, contents)
		if nh := sha256.Sum256(nar); ni.URL != binarycache.NARURL(nh, c) || ni.NarHash != nh {
			t.Fatalf("%s: served URL %s, NarHash %s", c, ni.URL, nixhash.FormatSHA256(ni.NarHash))
		}
		file, err := os.ReadFile(filepath.Join(tg.dir, filepath.FromSlash(ni.URL)))
		if err != nil {
			t.Fatal(err)
		}
		if ni.FileSize != uint64(len(file)) {
			t.Fatalf("%s: FileSize %d, the file has %d bytes", c, ni.FileSize, len(file))
		}
		switch {
		case c == "none" && (ni.FileHash == nil || *ni.FileHash != sha256.Sum256(file)):
			t.Fatalf("uncompressed: FileHash %v, want the NarHash", ni.FileHash)
		case c != "none" && ni.FileHash != nil:
			t.Fatalf("%s: FileHash %s served for a file the gate did not hash", c, nixhash.FormatSHA256(*ni.FileHash))
		}
		if s, got := tg.do(t, "GET", "/"+ni.URL, nil); s != 200 || got != string(file) {
			t.Fatalf("%s: GET the NAR: %d, %d bytes", c, s, len(got))
		}
	}

	// A name that is not the NarHash: the NAR of other contents, the file's own hash.
	nar := makeNAR(t, "some contents")
	file := compress(t, nar, "zstd")
	other := sha256.Sum256(makeNAR(t, "other contents"))
	for name, h := range map[string][32]byte{"other NAR": other, "file hash": sha256.Sum256(file)} {
		s, b := tg.doHeader(t, "PUT", "/"+binarycache.NARURL(h, "zstd"), file, binarycache.NARNameHeader, binarycache.NARNameNarHash)
		if s != 400 || !strings.Contains(b, "the file's name says") {
			t.Fatalf("%s as the name: %d %s", name, s, b)
		}
	}
	// An unknown naming.
	if s, b := tg.doHeader(t, "PUT", "/"+binarycache.NARURL(sha256.Sum256(nar), "zstd"), file, binarycache.NARNameHeader, "file-hash"); s != 400 || !strings.Contains(b, binarycache.NARNameHeader) {
		t.Fatalf("unknown %s: %d %s", binarycache.NARNameHeader, s, b)
	}

	// A narinfo claiming a FileHash for a file the gate did not hash is refused: the
	// gate serves no FileHash it did not check.
	p := storePath("claims-filehash")
	_, s, b := tg.push(t, upload{path: p, contents: "claims", signers: []member{alice}, byNarHash: true, mutate: func(ni *narinfo.NarInfo) {
		fh := sha256.Sum256(compress(t, makeNAR(t, "claims"), "zstd"))
		ni.FileHash = &fh
	}})
	if s != 400 || !strings.Contains(b, "FileHash/FileSize do not match") {
		t.Fatalf("FileHash for an unhashed file: %d %s", s, b)
	}
	if _, ok := tg.served(t, p); ok {
		t.Fatal("served after a refused narinfo")
	}
}

// Two encodings of one NAR under its NarHash name: the file already there stays, and
// the row (the narinfo's FileSize) describes it.
func TestNARNamedByNarHashFirstFileStays(t *testing.T) {
	tg := newTestGate(t, nil)
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, nixcert.Scope{}, nil)
	tg.enroll(t, alice)
	p := storePath("two-encodings")
	contents := strings.Repeat("two encodings ", 4000)
	nar := makeNAR(t, contents)
	url := binarycache.NARURL(sha256.Sum256(nar), "zstd")
	// Another encoder's file (zstd's raw blocks: larger), as a concurrent upload left it.
	var other bytes.Buffer
	zw, _ := zstd.NewWriter(&other, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithNoEntropyCompression(true))
	zw.Write(nar)
	zw.Close()
	if err := os.WriteFile(filepath.Join(tg.dir, filepath.FromSlash(url)), other.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if ns, s, b := tg.push(t, upload{path: p, contents: contents, signers: []member{alice}, byNarHash: true}); ns != 200 || s != 200 {
		t.Fatalf("NAR %d, narinfo %d: %s", ns, s, b)
	}
	ni, ok := tg.served(t, p)
	if !ok {
		t.Fatal("not served")
	}
	if _, got := tg.do(t, "GET", "/"+url, nil); got != other.String() || ni.FileSize != uint64(other.Len()) {
		t.Fatalf("served %d bytes with FileSize %d; the file there first has %d", len(got), ni.FileSize, other.Len())
	}
	if len(compress(t, nar, "zstd")) == other.Len() {
		t.Fatal("the two encodings have one size: the test shows nothing")
	}
}
