package main

// TestMemberDeploy is one deploy as a team member makes it (docs/deploy.md), with
// real parts: the target's nix-daemon, its gate, an sshd, and a login user who is
// neither root nor trusted by Nix.

import (
	"path/filepath"
	"strings"
	"testing"

	"nixpki/internal/gate"
	"nixpki/internal/testutil"
)

func TestMemberDeploy(t *testing.T) {
	n := newNixTool(t)
	copyClosure := testutil.NeedTool(t, "nix-copy-closure")
	r := &gateRig{t: t, n: n, tmp: t.TempDir()}
	r.caDir, r.gateDir = r.p("ca"), r.p("gate")

	// At the office: the CA certifies the members' keys, offline. Its URLs (the CRL
	// distribution point) lead to a tripwire: during the deploy nothing may reach it.
	run(t, false, "init", "--dir", r.caDir, "--name", "Team", "--dns", "ca.internal", "--external-url", "http://"+tripwire(t))
	certify := func(key, subject, targets string) {
		n.must("nix-store", "--generate-binary-cache-key", key, r.p(key+".sec"), r.p(key+".pub"))
		run(t, false, "nix", "certify", "--dir", r.caDir, "--public", r.p(key+".pub"), "--subject", subject, "--targets", targets, "--out", r.p(key+".crt"))
	}
	certify("alice-1", "alice", "host-a")
	certify("alice-2", "alice", "host-b") // a certificate for other machines
	certify("bob-1", "bob", "host-*")
	run(t, false, "nix", "crl", "--dir", r.caDir, "--out", r.p("nix.crl"))
	carried := []string{"--crl", r.p("nix.crl")}

	// The target, host-a, at a site without a way to the CA: its gate on loopback,
	// fetching no CRLs (members carry them), two signers for anything named like sudo,
	// and its Nix configured exactly as `gate init` prints for NixOS.
	addr := testutil.FreePort(t)
	r.url = "http://" + addr
	snippet := run(t, false, "gate", "init", "--dir", r.gateDir, "--name", "host-a", "--root", filepath.Join(r.caDir, "root.crt"), "--url", r.url, "--listen", addr)
	editGateConfig(t, r.gateDir, func(c *gate.Config) {
		c.Thresholds = []gate.Threshold{{Pattern: "*-sudo-*", SigsNeeded: 2}}
		c.CRLFetchInterval = 0
	})
	r.gatePub = string(mustRead(t, filepath.Join(r.gateDir, "gate.pub")))
	startGate(t, r.gateDir, addr)
	sh(t, nil, testutil.NeedTool(t, "ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", r.p("alice_ssh"))
	target := newNixTarget(t, nixConfFromSnippet(t, snippet), string(mustRead(t, r.p("alice_ssh.pub"))))
	if out := string(mustRead(t, target.p("conf/nix.conf"))); !strings.Contains(out, "trusted-public-keys = "+r.gatePub+"\n") || !strings.Contains(out, "require-sigs = true\n") {
		t.Fatalf("the target's nix.conf:\n%s", out)
	}

	// The member's machine: ssh reaches the target as alice's login.
	memberEnv := func() []string { return append(r.env(), "NIX_SSHOPTS="+target.sshOpts+" -i "+r.p("alice_ssh")) }
	deploy := func(paths ...string) (string, error) {
		args := append([]string{"--to", target.login(), "--use-substitutes"}, paths...)
		_, e, err := r.exec(memberEnv(), copyClosure, args...)
		return e, err
	}
	closure := func(path string) []string { return strings.Fields(n.must("nix-store", "-qR", path)) }
	mustNotDeploy := func(what string, paths ...string) string {
		t.Helper()
		out, err := deploy(paths...)
		if err == nil {
			t.Fatalf("%s: nix-copy-closure --use-substitutes succeeded, want failure", what)
		}
		for _, p := range paths {
			if target.valid(n, p) {
				t.Errorf("%s: the target holds %s", what, p)
			}
		}
		return out
	}

	var app string // deployed on alice's signature alone
	t.Run("alice pushes her closure to the gate and deploys it", func(t *testing.T) {
		app, _ = r.build("app")
		if target.valid(n, app) {
			t.Fatal("a fresh target holds the member's path")
		}
		// One command: the push, then the copy nixos-rebuild --use-substitutes makes.
		_, out, err := r.exec(memberEnv(), nixpkiBin(t), "nix", "push", "--gate", r.url, "--cert", r.p("alice-1.crt"), "--secret", r.p("alice-1.sec"), "--crl", r.p("nix.crl"), "--then-copy", target.login(), app)
		if err != nil {
			t.Fatalf("push --then-copy: %v\n%s", err, out)
		}
		wantIn(t, "push --then-copy", out, "may sign for gate host-a", "2 of 2 paths admitted",
			"nixpki: running nix-copy-closure --to "+target.login()+" --use-substitutes "+app+"\n")
		// Every path came from the gate: it carries the gate's signature, the only key
		// the target trusts.
		for _, p := range closure(app) {
			if !target.valid(n, p) {
				t.Errorf("the target lacks %s", p)
			} else if sigs := target.sigs(n, p); !strings.Contains(sigs, "host-a-gate-1:") || !strings.Contains(sigs, "alice-1:") {
				t.Errorf("signatures of %s on the target: %s", p, sigs)
			}
		}
		target.checkLogins()
	})

	t.Run("a copy target ssh would read as an option is refused before the push", func(t *testing.T) {
		top, _ := r.build("option")
		_, out, err := r.exec(memberEnv(), nixpkiBin(t), "nix", "push", "--gate", r.url, "--cert", r.p("alice-1.crt"), "--secret", r.p("alice-1.sec"), "--crl", r.p("nix.crl"), "--then-copy", "-oProxyCommand=sh", top)
		if err == nil {
			t.Fatal("push --then-copy -oProxyCommand=sh succeeded")
		}
		wantIn(t, "push --then-copy -o…", out, `--then-copy "-oProxyCommand=sh": give the target as ssh does, [USER@]HOST`)
		if s := r.narinfoStatus(top); s != 404 {
			t.Errorf("the gate answers %d for a path whose push was refused", s)
		}
	})

	t.Run("paths the gate has not admitted cannot be copied in directly", func(t *testing.T) {
		tool, _ := r.build("tool")
		// Signed with alice's certified key, but not through the gate.
		n.must("nix", "store", "sign", "-r", "--key-file", r.p("alice-1.sec"), tool)
		_, e, err := r.exec(memberEnv(), "nix", "copy", "--to", "ssh-ng://"+target.login(), tool)
		if err == nil {
			t.Fatal("nix copy --to ssh-ng:// into the target's daemon succeeded")
		}
		wantIn(t, "nix copy --to ssh-ng://", e, "lacks a valid signature")
		_, e, err = r.exec(memberEnv(), copyClosure, "--to", target.login(), tool)
		if err == nil {
			t.Fatal("nix-copy-closure without --use-substitutes succeeded")
		}
		wantIn(t, "nix-copy-closure", e, "lacks a valid signature")
		wantIn(t, "nix-copy-closure --use-substitutes", mustNotDeploy("not pushed", tool), "lacks a valid signature")
	})

	t.Run("a certificate for other machines cannot deploy here", func(t *testing.T) {
		other, _ := r.build("other")
		out, err := r.push("alice-2", carried, other)
		if err == nil {
			t.Fatalf("push with a certificate for host-b succeeded:\n%s", out)
		}
		wantIn(t, "push", out, `its targets (host-b) do not include this gate "host-a"`)
		mustNotDeploy("certificate for host-b", other)
	})

	t.Run("a path needing two signers is not deployed with one", func(t *testing.T) {
		sudo, _ := r.build("fake-sudo-1.0")
		out, err := r.push("alice-1", carried, sudo)
		if err == nil || !strings.Contains(out, "pending "+sudo) {
			t.Fatalf("alice's push of sudo: %v\n%s", err, out)
		}
		mustNotDeploy("one signer", sudo)
		if out, err := r.push("bob-1", carried, sudo); err != nil {
			t.Fatalf("bob's push of sudo: %v\n%s", err, out)
		}
		if out, err := deploy(sudo); err != nil {
			t.Fatalf("deploy with two signers: %v\n%s", err, out)
		}
		if sigs := target.sigs(n, sudo); !strings.Contains(sigs, "alice-1:") || !strings.Contains(sigs, "bob-1:") {
			t.Errorf("signatures of sudo on the target: %s", sigs)
		}
	})

	t.Run("a revoked member cannot deploy once another member carried the CRL", func(t *testing.T) {
		late, _ := r.build("late")
		run(t, false, "nix", "revoke", "--dir", r.caDir, readChain(t, r.p("alice-1.crt")).Serial(), "--reason", "keyCompromise")
		run(t, false, "nix", "crl", "--dir", r.caDir, "--out", r.p("nix-2.crl"))
		bobs, _ := r.build("bobs")
		if out, err := r.push("bob-1", []string{"--crl", r.p("nix-2.crl")}, bobs); err != nil {
			t.Fatalf("bob's push carrying the new CRL: %v\n%s", err, out)
		}
		out, err := r.push("alice-1", carried, late)
		if err == nil {
			t.Fatalf("push by a revoked member succeeded:\n%s", out)
		}
		wantIn(t, "push by a revoked member", out, "(alice, key alice-1): revoked", "by CRL number 2")
		mustNotDeploy("revoked member", late)
		// What she alone deployed before is withdrawn from the gate; the target keeps it.
		if s := r.narinfoStatus(app); s != 404 {
			t.Errorf("the gate answers %d for %s, admitted on a revoked signature alone", s, app)
		}
		if !target.valid(n, app) {
			t.Errorf("the target lost %s", app)
		}
	})
}
