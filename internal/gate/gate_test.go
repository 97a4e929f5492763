package gate

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"nixpki/internal/nix/base32"
	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/nixcert"
	"nixpki/internal/tlog"
)

var scopeAny = nixcert.Scope{}

func TestAdmitEveryCompression(t *testing.T) {
	tg := newTestGate(t, nil)
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	gatePub := tg.Key.Public()
	for _, c := range []string{"none", "zstd", "xz", "bzip2"} {
		t.Run(c, func(t *testing.T) {
			dep := storePath("dep-" + c)
			if _, s, b := tg.push(t, upload{path: dep, contents: "dep " + c, compression: c, signers: []member{alice}}); s != 200 {
				t.Fatalf("dep: %d %s", s, b)
			}
			p := storePath("app-" + c)
			_, s, b := tg.push(t, upload{path: p, contents: strings.Repeat("app ", 5000), compression: c, refs: []string{dep}, signers: []member{alice}})
			if s != 200 || !strings.Contains(b, "admitted "+p) {
				t.Fatalf("app: %d %s", s, b)
			}
			ni, ok := tg.served(t, p)
			if !ok {
				t.Fatal("admitted path not served")
			}
			fp, _ := ni.Fingerprint()
			var gateOK, aliceOK bool
			for _, s := range ni.Sigs {
				gateOK = gateOK || gatePub.Verify(fp, s)
				aliceOK = aliceOK || alice.key.Public().Verify(fp, s)
			}
			if !gateOK || !aliceOK || ni.Compression != c {
				t.Fatalf("served narinfo lacks valid signatures or compression: %+v", ni)
			}
			s, nar := tg.do(t, "GET", "/"+ni.URL, nil)
			if s != 200 || sha256.Sum256([]byte(nar)) != *ni.FileHash || int64(len(nar)) != int64(ni.FileSize) {
				t.Fatalf("GET NAR: %d, %d bytes", s, len(nar))
			}
		})
	}
}

