package verify

// Tests of the trust rules and the reporting without Nix: an in-memory store whose
// records are signed here with nixkey.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"nixpki/internal/nix/base32"
	"nixpki/internal/nix/localstore"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
)

// memStore holds records and, for each, the NAR hash its contents have.
type memStore struct {
	infos    map[string]*PathInfo
	contents map[string][32]byte
}

func (m *memStore) StoreDir() string { return storepath.DefaultStoreDir }
func (m *memStore) String() string   { return "memory" }
func (m *memStore) Close() error     { return nil }
func (m *memStore) Resolve(arg string) (string, error) {
	return localstore.ResolveArg(arg, m.StoreDir(), m.StoreDir())
}
func (m *memStore) Info(_ context.Context, p string) (*PathInfo, error) {
	if pi, ok := m.infos[p]; ok {
		return pi, nil
	}
	return nil, fmt.Errorf("path '%s' %w", p, ErrNotValid)
}
func (m *memStore) Contents(_ context.Context, pi *PathInfo, _ *caHash) ([32]byte, uint64, error) {
	return m.contents[pi.Path], pi.NarSize, nil
}

func storePathOf(name string) string {
	h := sha256.Sum256([]byte(name))
	return storepath.DefaultStoreDir + "/" + base32.Encode(h[:20]) + "-" + name
}

// add records a path signed by keys; its contents match unless corrupt.
func (m *memStore) add(t *testing.T, name string, refs []string, ultimate, corrupt bool, keys ...signing.SecretKey) string {
	t.Helper()
	p := storePathOf(name)
	pi := &PathInfo{Path: p, NarHash: sha256.Sum256([]byte(p)), NarSize: 100, References: refs, Ultimate: ultimate}
	fp, err := pi.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		pi.Sigs = append(pi.Sigs, k.Sign(fp))
	}
	m.infos[p], m.contents[p] = pi, pi.NarHash
	if corrupt {
		m.contents[p] = sha256.Sum256([]byte("other"))
	}
	return p
}

func TestTrustRules(t *testing.T) {
	c := newTestCA(t)
	dir := t.TempDir()
	mk := func(name string) (signing.SecretKey, string) {
		k, _ := signing.GenerateKey(name)
		pub := filepath.Join(dir, name+".pub")
		os.WriteFile(pub, []byte(k.Public().String()), 0o644)
		return k, pub
	}
	alice1, alice1Pub := mk("alice-1")
	alice2, alice2Pub := mk("alice-2")
	bob, bobPub := mk("bob-1")
	carol, carolPub := mk("carol-1")
	mallory, _ := mk("mallory-1")
	a1, _ := c.certify(alice1Pub, "alice", "any", 0)
	a2, _ := c.certify(alice2Pub, "alice", "any", 0)
	b, _ := c.certify(bobPub, "bob", "myapp-*", 0)
	pol := policy(t, PolicyConfig{Root: c.root, Certs: []string{a1, a2, b}, TrustedKeys: []string{carolPub}})

	m := &memStore{infos: map[string]*PathInfo{}, contents: map[string][32]byte{}}
	dep := m.add(t, "dep", nil, false, false, alice1)
	twoOfAlice := m.add(t, "two-of-alice", []string{dep}, false, false, alice1, alice2)
	aliceBob := m.add(t, "myapp-1.0", []string{dep}, false, false, alice1, bob)
	bobOutOfScope := m.add(t, "other-1.0", nil, false, false, bob)
	aliceCarol := m.add(t, "alice-carol", nil, false, false, alice1, carol)
	local := m.add(t, "local", nil, true, false)
	unknown := m.add(t, "unknown", nil, false, false, mallory)
	corrupt := m.add(t, "corrupt", nil, false, true, alice1)
	top := m.add(t, "top", []string{twoOfAlice, aliceBob, bobOutOfScope, aliceCarol, local, unknown, corrupt}, false, false, alice1)

	run := func(sigs int) outcome {
		return verifyStore(t, m, Options{Args: []string{top}, Recursive: true, SigsNeeded: sigs, Policy: pol})
	}
	o := run(0)
	if o.sum.Paths != 9 || o.code() != ExitCorrupt|ExitUntrusted {
		t.Fatalf("exit %d, %+v\n%s", o.code(), o.sum, o.messages)
	}
	for p, want := range map[string]bool{dep: true, twoOfAlice: true, aliceBob: true, bobOutOfScope: false, aliceCarol: true, local: true, unknown: false, corrupt: true} {
		if r := o.results[p]; r.Trusted != want {
			t.Errorf("%s: trusted %v, want %v: %+v", p, r.Trusted, want, r)
		}
	}
	wantMessage(t, o, bobOutOfScope, `bob-1: certificate `, `of bob: its scope "myapp-*" does not cover this path`)
	wantMessage(t, o, unknown, "mallory-1: no trusted key or certificate for this key name")
	wantMessage(t, o, "path '"+corrupt+"' was modified! expected hash 'sha256:")

	o = run(2)
	for p, want := range map[string]bool{twoOfAlice: false, aliceBob: true, aliceCarol: true, local: false, dep: false} {
		if r := o.results[p]; r.Trusted != want {
			t.Errorf("--sigs-needed 2: %s: trusted %v, want %v: %+v", p, r.Trusted, want, r)
		}
	}
	wantMessage(t, o, twoOfAlice, "1 of 2 required signatures (signed by alice)")

	// A certificate's key must have made the signature: alice-1's certificate does
	// not cover a signature by another key that took the name alice-1.
	impostor, _ := signing.GenerateKey("alice-1")
	fake := m.add(t, "fake", nil, false, false, impostor)
	o = verifyStore(t, m, Options{Args: []string{fake}, Policy: pol})
	wantMessage(t, o, "alice-1: does not verify with the key of certificate")
}

