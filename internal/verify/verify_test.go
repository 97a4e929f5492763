package verify

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/storepath"
)

// outcome is what a run produced.
type outcome struct {
	sum      Summary
	results  map[string]*Result
	messages string
}

func (o outcome) code() int { return o.sum.ExitCode() }

func verifyStore(t *testing.T, st Store, o Options) outcome {
	t.Helper()
	o.Store = st
	var mu sync.Mutex
	var msgs []string
	o.Report = func(r *Result) {
		mu.Lock()
		defer mu.Unlock()
		msgs = append(msgs, r.Problems...)
	}
	sum, res := Run(context.Background(), o)
	out := outcome{sum: sum, results: map[string]*Result{}, messages: strings.Join(msgs, "\n")}
	for _, r := range res {
		out.results[r.Path] = r
	}
	return out
}

// testTarget is the machine the tests verify for; their certificates name "*".
const testTarget = "test-host"

// policy loads a trust policy, failing the test on any problem. Tests that give no
// CRL and no gate check revocation elsewhere, so they pass NoCRL as a user would.
func policy(t *testing.T, cfg PolicyConfig) *Policy {
	t.Helper()
	if cfg.Target == "" {
		cfg.Target = testTarget
	}
	if len(cfg.CRLs) == 0 && cfg.Gate == "" {
		cfg.NoCRL = true
	}
	return LoadPolicy(cfg, func(err error) { t.Fatalf("policy: %v", err) }, func(err error) { t.Logf("policy: warning: %v", err) })
}

func openLocal(t *testing.T, root string) *LocalStore {
	t.Helper()
	st := OpenLocalStore(context.Background(), root)
	t.Cleanup(func() { st.Close() })
	return st
}

// nixVerify runs nix store verify and returns its exit status.
func (n *nixT) nixVerify(store string, trusted []string, extra ...string) int {
	n.t.Helper()
	var keys []string
	for _, f := range trusted {
		b, err := os.ReadFile(f)
		if err != nil {
			n.t.Fatal(err)
		}
		keys = append(keys, string(b))
	}
	args := []string{"nix", "store", "verify", "--option", "trusted-public-keys", strings.Join(keys, " ")}
	if store != "" {
		args = append(args, "--store", store)
	}
	_, _, code := n.Run(append(args, extra...)...)
	return code
}

func wantCode(t *testing.T, o outcome, want int) {
	t.Helper()
	if o.code() != want {
		t.Fatalf("exit status %d, want %d; summary %+v; messages:\n%s", o.code(), want, o.sum, o.messages)
	}
}

func wantMessage(t *testing.T, o outcome, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(o.messages, "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return
		}
	}
	t.Fatalf("no message contains all of %q; messages:\n%s", parts, o.messages)
}

// fixture is what most tests start from: a real CA, a closure built by Nix, and
// alice's key, certified.
type fixture struct {
	n                                         *nixT
	c                                         *testCA
	top, aliceSec, alicePub, aliceCrt, serial string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{n: newNixT(t), c: newTestCA(t)}
	f.top = f.n.buildClosure()
	_, f.aliceSec, f.alicePub = f.n.key("alice-1")
	f.aliceCrt, f.serial = f.c.certify(f.alicePub, "alice", "any", 0)
	return f
}

// TestLocalStore checks what a member relies on, on a chroot store that real Nix
// filled: a signed closure verifies; --sigs-needed 2 with one signer fails;
// identities are counted once per subject; an uncertified or revoked key is
// untrusted; a changed byte is corrupt. Each verdict is compared with
// nix store verify's on the same store.
func TestLocalStore(t *testing.T) {
	t.Run("crypto/sha256", func(t *testing.T) {
		t.Setenv(SHA256Env, "generic")
		testLocalStore(t)
	})
	t.Run("multi-buffer", func(t *testing.T) {
		// Forced: on a CPU without AVX-512 the lanes run sha256x16's portable kernel.
		t.Setenv(SHA256Env, "multi-buffer")
		testLocalStore(t)
	})
}