func TestRejectionsAdmitNothing(t *testing.T) {
	tg := newTestGate(t, func(c *Config) { c.MaxNARSize = 64 << 10 })
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	mallory := member{key: must(signing.GenerateKey("mallory-1"))}
	// A key named like alice's but another key: the signature does not verify.
	impostor := member{key: must(signing.GenerateKey("alice-1"))}

	cases := []struct {
		name   string
		up     upload
		status int
		want   string
	}{
		{"unknown key", upload{signers: []member{mallory}}, 403, "key mallory-1: unknown key"},
		{"no signature", upload{}, 403, "carries no signature"},
		{"wrong key under a certified name", upload{signers: []member{impostor}}, 403, "does not verify with any of its 1 certified keys"},
		{"NarHash lie", upload{signers: []member{alice}, mutate: func(ni *narinfo.NarInfo) { ni.NarHash[0] ^= 1 }}, 400, "the NAR does not match the narinfo"},
		{"NarSize lie", upload{signers: []member{alice}, mutate: func(ni *narinfo.NarInfo) { ni.NarSize++ }}, 400, "the NAR does not match the narinfo"},
		{"never uploaded NAR", upload{signers: []member{alice}, mutate: func(ni *narinfo.NarInfo) {
			ni.URL = "nar/" + strings.Repeat("0", 52) + ".nar.zst"
		}}, 400, "was never uploaded"},
		{"compression lie", upload{signers: []member{alice}, mutate: func(ni *narinfo.NarInfo) { ni.Compression = "xz"; ni.URL = strings.Replace(ni.URL, ".zst", ".xz", 1) }}, 400, "never uploaded"},
		{"missing reference", upload{signers: []member{alice}, refs: []string{storePath("absent")}}, 400, "are not in the gate"},
		{"too large", upload{signers: []member{alice}, contents: strings.Repeat("x", 70<<10)}, 413, "max_nar_size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.up.path = storePath("p")
			if c.up.contents == "" {
				c.up.contents = c.name
			}
			ns, s, b := tg.push(t, c.up)
			if ns == 200 {
				ns = s
			}
			if ns != c.status || !strings.Contains(b, c.want) || strings.Count(strings.TrimSpace(b), "\n") != 0 {
				t.Fatalf("got %d %q, want %d and one line with %q", ns, b, c.status, c.want)
			}
			if _, ok := tg.served(t, c.up.path); ok {
				t.Fatal("rejected path is served")
			}
		})
	}
	// Bad NAR uploads.
	nar := makeNAR(t, "x")
	sum := sha256.Sum256(nar)
	for name, c := range map[string]struct {
		url  string
		body []byte
		want string
	}{
		"name lies":        {binarycache.NARURL(sha256.Sum256([]byte("other")), "none"), nar, "but its name says"},
		"not a NAR":        {binarycache.NARURL(sha256.Sum256([]byte("junk")), "none"), []byte("junk"), "not a valid none-compressed NAR"},
		"truncated":        {binarycache.NARURL(sha256.Sum256(nar[:len(nar)-8]), "none"), nar[:len(nar)-8], "truncated"},
		"trailing data":    {binarycache.NARURL(sha256.Sum256(append(append([]byte{}, nar...), 0)), "none"), append(append([]byte{}, nar...), 0), "data after the end"},
		"bad extension":    {"nar/" + base32.Encode(sum[:]) + ".nar.lz4", nar, "the gate takes xz, zstd, bzip2 or no compression"},
		"zstd bomb header": {binarycache.NARURL(sha256.Sum256([]byte("x")), "zstd"), []byte("\x28\xb5\x2f\xfd\x00\x58"), "NAR"},
	} {
		s, b := tg.do(t, "PUT", "/"+c.url, c.body)
		if s/100 != 4 || !strings.Contains(b, c.want) {
			t.Errorf("%s: %d %q, want 4xx with %q", name, s, b, c.want)
		}
	}
	if s, b := tg.do(t, "PUT", "/nixpki/certs", []byte("junk")); s != 400 || !strings.Contains(b, "not PEM") {
		t.Errorf("junk certificate upload: %d %s", s, b)
	}
	// An xz stream declaring a dictionary beyond max_xz_dict.
	head, block, _ := xzParts(t, compress(t, nar, "xz"))
	big := append(bytes.Clone(head), withDict(t, block, 0x28)...)
	if s, b := tg.do(t, "PUT", "/"+binarycache.NARURL(sha256.Sum256(big), "xz"), big); s != 400 || !strings.Contains(b, "dictionary") {
		t.Errorf("xz with a 1 GiB dictionary: %d %s", s, b)
	}
	// Everything was logged, and the log verifies.
	v, err := VerifyLog(tg.dir)
	if err != nil {
		t.Fatal(err)
	}
	rej := 0
	for _, r := range v.Records {
		if r.Entry.Type == "rejection" {
			rej++
		}
		if r.Entry.Type == "admission" {
			t.Errorf("admission logged: %s", r.Raw)
		}
	}
	if rej < len(cases) {
		t.Errorf("%d rejections logged, want at least %d", rej, len(cases))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCertificateRules(t *testing.T) {
	tg := newTestGate(t, nil)
	p := tg.pki
	expired := p.member(t, "eve-1", "eve", []string{"host-a"}, scopeAny, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	})
	elsewhere := p.member(t, "carol-1", "carol", []string{"host-b", "lab-*"}, scopeAny, nil)
	caOnly := p.member(t, "dave-1", "dave", []string{"host-*"}, nixcert.Scope{ContentAddressedOnly: true}, nil)
	named := p.member(t, "erin-1", "erin", []string{"host-a"}, nixcert.Scope{NamePatterns: []string{"myapp-*"}}, func(c *x509.Certificate) {
		c.NotAfter = time.Now().Add(30 * 24 * time.Hour)
	})
	crl := p.crl(t, 1, time.Now().Add(-time.Minute))
	for _, c := range []struct {
		m    member
		want string
	}{{expired, "expired at"}, {elsewhere, `targets (host-b,lab-*) do not include this gate "host-a"`}} {
		m, want := c.m, c.want
		s, b := tg.do(t, "PUT", "/nixpki/certs", p.chainPEM(m, crl))
		if s != 403 || !strings.Contains(b, want) || !strings.Contains(b, "certificate kept") {
			t.Errorf("%s: %d %s", m.key.Name, s, b)
		}
	}
	tg.enroll(t, caOnly)
	tg.enroll(t, named)
	for _, c := range []struct {
		m    member
		name string
		want string
	}{
		{expired, "e", "key eve-1: nix certificate"},
		{elsewhere, "c", "do not include this gate"},
		{caOnly, "d", `scope "content-addressed" does not allow an input-addressed path`},
		{named, "other-1.0", `scope "myapp-*" does not allow`},
	} {
		_, s, b := tg.push(t, upload{path: storePath(c.name), contents: c.name, signers: []member{c.m}})
		if s != 403 || !strings.Contains(b, c.want) {
			t.Errorf("%s: %d %s, want %q", c.m.key.Name, s, b, c.want)
		}
	}
	if _, s, b := tg.push(t, upload{path: storePath("myapp-2.0"), contents: "m", signers: []member{named}}); s != 200 {
		t.Errorf("a path in scope: %d %s", s, b)
	}
	// A certificate that does not chain to the root is not kept.
	other := newPKI(t)
	stranger := other.member(t, "zed-1", "zed", []string{"host-a"}, scopeAny, nil)
	if s, b := tg.do(t, "PUT", "/nixpki/certs", other.chainPEM(stranger)); s != 400 || !strings.Contains(b, "refused") {
		t.Errorf("foreign chain: %d %s", s, b)
	}
	if len(tg.trust.certsFor("zed-1")) != 0 {
		t.Error("a foreign certificate was kept")
	}
	// A CRL older than max_crl_age fails closed.
	tg.Now = func() time.Time { return time.Now().Add(9 * 24 * time.Hour) }
	_, s, b := tg.push(t, upload{path: storePath("myapp-3.0"), contents: "m3", signers: []member{named}})
	if s != 403 || !strings.Contains(b, "more than max_crl_age") {
		t.Errorf("stale CRL: %d %s", s, b)
	}
}

