package gate

import (
	"strings"
	"testing"

	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/nixcert"
)

// A reference counts only under its full base name, not its hash part alone.
func TestReferenceMatchesFullName(t *testing.T) {
	tg := newTestGate(t, nil)
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	glibc := storePath("glibc-2.40")
	if _, s, b := tg.push(t, upload{path: glibc, contents: "glibc", signers: []member{alice}}); s != 200 {
		t.Fatalf("glibc: %d %s", s, b)
	}
	// Same hash part, another name.
	other := glibc[:strings.LastIndexByte(glibc, '/')+1+32] + "-evil"
	app := storePath("app")
	if _, s, b := tg.push(t, upload{path: app, contents: "app", refs: []string{other}, signers: []member{alice}}); s != 400 || !strings.Contains(b, "are not in the gate") || !strings.Contains(b, "-evil") {
		t.Fatalf("reference by hash part only: %d %s", s, b)
	}
	if _, ok := tg.served(t, app); ok {
		t.Fatal("a path with a misnamed reference was admitted")
	}
	if _, s, b := tg.push(t, upload{path: app, contents: "app", refs: []string{glibc}, signers: []member{alice}}); s != 200 {
		t.Fatalf("reference by its full name: %d %s", s, b)
	}
}

// A threshold holds for the whole closure: a path needing two identities waits while
// any path in its closure (direct or deeper) has fewer, and is admitted once the
// second identity's signature is added to that path.
func TestThresholdCoversClosure(t *testing.T) {
	tg := newTestGate(t, func(c *Config) { c.Thresholds = []Threshold{{Pattern: "*-nixos-system-*", SigsNeeded: 2}} })
	p := tg.pki
	alice := p.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	bob := p.member(t, "bob-1", "bob", []string{"host-*"}, scopeAny, nil)
	tg.enroll(t, alice)
	tg.enroll(t, bob)
	glibc := storePath("glibc-2.40") // pre-pushed by alice alone
	bash := storePath("bash-5.2")    // references glibc, both sign it
	sys := storePath("nixos-system-host-25.05")
	base := func(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }
	glibcUp := upload{path: glibc, contents: "glibc", signers: []member{alice}}
	if _, s, b := tg.push(t, glibcUp); s != 200 {
		t.Fatalf("glibc: %d %s", s, b)
	}
	if _, s, b := tg.push(t, upload{path: bash, contents: "bash", refs: []string{glibc}, signers: []member{alice, bob}}); s != 200 {
		t.Fatalf("bash: %d %s", s, b)
	}
	// Direct reference short of signers.
	direct := storePath("nixos-system-direct-25.05")
	if _, s, b := tg.push(t, upload{path: direct, contents: "direct", refs: []string{glibc}, signers: []member{alice, bob}}); s != 403 ||
		!strings.Contains(b, "waiting for its references "+base(glibc)+" (admitted with 1 of the 2") {
		t.Fatalf("system over a one-signer reference: %d %s", s, b)
	}
	// Deeper in the closure.
	if _, s, b := tg.push(t, upload{path: sys, contents: "sys", refs: []string{bash}, signers: []member{alice, bob}}); s != 403 ||
		!strings.Contains(b, base(glibc)+" (admitted with 1 of the 2") || !strings.Contains(b, "in the closure of "+base(bash)) {
		t.Fatalf("system over a one-signer path deeper in its closure: %d %s", s, b)
	}
	for _, p := range []string{sys, direct} {
		if _, ok := tg.served(t, p); ok {
			t.Fatalf("%s admitted over a reference with one signer", p)
		}
	}
	// Bob signs glibc (same content): his signature is recorded and the waiting
	// systems are admitted.
	glibcUp.signers = []member{bob}
	if _, s, b := tg.push(t, glibcUp); s != 200 || !strings.Contains(b, "added signatures of bob") {
		t.Fatalf("bob's signature on admitted glibc: %d %s", s, b)
	}
	ni, _ := tg.served(t, glibc)
	if len(ni.Sigs) != 3 {
		t.Errorf("glibc served with %d signatures, want alice, bob and the gate", len(ni.Sigs))
	}
	for _, p := range []string{sys, direct} {
		if _, ok := tg.served(t, p); !ok {
			t.Errorf("%s not admitted once its closure has two signers", p)
		}
	}
}