func testLocalStore(t *testing.T) {
	f := newFixture(t)
	n, c, top, alicePub, aliceCrt, aliceSerial := f.n, f.c, f.top, f.alicePub, f.aliceCrt, f.serial
	_, root := n.signedStores(top, f.aliceSec, alicePub)
	closure := n.closurePaths(root, top)
	if len(closure) != 4 {
		t.Fatalf("closure of %s in %s has %d paths, want 4: %q", top, root, len(closure), closure)
	}
	st := openLocal(t, root)
	certified := policy(t, PolicyConfig{Root: c.root, Certs: []string{aliceCrt}})
	run := func(p *Policy, sigs int, args ...string) outcome {
		return verifyStore(t, st, Options{Args: args, Recursive: true, SigsNeeded: sigs, Policy: p})
	}
	nixRun := func(sigs string, trusted ...string) int {
		return n.nixVerify(root, trusted, "-r", "--sigs-needed", sigs, top)
	}

	t.Run("certified signer verifies", func(t *testing.T) {
		o := run(certified, 0, top)
		wantCode(t, o, 0)
		if o.sum.Paths != 4 || o.sum.OK != 4 || o.sum.Bytes == 0 {
			t.Fatalf("summary %+v", o.sum)
		}
		for _, p := range closure {
			r := o.results[p]
			if r == nil || !r.OK || len(r.Signers) != 1 || r.Signers[0].Identity != "alice" || r.Signers[0].Via != "certificate" || r.Signers[0].Serial != aliceSerial {
				t.Fatalf("%s: %+v", p, r)
			}
		}
		if code := nixRun("1", alicePub); code != 0 {
			t.Fatalf("nix store verify says %d", code)
		}
		// The same through a symlink to the path and with the real location.
		link := filepath.Join(n.Dir, "result")
		os.Symlink(root+top, link)
		wantCode(t, run(certified, 1, link, root+top+"/"), 0)
	})

	t.Run("sigs-needed 2 with one signer", func(t *testing.T) {
		o := run(certified, 2, top)
		wantCode(t, o, ExitUntrusted)
		if o.sum.Untrusted != 4 {
			t.Fatalf("summary %+v", o.sum)
		}
		wantMessage(t, o, top, "is untrusted: 1 of 2 required signatures (signed by alice)")
		if code := nixRun("2", alicePub); code != ExitUntrusted {
			t.Fatalf("nix store verify says %d", code)
		}
	})

	t.Run("distinct identities", func(t *testing.T) {
		// A second key of alice's adds a signature but not an identity.
		_, alice2Sec, alice2Pub := n.key("alice-2")
		alice2Crt, _ := c.certify(alice2Pub, "alice", "any", 0)
		n.Must("nix", "store", "sign", "--store", root, "-k", alice2Sec, "-r", top)
		p := policy(t, PolicyConfig{Root: c.root, Certs: []string{aliceCrt, alice2Crt}})
		o := run(p, 2, top)
		wantCode(t, o, ExitUntrusted)
		wantMessage(t, o, "1 of 2 required signatures (signed by alice)")
		if code := nixRun("2", alicePub, alice2Pub); code != 0 {
			t.Fatalf("nix store verify (which counts keys, not identities) says %d", code)
		}
		// Bob's signature is a second identity.
		_, bobSec, bobPub := n.key("bob-1")
		bobCrt, _ := c.certify(bobPub, "bob", "any", 0)
		n.Must("nix", "store", "sign", "--store", root, "-k", bobSec, "-r", top)
		p = policy(t, PolicyConfig{Root: c.root, Certs: []string{filepath.Dir(aliceCrt)}}) // a directory of chains
		if p.Certificates() != 3 || p.certs["bob-1"] == nil {
			t.Fatalf("loaded %d certificates from %s", p.Certificates(), filepath.Dir(bobCrt))
		}
		o = run(p, 2, top)
		wantCode(t, o, 0)
		if got := identities(o.results[top].Signers); got != 2 {
			t.Fatalf("%d identities: %+v", got, o.results[top].Signers)
		}
	})

	t.Run("uncertified key", func(t *testing.T) {
		o := run(&Policy{}, 0, top)
		wantCode(t, o, ExitUntrusted)
		wantMessage(t, o, top, "0 of 1 required signatures", "alice-1: no trusted key or certificate for this key name")
		if code := nixRun("1"); code != ExitUntrusted {
			t.Fatalf("nix store verify says %d", code)
		}
		// A certificate of another CA does not count either.
		other := newTestCA(t)
		p := policy(t, PolicyConfig{Root: other.root, Certs: []string{aliceCrt}})
		o = run(p, 0, top)
		wantCode(t, o, ExitUntrusted)
		wantMessage(t, o, "does not chain to the root")
	})

	t.Run("plain trusted key", func(t *testing.T) {
		text, _ := os.ReadFile(alicePub)
		for _, k := range []string{alicePub, string(text)} {
			o := run(policy(t, PolicyConfig{TrustedKeys: []string{k}}), 1, top)
			wantCode(t, o, 0)
			if s := o.results[top].Signers; len(s) == 0 || s[0].Via != "trusted-key" || s[0].Identity != "alice-1" {
				t.Fatalf("signers %+v", s)
			}
		}
	})

	t.Run("revoked certificate", func(t *testing.T) {
		crl := c.revoke(aliceSerial)
		p := policy(t, PolicyConfig{Root: c.root, Certs: []string{aliceCrt}, CRLs: []string{crl}})
		o := run(p, 0, top)
		wantCode(t, o, ExitUntrusted)
		wantMessage(t, o, top, "0 of 1 required signatures", "alice-1: certificate "+aliceSerial+" of alice revoked at ")
	})

	t.Run("changed byte is corrupt", func(t *testing.T) {
		var tree string
		for _, p := range closure {
			if strings.HasSuffix(p, "-tree") {
				tree = p
			}
		}
		blob := filepath.Join(root, tree, "share", "blob")
		data, err := os.ReadFile(blob)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 1
		os.Chmod(blob, 0o644)
		if err := os.WriteFile(blob, data, 0o444); err != nil {
			t.Fatal(err)
		}
		alicePlain := policy(t, PolicyConfig{TrustedKeys: []string{alicePub}})
		o := run(alicePlain, 0, top)
		wantCode(t, o, ExitCorrupt)
		if o.sum.Corrupt != 1 || !o.results[tree].Corrupt || o.results[top].Corrupt {
			t.Fatalf("summary %+v", o.sum)
		}
		wantMessage(t, o, "path '"+tree+"' was modified! expected hash 'sha256:")
		if code := nixRun("1", alicePub); code != ExitCorrupt {
			t.Fatalf("nix store verify says %d", code)
		}
		// Without contents, nothing is noticed.
		o = verifyStore(t, st, Options{Args: []string{top}, Recursive: true, NoContents: true, Policy: alicePlain})
		wantCode(t, o, 0)
	})
}

