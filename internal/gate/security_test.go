package gate

import (
	"crypto/sha256"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/nixcert"
)

// caPath is a flat fixed-output path of contents, and a mutation giving a narinfo
// its CA field.
func caPath(t *testing.T, name, contents string) (string, func(*narinfo.NarInfo)) {
	t.Helper()
	h, _ := nixhash.New("sha256")
	h.Write([]byte(contents))
	ca := contentaddress.ContentAddress{Method: contentaddress.FixedFlat, Algo: "sha256", Digest: h.Sum(nil)}
	path, err := contentaddress.StorePath(storepath.DefaultStoreDir, name, ca, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return path, func(ni *narinfo.NarInfo) { ni.CA = ca.String() }
}

func (tg *testGate) status(t *testing.T, path string) string {
	t.Helper()
	_, b := tg.do(t, "POST", "/nixpki/status", []byte(path+"\n"))
	return b
}

// reason is the state and reason the gate keeps for path (what gate pending and
// gate audit show its operator), newest record first.
func (tg *testGate) reason(t *testing.T, path string) string {
	t.Helper()
	cands, err := tg.db.candidates(t.Context(), storepath.HashPart(path))
	if err != nil || len(cands) == 0 {
		t.Fatalf("records of %s: %v %v", path, cands, err)
	}
	return cands[0].State + " " + path + ": " + cands[0].Reason
}

// Finding 3: a pending record cannot be rewritten by replaying a member's narinfo
// with other unsigned fields. Counted signers stay (here a content-addressed-only
// certificate's, which a replay without the CA field used to drop), a different CA
// that brings no more identities is refused naming the field, and unknown keys are
// not served.
func TestPendingRecordPinned(t *testing.T) {
	tg := newTestGate(t, func(c *Config) { c.Thresholds = []Threshold{{Pattern: "src-*", SigsNeeded: 3}} })
	p := tg.pki
	alice := p.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	carol := p.member(t, "carol-1", "carol", []string{"host-a"}, scopeAny, nil)
	dave := p.member(t, "dave-1", "dave", []string{"host-a"}, nixcert.Scope{ContentAddressedOnly: true}, nil)
	for _, m := range []member{alice, carol, dave} {
		tg.enroll(t, m)
	}
	src := "the source tarball"
	path, setCA := caPath(t, "src-1.tar.gz", src)
	up := func(m member, mutate func(*narinfo.NarInfo)) (int, string) {
		_, s, b := tg.push(t, upload{path: path, contents: src, signers: []member{m}, mutate: mutate})
		return s, b
	}
	if s, b := up(dave, setCA); s != 403 || !strings.Contains(b, "has 1 of 3") {
		t.Fatalf("dave: %d %s", s, b)
	}
	if s, b := up(alice, setCA); s != 403 || !strings.Contains(b, "has 2 of 3") || !strings.Contains(b, "dave") {
		t.Fatalf("alice: %d %s", s, b)
	}
	// Anyone replays alice's narinfo without the CA field, with another Deriver and
	// an unknown key.
	replay := func(ni *narinfo.NarInfo) {
		ni.CA, ni.Deriver = "", strings.Repeat("0", 32)+"-evil.drv"
		ni.Extra = []narinfo.Field{{Key: "X-Evil", Value: "1"}}
	}
	if s, b := up(alice, replay); s != 409 || !strings.Contains(b, "rejected "+path) || !strings.Contains(b, "its CA field (none) differs") {
		t.Fatalf("replay without CA: %d %s", s, b)
	}
	if st := tg.reason(t, path); !strings.Contains(st, "has 2 of 3") || !strings.Contains(st, "dave") {
		t.Fatalf("the replay rewrote the pending record: %s", st)
	}
	// A replay with the same CA but another Deriver and an unknown key adds nothing
	// and changes nothing.
	if s, b := up(alice, func(ni *narinfo.NarInfo) { setCA(ni); replay(ni); setCA(ni) }); s != 403 || !strings.Contains(b, "has 2 of 3") {
		t.Fatalf("replay with other unsigned fields: %d %s", s, b)
	}
	if s, b := up(carol, setCA); s != 200 {
		t.Fatalf("carol, the third identity: %d %s", s, b)
	}
	ni, ok := tg.served(t, path)
	if !ok || ni.CA == "" || ni.Deriver != "" || len(ni.Extra) != 0 || len(ni.Sigs) != 4 {
		t.Fatalf("served: %v %+v", ok, ni)
	}
}

// Whoever uploads first without the CA field pins no CA; a content-addressed-only
// member's upload with the genuine CA counts more identities, so it is taken (they
// cannot be locked out). Going back is refused.
func TestPendingCAOnlyWhenMore(t *testing.T) {
	tg := newTestGate(t, func(c *Config) { c.Thresholds = []Threshold{{Pattern: "src-*", SigsNeeded: 3}} })
	p := tg.pki
	alice := p.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	dave := p.member(t, "dave-1", "dave", []string{"host-a"}, nixcert.Scope{ContentAddressedOnly: true}, nil)
	tg.enroll(t, alice)
	tg.enroll(t, dave)
	src := "another tarball"
	path, setCA := caPath(t, "src-2.tar.gz", src)
	if _, s, b := tg.push(t, upload{path: path, contents: src, signers: []member{alice}}); s != 403 || !strings.Contains(b, "has 1 of 3") {
		t.Fatalf("alice without CA: %d %s", s, b)
	}
	if _, s, b := tg.push(t, upload{path: path, contents: src, signers: []member{dave}, mutate: setCA}); s != 403 || !strings.Contains(b, "has 2 of 3") {
		t.Fatalf("dave with CA: %d %s", s, b)
	}
	if _, s, b := tg.push(t, upload{path: path, contents: src, signers: []member{alice}}); s != 409 || !strings.Contains(b, "upload it with CA fixed:") {
		t.Fatalf("alice without CA again: %d %s", s, b)
	}
}

// A later upload of a pending path's content with other References (signed by
// another member) is refused naming the field; it does not drop the first signer.
func TestPendingReferencesPinned(t *testing.T) {
	tg := newTestGate(t, func(c *Config) { c.Thresholds = []Threshold{{Pattern: "*-sudo-*", SigsNeeded: 2}} })
	p := tg.pki
	alice := p.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	bob := p.member(t, "bob-1", "bob", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	tg.enroll(t, bob)
	dep := storePath("libdep")
	if _, s, b := tg.push(t, upload{path: dep, contents: "dep", signers: []member{alice, bob}}); s != 200 {
		t.Fatalf("dep: %d %s", s, b)
	}
	sudo := storePath("sudo-1.9")
	if _, s, b := tg.push(t, upload{path: sudo, contents: "sudo", refs: []string{dep}, signers: []member{alice}}); s != 403 {
		t.Fatalf("alice: %d %s", s, b)
	}
	if _, s, b := tg.push(t, upload{path: sudo, contents: "sudo", signers: []member{bob}}); s != 409 || !strings.Contains(b, "its References (none) differ") {
		t.Fatalf("bob without references: %d %s", s, b)
	}
	if st := tg.reason(t, sudo); !strings.Contains(st, "has 1 of 2") || !strings.Contains(st, "alice") {
		t.Fatalf("pending record rewritten: %s", st)
	}
	if _, s, b := tg.push(t, upload{path: sudo, contents: "sudo", refs: []string{dep}, signers: []member{bob}}); s != 200 {
		t.Fatalf("bob with the references: %d %s", s, b)
	}
}

// Revoking a certificate withdraws the admitted referrers whose closure it leaves
// short of their threshold, though the path it signed still meets its own; and
// what references a withdrawn path. Audit says why.
func TestQuarantineFollowsClosure(t *testing.T) {
	tg, alice, bob, carol := threeMembers(t, Threshold{Pattern: "*-nixos-system-*", SigsNeeded: 2})
	p := tg.pki
	glibc := storePath("glibc-2.40")   // alice and bob; needs 1
	bash := storePath("bash-5.2")      // alice and carol, references glibc
	sys := storePath("nixos-system-h") // alice and carol, references bash: needs 2 over its closure
	boot := storePath("bootloader")    // alice, references sys
	other := storePath("nixos-system-other")
	for _, u := range []upload{
		{path: glibc, contents: "glibc", signers: []member{alice, bob}},
		{path: bash, contents: "bash", refs: []string{glibc}, signers: []member{alice, carol}},
		{path: sys, contents: "sys", refs: []string{bash}, signers: []member{alice, carol}},
		{path: boot, contents: "boot", refs: []string{sys}, signers: []member{alice}},
		{path: other, contents: "other", signers: []member{alice, carol}},
	} {
		if _, s, b := tg.push(t, u); s != 200 {
			t.Fatalf("%s: %d %s", u.path, s, b)
		}
	}
	s, b := tg.do(t, "PUT", "/nixpki/crl", p.crl(t, time.Now().Unix()+1, time.Now(), bob.cert))
	if s != 200 || !strings.Contains(b, "2 paths quarantined") {
		t.Fatalf("CRL: %d %s", s, b)
	}
	for path, want := range map[string]bool{glibc: true, bash: true, sys: false, boot: false, other: true} {
		if _, ok := tg.served(t, path); ok != want {
			t.Errorf("%s served = %v after bob's revocation, want %v", path, ok, want)
		}
	}
	base := func(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }
	if st := tg.reason(t, sys); !strings.Contains(st, "quarantined "+sys) || !strings.Contains(st, "its closure no longer meets its threshold: "+base(glibc)+" is left with 1 of the 2") || !strings.Contains(st, "(bob, key bob-1)") {
		t.Errorf("status of sys: %s", st)
	}
	if st := tg.reason(t, boot); !strings.Contains(st, "its reference "+base(sys)+" is withdrawn") {
		t.Errorf("status of boot: %s", st)
	}
	evs, _, err := Audit(tg.dir, sys)
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Type != "quarantine" || !strings.Contains(last.Describe(), "its closure no longer meets its threshold") {
		t.Errorf("audit of sys: %+v", last)
	}
	// bob's revocation is not counted twice: a newer CRL revoking nobody else
	// withdraws nothing more.
	if s, b := tg.do(t, "PUT", "/nixpki/crl", p.crl(t, time.Now().Unix()+2, time.Now(), bob.cert)); s != 200 || !strings.Contains(b, "0 paths quarantined") {
		t.Errorf("second CRL: %d %s", s, b)
	}
}

// A narinfo whose NAR file is gone (expired from staging while the narinfo was on
// its way) is a 410 naming the path and telling to push again: never a 500, never
// an admission without its NAR.
func TestNARExpiredBeforeNarInfo(t *testing.T) {
	tg := newTestGate(t, nil)
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	caP, setCA := caPath(t, "src-3.tar.gz", "gone")
	for _, u := range []upload{
		{path: storePath("gone"), contents: "gone input-addressed", signers: []member{alice}},
		{path: caP, contents: "gone", signers: []member{alice}, mutate: setCA},
	} {
		mutate := u.mutate
		u.mutate = func(ni *narinfo.NarInfo) {
			if mutate != nil {
				mutate(ni)
			}
			os.Remove(filepath.Join(tg.dir, filepath.FromSlash(ni.URL)))
		}
		_, s, b := tg.push(t, u)
		if s != 410 || !strings.Contains(b, "rejected "+u.path) || !strings.Contains(b, "push the path again") {
			t.Errorf("%s: %d %s", u.path, s, b)
		}
		if _, ok := tg.served(t, u.path); ok {
			t.Errorf("%s admitted without its NAR", u.path)
		}
		// Pushed again as the answer says, it is admitted.
		u.mutate = mutate
		if _, s, b := tg.push(t, u); s != 200 {
			t.Errorf("%s pushed again: %d %s", u.path, s, b)
		}
	}
	// Expired from staging the ordinary way: 400, saying so.
	path := storePath("late")
	_, s, b := tg.push(t, upload{path: path, contents: "late", signers: []member{alice}, mutate: func(*narinfo.NarInfo) {
		tg.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		if err := tg.Expire(t.Context()); err != nil {
			t.Fatal(err)
		}
	}})
	if s != 400 || !strings.Contains(b, "expired from staging") || !strings.Contains(b, "push the path again") {
		t.Errorf("expired NAR: %d %s", s, b)
	}
}

// rootCRL is a CRL of the root revoking intermediates.
func (p *testPKI) rootCRL(t testing.TB, number int64, revoked ...*x509.Certificate) []byte {
	t.Helper()
	return signCRL(t, p.root, p.rootKey, number, time.Now(), 2, revoked) // cACompromise
}

// A CRL of the root listing the Nix intermediate revokes every certificate it
// issued: their paths are quarantined and their signatures no longer count. An
// older root CRL does not undo it; another root's is refused.
func TestRootCRLRevokesIntermediate(t *testing.T) {
	tg := newTestGate(t, nil)
	p := tg.pki
	alice := p.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	app := storePath("app")
	if _, s, b := tg.push(t, upload{path: app, contents: "app", signers: []member{alice}}); s != 200 {
		t.Fatalf("app: %d %s", s, b)
	}
	if s, b := tg.do(t, "PUT", "/nixpki/crl", p.rootCRL(t, 1)); s != 200 || !strings.Contains(b, "Test Root") || !strings.Contains(b, "0 paths quarantined") {
		t.Fatalf("empty root CRL: %d %s", s, b)
	}
	s, b := tg.do(t, "PUT", "/nixpki/crl", p.rootCRL(t, 2, p.nix))
	if s != 200 || !strings.Contains(b, "accepted (1 revoked); 1 paths quarantined") {
		t.Fatalf("root CRL revoking the intermediate: %d %s", s, b)
	}
	if _, ok := tg.served(t, app); ok {
		t.Error("a path signed under a revoked intermediate is served")
	}
	if st := tg.reason(t, app); !strings.Contains(st, "quarantined") || !strings.Contains(st, "(alice, key alice-1) revoked") {
		t.Errorf("status: %s", st)
	}
	other := storePath("other")
	if _, s, b := tg.push(t, upload{path: other, contents: "other", signers: []member{alice}}); s != 403 || !strings.Contains(b, `its intermediate "Test Nix Intermediate" was revoked`) {
		t.Errorf("push under a revoked intermediate: %d %s", s, b)
	}
	if s, b := tg.do(t, "PUT", "/nixpki/crl", p.rootCRL(t, 1)); s != 200 || !strings.Contains(b, "not newer") {
		t.Errorf("older root CRL: %d %s", s, b)
	}
	if s, b := tg.do(t, "PUT", "/nixpki/crl", newPKI(t).rootCRL(t, 9)); s != 400 {
		t.Errorf("another root's CRL: %d %s", s, b)
	}
	// It survives a restart (kept with the other CRLs).
	tg.Close()
	g, err := Open(tg.dir, "", tg.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !g.trust.v.IsRevoked(alice.cert) {
		t.Error("the root CRL was lost over a restart")
	}
}

// threeMembers is a gate with thresholds and its members alice, bob and carol.
func threeMembers(t *testing.T, thresholds ...Threshold) (*testGate, member, member, member) {
	t.Helper()
	tg := newTestGate(t, func(c *Config) { c.Thresholds = thresholds })
	var ms []member
	for _, name := range []string{"alice", "bob", "carol"} {
		m := tg.pki.member(t, name+"-1", name, []string{"host-a"}, scopeAny, nil)
		tg.enroll(t, m)
		ms = append(ms, m)
	}
	return tg, ms[0], ms[1], ms[2]
}

// pendingLib is a gate where lib-* needs two signatures, its members alice and bob,
// and lib-1 pushed by alice, pending.
func pendingLib(t *testing.T) (*testGate, member, member, string) {
	t.Helper()
	tg := newTestGate(t, func(c *Config) { c.Thresholds = []Threshold{{Pattern: "lib-*", SigsNeeded: 2}} })
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	bob := tg.pki.member(t, "bob-1", "bob", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	tg.enroll(t, bob)
	lib := storePath("lib-1")
	if _, s, b := tg.push(t, upload{path: lib, contents: "lib", signers: []member{alice}}); s != 403 || !strings.Contains(b, "has 1 of 2") {
		t.Fatalf("lib by alice: %d %s", s, b)
	}
	return tg, alice, bob, lib
}

// A replay of a pending path that has its signatures but waits for a reference
// changes nothing: no new record, no log entry, no later expiry; the reference's
// admission still admits it.
func TestPendingWaitingReplayChangesNothing(t *testing.T) {
	tg, alice, bob, lib := pendingLib(t)
	app := storePath("app-1")
	appUp := upload{path: app, contents: "app", refs: []string{lib}, signers: []member{alice}}
	if _, s, b := tg.push(t, appUp); s != 403 || !strings.Contains(b, "waiting for its references") {
		t.Fatalf("app by alice: %d %s", s, b)
	}
	before := tg.tlog.Head().Size
	for range 3 {
		if _, s, b := tg.push(t, appUp); s != 403 || !strings.Contains(b, "waiting for its references") {
			t.Fatalf("app replayed: %d %s", s, b)
		}
	}
	if after := tg.tlog.Head().Size; after != before {
		t.Fatalf("three replays of a waiting path appended %d log entries", after-before)
	}
	if _, s, b := tg.push(t, upload{path: lib, contents: "lib", signers: []member{bob}}); s != 200 {
		t.Fatalf("lib by bob: %d %s", s, b)
	}
	if _, ok := tg.served(t, app); !ok {
		t.Fatal("app is not served after its reference was admitted")
	}
}

// Two contents of one path waiting for the same reference: the reference's admission
// admits the first and drops the other; the other, still in the list the cascade
// read, is not admitted in its turn (which would flip the served content and log a
// second admission).
func TestCascadeAdmitsOneContent(t *testing.T) {
	tg, alice, bob, lib := pendingLib(t)
	app := storePath("app-1")
	for _, contents := range []string{"app one", "app two"} {
		if _, s, b := tg.push(t, upload{path: app, contents: contents, refs: []string{lib}, signers: []member{alice}}); s != 403 || !strings.Contains(b, "waiting for its references") {
			t.Fatalf("%s: %d %s", contents, s, b)
		}
	}
	before := tg.tlog.Head().Size
	if _, s, b := tg.push(t, upload{path: lib, contents: "lib", signers: []member{bob}}); s != 200 {
		t.Fatalf("lib by bob: %d %s", s, b)
	}
	served, ok := tg.served(t, app)
	if !ok {
		t.Fatal("app is not served after its reference was admitted")
	}
	if want := sha256.Sum256(makeNAR(t, "app one")); served.NarHash != want {
		t.Fatalf("app is served with the content pushed second (NarHash %s)", nixhash.FormatSHA256(served.NarHash))
	}
	// lib's admission and app's: two admissions, nothing more.
	if n := tg.tlog.Head().Size - before; n != 2 {
		t.Fatalf("the reference's admission appended %d log entries, want 2 (lib, app)", n)
	}
}

// A pending path that cannot be judged again (here its NAR is gone) stays pending:
// the change that cascaded to it commits, and its uploader is not answered for it.
func TestCascadeSkipsUnjudgeablePending(t *testing.T) {
	tg, alice, bob, carol := threeMembers(t, Threshold{Pattern: "lib-*", SigsNeeded: 2}, Threshold{Pattern: "src-*", SigsNeeded: 2})
	src := "a tarball whose NAR will be lost"
	srcPath, setCA := caPath(t, "src-lost.tar.gz", src)
	if _, s, b := tg.push(t, upload{path: srcPath, contents: src, signers: []member{alice}, mutate: setCA}); s != 403 || !strings.Contains(b, "has 1 of 2") {
		t.Fatalf("src by alice: %d %s", s, b)
	}
	fh := sha256.Sum256(compress(t, makeNAR(t, src), "zstd"))
	if err := os.Remove(filepath.Join(tg.Dir, filepath.FromSlash(binarycache.NARURL(fh, "zstd")))); err != nil {
		t.Fatal(err)
	}
	lib := storePath("lib-1")
	for _, m := range []member{alice, bob} {
		if _, s, b := tg.push(t, upload{path: lib, contents: "lib", signers: []member{m}}); s != 403 && s != 200 {
			t.Fatalf("lib by %s: %d %s", m.key.Name, s, b)
		}
	}
	// carol's signature on the admitted lib re-judges every pending path needing two.
	if _, s, b := tg.push(t, upload{path: lib, contents: "lib", signers: []member{carol}}); s != 200 || !strings.Contains(b, "added signatures of carol") {
		t.Fatalf("lib by carol: %d %s", s, b)
	}
	if served, ok := tg.served(t, lib); !ok || len(served.Sigs) != 4 {
		t.Fatalf("lib served with %d signatures (ok %v), want alice's, bob's, carol's and the gate's", len(served.Sigs), ok)
	}
	if st := tg.status(t, srcPath); !strings.Contains(st, "has 1 of 2") {
		t.Fatalf("the pending path changed: %s", st)
	}
}

// One status query answers for many paths at once, each line in the order asked:
// admitted, pending (with why), rejected, absent; and no line names a signer, key or
// certificate, since anyone may ask.
func TestStatusOfMany(t *testing.T) {
	tg := newTestGate(t, func(c *Config) { c.Thresholds = []Threshold{{Pattern: "two-*", SigsNeeded: 2}} })
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	admitted, pending, rejected, absent := storePath("one-1.0"), storePath("two-1.0"), storePath("bad-1.0"), storePath("none-1.0")
	if _, s, b := tg.push(t, upload{path: admitted, contents: "one", signers: []member{alice}}); s != 200 {
		t.Fatalf("admitted: %d %s", s, b)
	}
	if _, s, b := tg.push(t, upload{path: pending, contents: "two", signers: []member{alice}}); s != 403 {
		t.Fatalf("pending: %d %s", s, b)
	}
	if _, s, b := tg.push(t, upload{path: rejected, contents: "bad", signers: nil}); s < 400 {
		t.Fatalf("unsigned: %d %s", s, b)
	}
	ask := []string{absent, rejected, admitted, pending, admitted}
	status, body := tg.do(t, "POST", "/nixpki/status", []byte(strings.Join(ask, "\n")+"\n"))
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if status != 200 || len(lines) != len(ask) {
		t.Fatalf("status of %d paths: %d, %d lines:\n%s", len(ask), status, len(lines), body)
	}
	want := []string{"absent " + absent, "rejected " + rejected + ": ", "admitted " + admitted, "pending " + pending + ": ", "admitted " + admitted}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want it to begin %q", i+1, lines[i], w)
		}
	}
	if !strings.Contains(lines[3], "has 1 of 2 signatures from distinct certified identities (pattern two-* needs 2)") {
		t.Errorf("the pending path's reason is missing:\n%s", body)
	}
	if strings.Contains(body, "alice") || strings.Contains(body, "certificate ") || strings.Contains(body, "carries no signature") {
		t.Errorf("the status names a signer, a certificate or a rejection's reason:\n%s", body)
	}
	// The quarantined paths' lines name no revoked certificate either.
	if s, b := tg.do(t, "PUT", "/nixpki/crl", tg.pki.crl(t, time.Now().Unix()+1, time.Now(), alice.cert)); s != 200 {
		t.Fatalf("CRL revoking alice: %d %s", s, b)
	}
	if st := tg.status(t, admitted); !strings.HasPrefix(st, "quarantined "+admitted+": ") || strings.Contains(st, "alice") {
		t.Errorf("status of a quarantined path: %s", st)
	}
}