func TestThresholdPendingAndQuarantine(t *testing.T) {
	tg := newTestGate(t, func(c *Config) { c.Thresholds = []Threshold{{Pattern: "*-sudo-*", SigsNeeded: 2}} })
	p := tg.pki
	alice := p.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	alice2 := p.member(t, "alice-2", "alice", []string{"host-a"}, scopeAny, nil)
	bob := p.member(t, "bob-1", "bob", []string{"host-*"}, scopeAny, nil)
	for _, m := range []member{alice, alice2, bob} {
		tg.enroll(t, m)
	}
	sudo := storePath("sudo-1.9")
	lib := storePath("libsudo-x") // needs 1
	up := upload{path: sudo, contents: "sudo", signers: []member{alice}}
	if _, s, b := tg.push(t, up); s != 403 || !strings.Contains(b, "has 1 of 2 signatures") || !strings.Contains(b, "pattern *-sudo-* needs 2") {
		t.Fatalf("one signature: %d %s", s, b)
	}
	if _, ok := tg.served(t, sudo); ok {
		t.Fatal("pending path served")
	}
	// A dependent waits for its reference; admitted when the reference is.
	app := storePath("app")
	if _, s, b := tg.push(t, upload{path: app, contents: "app", refs: []string{sudo}, signers: []member{alice}}); s != 403 || !strings.Contains(b, "waiting for its references") {
		t.Fatalf("dependent of a pending path: %d %s", s, b)
	}
	up.signers = []member{alice2}
	if _, s, b := tg.push(t, up); s != 403 || !strings.Contains(b, "has 1 of 2") {
		t.Fatalf("second key of the same subject: %d %s", s, b)
	}
	pend, _ := ListPending(tg.dir)
	if len(pend) != 2 {
		t.Fatalf("%d pending, want 2", len(pend))
	}
	up.signers = []member{bob}
	if _, s, b := tg.push(t, up); s != 200 {
		t.Fatalf("second identity: %d %s", s, b)
	}
	if _, ok := tg.served(t, app); !ok {
		t.Fatal("the dependent was not admitted with its reference")
	}
	ni, _ := tg.served(t, sudo)
	if len(ni.Sigs) != 3 {
		t.Errorf("served sudo has %d signatures, want alice, bob and the gate", len(ni.Sigs))
	}
	if _, s, _ := tg.push(t, upload{path: lib, contents: "lib", signers: []member{bob}}); s != 200 {
		t.Fatal("lib")
	}
	if _, s, b := tg.push(t, upload{path: sudo, contents: "other sudo", signers: []member{alice, bob}}); s != 409 {
		t.Errorf("other content for an admitted path: %d %s", s, b)
	}
	// Revoking bob quarantines sudo (alice alone is short), lib (bob only) and app,
	// whose reference sudo is withdrawn (its closure is no longer served whole).
	s, b := tg.do(t, "PUT", "/nixpki/crl", p.crl(t, time.Now().Unix()+1, time.Now(), bob.cert))
	if s != 200 || !strings.Contains(b, "3 paths quarantined") {
		t.Fatalf("CRL: %d %s", s, b)
	}
	for path, want := range map[string]bool{sudo: false, lib: false, app: false} {
		if _, ok := tg.served(t, path); ok != want {
			t.Errorf("%s served = %v after the CRL", path, ok)
		}
	}
	// Its NAR is no longer served either.
	if s, _ := tg.do(t, "GET", "/"+ni.URL, nil); s != 404 {
		t.Errorf("quarantined NAR: %d", s)
	}
	// An older CRL is ignored; a forged one refused.
	if s, b := tg.do(t, "PUT", "/nixpki/crl", p.crl(t, 1, time.Now().Add(-time.Hour))); s != 200 || !strings.Contains(b, "not newer") {
		t.Errorf("older CRL: %d %s", s, b)
	}
	if s, _ := tg.do(t, "PUT", "/nixpki/crl", newPKI(t).crl(t, 1<<40, time.Now())); s != 400 {
		t.Errorf("CRL of another CA accepted: %d", s)
	}
	evs, _, err := Audit(tg.dir, sudo)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, ","); got != "pending,admission,rejection,quarantine" {
		t.Errorf("audit of sudo: %s", got)
	}
}