// TestBinaryCache verifies the same closure in binary caches that real Nix wrote,
// over file:// and http://, with every compression Nix 2.8 writes by default or on
// request; a damaged NAR is corrupt; --no-contents needs no NARs.
func TestBinaryCache(t *testing.T) {
	f := newFixture(t)
	n, top, aliceSec := f.n, f.top, f.aliceSec
	cacheDir, _ := n.signedStores(top, aliceSec, f.alicePub)
	p := policy(t, PolicyConfig{Root: f.c.root, Certs: []string{f.aliceCrt}})
	ctx := context.Background()
	check := func(t *testing.T, url string, o Options, want int) outcome {
		t.Helper()
		st, err := OpenCache(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		o.Args, o.Recursive, o.Policy = []string{top}, true, p
		out := verifyStore(t, st, o)
		wantCode(t, out, want)
		if want == 0 && out.sum.OK != 4 {
			t.Fatalf("summary %+v", out.sum)
		}
		return out
	}

	t.Run("file", func(t *testing.T) { check(t, "file://"+cacheDir, Options{}, 0) })
	t.Run("http", func(t *testing.T) {
		srv := httptest.NewServer(http.FileServer(http.Dir(cacheDir)))
		defer srv.Close()
		check(t, srv.URL, Options{}, 0)
		check(t, srv.URL+"/", Options{SigsNeeded: 2}, ExitUntrusted)
	})
	for _, comp := range []string{"xz", "zstd", "bzip2"} {
		t.Run(comp, func(t *testing.T) {
			dir := n.Path("cache-" + comp)
			n.Must("nix", "copy", "--to", "file://"+dir+"?compression="+comp+"&secret-key="+aliceSec, top)
			check(t, "file://"+dir, Options{}, 0)
		})
	}
	t.Run("damaged NAR", func(t *testing.T) {
		info, err := os.ReadFile(filepath.Join(cacheDir, storepath.HashPart(top)+".narinfo"))
		if err != nil {
			t.Fatal(err)
		}
		ni, err := narinfo.Parse(strings.NewReader(string(info)), storepath.DefaultStoreDir)
		if err != nil {
			t.Fatal(err)
		}
		nar := filepath.Join(cacheDir, ni.URL)
		orig, _ := os.ReadFile(nar)
		bad := slices.Clone(orig)
		bad[len(bad)-20] ^= 0x20 // inside the file's contents
		os.WriteFile(nar, bad, 0o644)
		o := check(t, "file://"+cacheDir, Options{}, ExitCorrupt)
		wantMessage(t, o, "path '"+top+"' was modified!")
		os.WriteFile(nar, bad[:len(bad)-9], 0o644) // truncated
		o = check(t, "file://"+cacheDir, Options{}, ExitCorrupt)
		wantMessage(t, o, "path '"+top+"' is corrupt: its NAR", "truncated")
		os.Remove(nar)
		o = check(t, "file://"+cacheDir, Options{}, ExitError)
		wantMessage(t, o, "is missing from the cache")
		check(t, "file://"+cacheDir, Options{NoContents: true}, 0)
		os.WriteFile(nar, orig, 0o644)
	})
}

// TestBadInput: missing paths, an unreadable database, a malformed signature and a
// malformed certificate are reported, the run goes on, and bit 4 is set.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	c, top, aliceCrt := f.c, f.top, f.aliceCrt
	_, root := f.n.signedStores(top, f.aliceSec, f.alicePub)
	p := policy(t, PolicyConfig{Root: c.root, Certs: []string{aliceCrt}})
	missing := storepath.DefaultStoreDir + "/00000000000000000000000000000000-missing"

	t.Run("missing path", func(t *testing.T) {
		o := verifyStore(t, openLocal(t, root), Options{Args: []string{missing, "/etc/passwd", top}, Policy: p})
		wantCode(t, o, ExitError)
		wantMessage(t, o, "path '"+missing+"' is not valid")
		wantMessage(t, o, "'/etc/passwd' is not a path in the Nix store")
		if !o.results[top].OK || o.sum.Failed != 2 {
			t.Fatalf("summary %+v", o.sum)
		}
	})

	t.Run("unreadable database", func(t *testing.T) {
		bad := t.TempDir()
		db := filepath.Join(bad, DBPath)
		os.MkdirAll(filepath.Dir(db), 0o755)
		os.WriteFile(db, []byte("this is not an SQLite database, it only has the name of one"), 0o644)
		for _, r := range []string{bad, filepath.Join(bad, "nonexistent")} {
			o := verifyStore(t, openLocal(t, r), Options{Args: []string{top, missing}, Policy: p})
			wantCode(t, o, ExitError)
			if o.sum.Failed != 2 {
				t.Fatalf("summary %+v", o.sum)
			}
			wantMessage(t, o, "Nix database")
		}
	})

	t.Run("malformed signature", func(t *testing.T) {
		db, err := sql.Open("sqlite", filepath.Join(root, DBPath))
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.Exec("UPDATE ValidPaths SET sigs = sigs || ' alice-1:not!base64 :nameless' WHERE path = ?", top)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		o := verifyStore(t, openLocal(t, root), Options{Args: []string{top}, Recursive: true, Policy: p})
		wantCode(t, o, ExitError)
		wantMessage(t, o, "path '"+top+"' has a malformed signature \"alice-1:not!base64\"")
		wantMessage(t, o, "has a malformed signature \":nameless\"")
		r := o.results[top]
		if !r.Trusted || r.OK || !r.Error || o.sum.OK != 3 {
			t.Fatalf("%+v, summary %+v", r, o.sum)
		}
	})

	t.Run("malformed certificate", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "garbage.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "root.crt"), mustRead(t, c.root), 0o644) // a CA certificate, not a Nix one
		os.WriteFile(filepath.Join(dir, "README"), []byte("not read"), 0o644)
		b, _ := os.ReadFile(aliceCrt)
		os.WriteFile(filepath.Join(dir, "alice.crt"), b, 0o644)
		var problems []string
		pol := LoadPolicy(PolicyConfig{Root: c.root, Certs: []string{dir, filepath.Join(dir, "nope.pem")}},
			func(err error) { problems = append(problems, err.Error()) }, func(error) {})
		if len(problems) != 3 || pol.Certificates() != 1 {
			t.Fatalf("%d certificates, problems %q", pol.Certificates(), problems)
		}
		for i, want := range []string{"garbage.pem", "root.crt: not a Nix signing certificate", "nope.pem: no such file"} {
			if !strings.Contains(problems[i], want) {
				t.Errorf("problem %q does not mention %q", problems[i], want)
			}
		}
	})
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDefaultStore reads the machine's own store (Nix's database in WAL mode, in
// use by other tests) and content-addressed paths of every kind, which are
// trusted by themselves; locally built paths pass only without --sigs-needed. The
// verdicts match nix store verify's.
func TestDefaultStore(t *testing.T) {
	n := newNixT(t)
	top := n.buildClosure()
	drv := strings.TrimSpace(n.Must("nix-store", "-q", "--deriver", top))
	file := n.write("ca-file", "content-addressed "+top+"\n", 0o644)
	os.MkdirAll(n.Path("ca-dir/sub"), 0o755)
	os.WriteFile(n.Path("ca-dir/sub/x"), []byte(top), 0o755)
	caPaths := []string{
		drv, // text:sha256
		strings.TrimSpace(n.Must("nix-store", "--add", file)),                                            // fixed:r:sha256
		strings.TrimSpace(n.Must("nix-store", "--add-fixed", "sha1", file)),                              // fixed:sha1
		strings.TrimSpace(n.Must("nix-store", "--add-fixed", "--recursive", "sha512", n.Path("ca-dir"))), // fixed:r:sha512
	}
	st := openLocal(t, "/")
	all := append([]string{top}, caPaths...)
	o := verifyStore(t, st, Options{Args: all})
	wantCode(t, o, 0)
	for _, p := range caPaths {
		if r := o.results[p]; !r.ContentAddressed || !r.OK {
			t.Fatalf("%s: %+v", p, r)
		}
	}
	if r := o.results[top]; !r.Ultimate || !r.OK {
		t.Fatalf("%s: %+v", top, r)
	}
	if code := n.nixVerify("", nil, all...); code != 0 {
		t.Fatalf("nix store verify says %d", code)
	}
	o = verifyStore(t, st, Options{Args: all, SigsNeeded: 2})
	wantCode(t, o, ExitUntrusted)
	if o.sum.Untrusted != 1 || o.results[top].Trusted {
		t.Fatalf("summary %+v", o.sum)
	}
	wantMessage(t, o, top, "0 of 2 required signatures (no signatures; built locally, which counts only without --sigs-needed)")
	if code := n.nixVerify("", nil, append([]string{"--sigs-needed", "2"}, all...)...); code != ExitUntrusted {
		t.Fatalf("nix store verify says %d", code)
	}
	for _, p := range caPaths[1:] { // (nix store verify X.drv checks X's outputs)
		if code := n.nixVerify("", nil, "--sigs-needed", "2", p); code != 0 {
			t.Fatalf("nix store verify %s says %d", p, code)
		}
	}

	// A flat content-addressed path whose file and recorded NAR hash were both
	// changed (as by someone with write access to the store and its database) no
	// longer matches its content address.
	root := n.Path("castore")
	n.Must("nix", "copy", "--no-check-sigs", "--to", root, caPaths[2], caPaths[3])
	for _, p := range caPaths[2:] {
		fsPath := filepath.Join(root, p)
		if p == caPaths[3] {
			fsPath = filepath.Join(fsPath, "sub", "x")
		}
		os.Chmod(fsPath, 0o755)
		if err := os.WriteFile(fsPath, []byte("changed"), 0o755); err != nil {
			t.Fatal(err)
		}
		sum, size, err := nar.HashPath(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		db, _ := sql.Open("sqlite", filepath.Join(root, DBPath))
		if _, err := db.Exec("UPDATE ValidPaths SET hash = ?, narSize = ? WHERE path = ?", nixhash.FormatSHA256(sum), size, p); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	o = verifyStore(t, openLocal(t, root), Options{Args: caPaths[2:]})
	wantCode(t, o, ExitCorrupt)
	wantMessage(t, o, "path '"+caPaths[2]+"' does not match its content address 'fixed:sha1:", "its file hashes to")
	wantMessage(t, o, "path '"+caPaths[3]+"' does not match its content address 'fixed:r:sha512:", "its NAR hashes to")
}