// A flat fixed-output path whose file was swapped does not count as
// content-addressed: a content-addressed-only certificate cannot get it admitted
// (nor block the genuine file).
func TestCAContentChecked(t *testing.T) {
	tg := newTestGate(t, nil)
	dave := tg.pki.member(t, "dave-1", "dave", []string{"host-a"}, nixcert.Scope{ContentAddressedOnly: true}, nil)
	tg.enroll(t, dave)
	genuine := "the genuine source tarball"
	for _, algo := range []string{"sha256", "sha512"} {
		h, _ := nixhash.New(algo)
		h.Write([]byte(genuine))
		ca := contentaddress.ContentAddress{Method: contentaddress.FixedFlat, Algo: algo, Digest: h.Sum(nil)}
		path, err := contentaddress.StorePath(storepath.DefaultStoreDir, "src-"+algo+".tar.gz", ca, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		setCA := func(ni *narinfo.NarInfo) { ni.CA = ca.String() }
		_, s, b := tg.push(t, upload{path: path, contents: "swapped bytes", signers: []member{dave}, mutate: setCA})
		if s != 403 || !strings.Contains(b, "does not match its CA field") || !strings.Contains(b, "counts as input-addressed") ||
			!strings.Contains(b, "does not allow an input-addressed path") {
			t.Fatalf("%s: swapped file: %d %s", algo, s, b)
		}
		if _, ok := tg.served(t, path); ok {
			t.Fatal("a swapped flat fixed-output path was admitted")
		}
		if _, s, b := tg.push(t, upload{path: path, contents: genuine, signers: []member{dave}, mutate: setCA}); s != 200 {
			t.Fatalf("%s: genuine file: %d %s", algo, s, b)
		}
	}
}

// Content addresses with hashes that are not collision-resistant (MD5, SHA-1) do not
// make a path content-addressed: whoever chooses the content can make two files of
// one digest, so a content-addressed-only certificate cannot get even the file it
// names admitted, and the reason says why.
func TestCAWeakHashIsInputAddressed(t *testing.T) {
	tg := newTestGate(t, nil)
	dave := tg.pki.member(t, "dave-1", "dave", []string{"host-a"}, nixcert.Scope{ContentAddressedOnly: true}, nil)
	tg.enroll(t, dave)
	genuine := "the genuine source tarball"
	for _, m := range []contentaddress.Method{contentaddress.FixedFlat, contentaddress.FixedRecursive} {
		for _, algo := range []string{"md5", "sha1"} {
			h, _ := nixhash.New(algo)
			if m == contentaddress.FixedFlat {
				h.Write([]byte(genuine))
			} else {
				h.Write(makeNAR(t, genuine))
			}
			ca := contentaddress.ContentAddress{Method: m, Algo: algo, Digest: h.Sum(nil)}
			path, err := contentaddress.StorePath(storepath.DefaultStoreDir, "src-"+algo+".tar.gz", ca, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, s, b := tg.push(t, upload{path: path, contents: genuine, signers: []member{dave}, mutate: func(ni *narinfo.NarInfo) { ni.CA = ca.String() }})
			if s != 403 || !strings.Contains(b, "uses "+algo+", which is not collision-resistant") || !strings.Contains(b, "does not allow an input-addressed path") {
				t.Fatalf("%s: %d %s", ca, s, b)
			}
			if _, ok := tg.served(t, path); ok {
				t.Fatalf("%s: admitted on a content-addressed-only certificate", ca)
			}
		}
	}
}