func TestExitCodeAndSummary(t *testing.T) {
	var s Summary
	for _, r := range []*Result{
		{OK: true, Trusted: true, checked: true, NarSize: 10},
		{Corrupt: true, Trusted: true, checked: true},
		{checked: true},
		{Error: true}, // could not be read: not counted as untrusted
	} {
		s.Add(r)
	}
	if s.ExitCode() != 7 || s.Paths != 4 || s.OK != 1 || s.Corrupt != 1 || s.Untrusted != 1 || s.Failed != 1 || s.Bytes != 10 {
		t.Fatalf("%+v → %d", s, s.ExitCode())
	}
	if (Summary{}).ExitCode() != 0 {
		t.Fatal("empty summary fails")
	}
	var buf bytes.Buffer
	r := &Reporter{Stderr: &buf, JSON: &buf}
	r.Result(&Result{Path: "/nix/store/x", Problems: []string{"bad"}, Signers: []Signer{}})
	r.Summary(Summary{Paths: 1, Bytes: 3 << 30, Elapsed: 2 * time.Second, OK: 1})
	want := "bad\n{\"path\":\"/nix/store/x\",\"ok\":false,\"corrupt\":false,\"trusted\":false,\"error\":false,\"signers\":[],\"problems\":[\"bad\"]}\n" +
		"checked 1 path (3.0 GiB) in 2.00s, 1.5 GiB/s: 1 ok, 0 corrupt, 0 untrusted, 0 with errors\n"
	if buf.String() != want {
		t.Fatalf("got %q\nwant %q", buf.String(), want)
	}
}

func TestProgress(t *testing.T) {
	buf := &syncBuffer{}
	r := &Reporter{Stderr: buf, ProgressAfter: time.Millisecond, ProgressEvery: 5 * time.Millisecond}
	p := &Progress{}
	p.Paths.Store(4)
	p.Bytes.Store(4 << 20)
	p.DonePaths.Store(1)
	p.DoneBytes.Store(1 << 20)
	// waitFor waits (at most 10 s, for slow machines) until stderr shows want.
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(buf.String(), want); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in %q", want, buf.String())
			}
		}
	}
	r.StartProgress(p)
	waitFor("checked 1 of 4 paths, 1.0 MiB of 4.0 MiB (25%)")
	r.StopProgress()
	buf = &syncBuffer{}
	r = &Reporter{Stderr: buf, TTY: true}
	r.StartProgress(p)
	waitFor("\r\x1b[Kchecked 1 of 4 paths")
	r.Message("a problem")
	r.StopProgress()
	if s := buf.String(); !strings.Contains(s, "\r\x1b[Kchecked 1 of 4 paths") || !strings.Contains(s, "\r\x1b[Ka problem\n") {
		t.Fatalf("terminal progress: %q", s)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestCacheRefusals(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\nWantMassQuery: 1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("x"), 0o644)
	c, err := OpenCache(context.Background(), "file://"+dir+"?compression=xz", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"../secret", "/etc/passwd", "nar/../../secret", "http://elsewhere/x", ""} {
		_, _, err := c.Contents(context.Background(), &PathInfo{Path: storePathOf("x"), URL: rel, Compression: "none"}, nil)
		if err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("a NAR at %q: %v", rel, err)
		}
	}
	p := storePathOf("x")
	os.WriteFile(filepath.Join(dir, storepath.HashPart(p)+".narinfo"), []byte("StorePath: "+storePathOf("y")+"\nURL: nar/x.nar\nNarHash: sha256:1mipikk4wn2q5x555z8k48k2zb6vf5za8cy6i7wwh5cswyrcwpg8\nNarSize: 1\n"), 0o644)
	if _, err := c.Info(context.Background(), p); err == nil || !strings.Contains(err.Error(), "describes") {
		t.Errorf("narinfo of another path: %v", err)
	}
	if _, err := decompressor("br", strings.NewReader("")); err == nil || !strings.Contains(err.Error(), `"br"`) {
		t.Errorf("brotli: %v", err)
	}
	if _, err := OpenCache(context.Background(), "s3://bucket", nil); err == nil {
		t.Error("s3:// accepted")
	}
}

// TestCacheNARBounds: a cache's NAR is read no further than its narinfo says (its
// FileSize, its NarSize): a longer one is corrupt, not hashed to its end.
func TestCacheNARBounds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644)
	src := filepath.Join(t.TempDir(), "f")
	os.WriteFile(src, bytes.Repeat([]byte("a"), 1000), 0o644)
	var file bytes.Buffer
	if err := nar.DumpPath(&file, src); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "nar"), 0o755)
	os.WriteFile(filepath.Join(dir, "nar", "x.nar"), file.Bytes(), 0o644)
	c, err := OpenCache(ctx, "file://"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	size := uint64(file.Len())
	pi := &PathInfo{Path: storePathOf("x"), URL: "nar/x.nar", Compression: "none", NarSize: size, FileSize: size}
	if sum, n, err := c.Contents(ctx, pi, nil); err != nil || sum != sha256.Sum256(file.Bytes()) || n != size {
		t.Fatalf("Contents: %x %d %v", sum, n, err)
	}
	for _, tc := range []struct {
		narSize, fileSize uint64
		want              string
	}{
		{100, 0, "longer than its NarSize (100 bytes)"},
		{size, 100, "larger than the 100 bytes its narinfo gives"},
	} {
		pi.NarSize, pi.FileSize = tc.narSize, tc.fileSize
		if _, _, err := c.Contents(ctx, pi, nil); !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NarSize %d, FileSize %d: %v, want corrupt: %s", tc.narSize, tc.fileSize, err, tc.want)
		}
	}
}