// A crash leaves temporary uploads and NAR files without rows; they are removed on
// start, and nothing is served without a complete, verified NAR.
func TestRecoveryAfterCrash(t *testing.T) {
	tg := newTestGate(t, nil)
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	p := storePath("x")
	if _, s, _ := tg.push(t, upload{path: p, contents: "x", signers: []member{alice}}); s != 200 {
		t.Fatal("push")
	}
	orphan := filepath.Join(tg.dir, NARDir, strings.Repeat("1", 52)+".nar")
	os.WriteFile(orphan, []byte("partial"), 0o600)
	os.WriteFile(filepath.Join(tg.dir, tmpDir, "nar-123"), []byte("partial"), 0o600)
	// An upload cut off midway leaves no NAR behind.
	nar := compress(t, makeNAR(t, strings.Repeat("y", 1<<20)), "zstd")
	conn, err := net.Dial("tcp", tg.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	u := binarycache.NARURL(sha256.Sum256(nar), "zstd")
	io.WriteString(conn, "PUT /"+u+" HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(nar))+"\r\n\r\n")
	conn.Write(nar[:len(nar)/2])
	conn.Close()
	time.Sleep(100 * time.Millisecond)
	if ok, _ := tg.db.narServable(t.Context(), u); ok {
		t.Fatal("a cut-off NAR is servable")
	}
	if _, ok, _ := tg.db.getNAR(t.Context(), u); ok {
		t.Fatal("a cut-off NAR was recorded")
	}
	tg.Close()
	g, err := Open(tg.dir, "", tg.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := os.Stat(orphan); err == nil {
		t.Error("orphan NAR file survived a restart")
	}
	if ents, _ := os.ReadDir(filepath.Join(tg.dir, tmpDir)); len(ents) != 0 {
		t.Error("temporary uploads survived a restart")
	}
	if s, ok, _ := g.db.served(t.Context(), storepath.HashPart(p)); !ok || !strings.Contains(s, "Sig: host-a-gate-1:") {
		t.Error("admitted path lost over a restart")
	}
	// A tampered log stops the gate from starting.
	g.Close()
	entries := filepath.Join(tg.dir, LogDir, tlog.EntriesFile)
	data, _ := os.ReadFile(entries)
	data[bytes.Index(data, []byte("admission"))] = 'A'
	os.WriteFile(entries, data, 0o600)
	if _, err := Open(tg.dir, "", tg.Log); err == nil || !strings.Contains(err.Error(), "entry") {
		t.Errorf("Open with a tampered log: %v", err)
	}
}

func TestStagingLimits(t *testing.T) {
	tg := newTestGate(t, func(c *Config) { c.StagingMaxBytes = 100 << 10; c.MaxNARSize = 1 << 20 })
	a := compress(t, makeNAR(t, strings.Repeat("a", 60<<10)), "none")
	b := compress(t, makeNAR(t, strings.Repeat("b", 60<<10)), "none")
	if s, body := tg.do(t, "PUT", "/"+binarycache.NARURL(sha256.Sum256(a), "none"), a); s != 200 {
		t.Fatalf("first NAR: %d %s", s, body)
	}
	if s, body := tg.do(t, "PUT", "/"+binarycache.NARURL(sha256.Sum256(b), "none"), b); s != 507 || !strings.Contains(body, "staging is full") {
		t.Fatalf("second NAR past the staging limit: %d %s", s, body)
	}
	// Once expired, staging has room again.
	tg.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if err := tg.Expire(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tg.dir, filepath.FromSlash(binarycache.NARURL(sha256.Sum256(a), "none")))); err == nil {
		t.Error("expired staged NAR still on disk")
	}
	if s, body := tg.do(t, "PUT", "/"+binarycache.NARURL(sha256.Sum256(b), "none"), b); s != 200 {
		t.Fatalf("after expiry: %d %s", s, body)
	}
}

func TestPlainHTTPOnlyOnLoopback(t *testing.T) {
	tg := newTestGate(t, nil)
	err := tg.Serve(t.Context(), ServeOptions{Listen: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "only allowed on loopback") {
		t.Fatalf("Serve on 0.0.0.0 without TLS: %v", err)
	}
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, ":1": false, "10.0.0.1:1": false} {
		if IsLoopback(addr) != want {
			t.Errorf("IsLoopback(%s) != %v", addr, want)
		}
	}
}

func TestConfigStrict(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"name":"g","sigs_neded":2}`), 0o600)
	if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), "sigs_neded") {
		t.Fatalf("unknown key: %v", err)
	}
	c := DefaultConfig("g")
	c.Thresholds = []Threshold{{Pattern: "*-sudo-*", SigsNeeded: 2}, {Pattern: "linux-*", SigsNeeded: 3}}
	h := "/nix/store/" + strings.Repeat("a", 32) + "-"
	for p, want := range map[string]int{
		h + "sudo-1.9": 2, h + "linux-6.1": 3, h + "hello": 1,
		// Unversioned names are covered by the versioned patterns too.
		h + "sudo": 2, h + "linux": 3,
		// A name merely containing the word is not.
		h + "sudoku-1.0": 1, h + "libsudo": 1, h + "linuxdoc-tools": 1,
	} {
		if n, _ := c.SigsNeededFor(p); n != want {
			t.Errorf("SigsNeededFor(%s) = %d, want %d", p, n, want)
		}
	}
}

// Memory does not grow with the NAR: a 256 MiB NAR streams through receiveNAR.
func TestReceiveNARStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short (CI runs it)")
	}
	const size = 256 << 20
	pr, pw := io.Pipe()
	go func() {
		zw, _ := zstd.NewWriter(pw, zstd.WithEncoderLevel(zstd.SpeedFastest))
		w := nar.NewWriter(zw)
		w.WriteHeader(&nar.Entry{Path: "/", Type: nar.Regular, Size: size})
		buf := make([]byte, 1<<20)
		for i := 0; i < size>>20; i++ {
			buf[0] = byte(i)
			w.Write(buf)
		}
		w.Close()
		zw.Close()
		pw.Close()
	}()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := receiveNAR(pr, io.Discard, "zstd", 1<<30, 64<<20)
	runtime.ReadMemStats(&after)
	if err != nil || res.NarSize < size {
		t.Fatalf("receiveNAR: %v, %d bytes", err, res.NarSize)
	}
	if grew := int64(after.HeapSys) - int64(before.HeapSys); grew > 48<<20 {
		t.Errorf("heap grew by %d MiB taking a %d MiB NAR", grew>>20, size>>20)
	}
}
