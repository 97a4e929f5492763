package main

// The target machine of TestMemberDeploy, built from real parts and torn down by the
// test: a nix-daemon running as root over a store of its own, configured as the
// gate's NixOS snippet says; an unprivileged login user; and an sshd on loopback whose
// sessions reach that daemon, as they would on a NixOS machine.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"nixpki/internal/testutil"
)

// nixTarget is a NixOS-like target: its Nix store, served by nix-daemon, and the
// sshd members log in through.
type nixTarget struct {
	t      *testing.T
	dir    string
	store  string // the daemon's store: local?root=…
	socket string // the daemon's socket, what logins use (NIX_REMOTE)
	user   string // the unprivileged login user
	// sshOpts is NIX_SSHOPTS for a member's nix-copy-closure and nix copy: the
	// target's port, the member's key and the pinned host key.
	sshOpts string
}

// sbinTool finds an administration tool (useradd, sshd, …), which root's PATH has but
// a test's environment may lack. A missing tool fails the test in CI.
func sbinTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/sbin/" + name; fileExists(p) {
		return p
	}
	return testutil.NeedTool(t, name)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// nixConfFromSnippet turns the nix.settings block that `nixpki gate init` prints for
// NixOS into nix.conf lines: lists become space-separated values.
func nixConfFromSnippet(t *testing.T, snippet string) string {
	t.Helper()
	setting := regexp.MustCompile(`^\s*([a-z-]+) = (.*);$`)
	quoted := regexp.MustCompile(`"([^"]*)"`)
	var conf strings.Builder
	for _, line := range strings.Split(snippet, "\n") {
		m := setting.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		value := m[2]
		if strings.HasPrefix(value, "[") {
			var items []string
			for _, q := range quoted.FindAllStringSubmatch(value, -1) {
				items = append(items, q[1])
			}
			value = strings.Join(items, " ")
		}
		fmt.Fprintf(&conf, "%s = %s\n", m[1], value)
	}
	if !strings.Contains(conf.String(), "substituters = ") || !strings.Contains(conf.String(), "trusted-public-keys = ") {
		t.Fatalf("no Nix settings in gate init's output:\n%s", snippet)
	}
	return conf.String()
}

// newNixTarget starts the target: nix-daemon with settings (nix.conf lines: the
// gate's snippet) plus what NixOS sets by default (trusted-users = root), then a login
// user and an sshd that accepts memberKey (an SSH public key) for it.
func newNixTarget(t *testing.T, settings, memberKey string) *nixTarget {
	t.Helper()
	dir := t.TempDir()
	// The login user reaches the daemon's socket through these directories.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	tg := &nixTarget{t: t, dir: dir, socket: filepath.Join(dir, "daemon-socket"), store: "local?root=" + filepath.Join(dir, "root")}
	tg.startDaemon(settings)
	tg.addUser()
	tg.startSSHD(memberKey)
	return tg
}

func (tg *nixTarget) p(name string) string { return filepath.Join(tg.dir, name) }

// startDaemon runs nix-daemon as root with a state, configuration and socket of its
// own; nothing of the machine's Nix is used.
func (tg *nixTarget) startDaemon(settings string) {
	t := tg.t
	t.Helper()
	daemon := testutil.NeedTool(t, "nix-daemon")
	for _, d := range []string{"conf", "state", "cache"} {
		os.MkdirAll(tg.p(d), 0o755)
	}
	conf := "store = " + tg.store + "\n" +
		settings +
		"trusted-users = root\n" +
		// No build users or sandbox on this test machine; the target only substitutes.
		"build-users-group =\nsandbox = false\n" +
		// Every question reaches the gate, as a fresh target's first would.
		"narinfo-cache-positive-ttl = 0\nnarinfo-cache-negative-ttl = 0\n"
	if err := os.WriteFile(tg.p("conf/nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + tg.p("cache"),
		"NIX_CONF_DIR=" + tg.p("conf"), "NIX_STATE_DIR=" + tg.p("state"),
		"NIX_DAEMON_SOCKET_PATH=" + tg.socket, "XDG_CACHE_HOME=" + tg.p("cache"),
	}
	tg.background(cmd, "nix-daemon.log")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", tg.socket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nix-daemon did not listen on %s within 20s:\n%s", tg.socket, mustRead(t, tg.p("nix-daemon.log")))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// background starts cmd in a process group of its own, logging to logName, and stops
// the group when the test ends.
func (tg *nixTarget) background(cmd *exec.Cmd, logName string) {
	t := tg.t
	t.Helper()
	log, err := os.Create(tg.p(logName))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		log.Close()
	})
}

// addUser creates the unprivileged login user (a name of its own, so that parallel
// runs do not collide) with a home in the test's directory, and removes it at the end.
func (tg *nixTarget) addUser() {
	t := tg.t
	t.Helper()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	tg.user = "alice-" + hex.EncodeToString(suffix)
	home := tg.p("home")
	// useradd fails while another process holds /etc/passwd's lock: try a few times.
	var out []byte
	var err error
	for range 10 {
		out, err = exec.Command(sbinTool(t, "useradd"), "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", "--user-group", tg.user).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lock") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", tg.user, err, out)
	}
	t.Cleanup(func() {
		for range 10 {
			out, err := exec.Command(sbinTool(t, "userdel"), tg.user).CombinedOutput()
			if err == nil {
				return
			} else if !strings.Contains(string(out), "lock") {
				t.Errorf("userdel %s: %v\n%s", tg.user, err, out)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	if u, err := user.Lookup(tg.user); err != nil || u.Uid == "0" {
		t.Fatalf("the login user %s: %v, uid %v", tg.user, err, u)
	}
	// "*": no password, yet not a locked account, which sshd would refuse.
	sh(t, nil, sbinTool(t, "usermod"), "--password", "*", tg.user)
	os.MkdirAll(home, 0o700)
	sh(t, nil, "chown", tg.user+":"+tg.user, home)
}

// startSSHD runs sshd on a free loopback port with a host key and configuration of
// its own. Logins get NIX_REMOTE pointing at the daemon, as the default daemon socket
// does on NixOS.
func (tg *nixTarget) startSSHD(memberKey string) {
	t := tg.t
	t.Helper()
	sshd := sbinTool(t, "sshd")
	keygen := testutil.NeedTool(t, "ssh-keygen")
	testutil.NeedTool(t, "ssh")
	// sshd's privilege separation directory; Debian's service creates it at boot, and
	// other sshd instances may share it, so it is left in place.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, nil, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "target host key", "-f", tg.p("ssh_host_ed25519_key"))
	os.MkdirAll(tg.p("authorized_keys"), 0o755)
	if err := os.WriteFile(tg.p("authorized_keys/"+tg.user), []byte(memberKey), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreePort(t)
	host, port, _ := strings.Cut(addr, ":")
	os.MkdirAll(tg.p("empty-nix-conf"), 0o755)
	config := fmt.Sprintf(`ListenAddress %s
HostKey %s
PidFile none
AuthorizedKeysFile %s/%%u
# The test's directories live under /tmp, which sshd's ownership checks refuse.
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers %s
AllowTcpForwarding no
X11Forwarding no
SetEnv NIX_REMOTE=unix://%s NIX_CONF_DIR=%s
LogLevel VERBOSE
`, addr, tg.p("ssh_host_ed25519_key"), tg.p("authorized_keys"), tg.user, tg.socket, tg.p("empty-nix-conf"))
	if err := os.WriteFile(tg.p("sshd_config"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, nil, sshd, "-t", "-f", tg.p("sshd_config"))
	cmd := exec.Command(sshd, "-D", "-e", "-f", tg.p("sshd_config"))
	tg.background(cmd, "sshd.log")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(string(mustRead(t, tg.p("sshd.log"))), "Server listening on "+host+" port "+port) {
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s within 20s:\n%s", addr, mustRead(t, tg.p("sshd.log")))
		}
		time.Sleep(50 * time.Millisecond)
	}
	hostKey := strings.TrimSpace(string(mustRead(t, tg.p("ssh_host_ed25519_key.pub"))))
	if err := os.WriteFile(tg.p("known_hosts"), []byte(fmt.Sprintf("[%s]:%s %s\n", host, port, hostKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	tg.sshOpts = strings.Join([]string{"-F", "/dev/null", "-p", port,
		"-o", "UserKnownHostsFile=" + tg.p("known_hosts"), "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}, " ")
}

// checkLogins checks, in sshd's and the daemon's logs, that the member logged in with
// their key as the login user, and that the daemon never took that user as trusted.
func (tg *nixTarget) checkLogins() {
	t := tg.t
	t.Helper()
	if sshd := string(mustRead(t, tg.p("sshd.log"))); !strings.Contains(sshd, "Accepted publickey for "+tg.user+" from 127.0.0.1") {
		t.Errorf("sshd's log shows no login of %s:\n%s", tg.user, sshd)
	}
	seen := false
	for _, line := range strings.Split(string(mustRead(t, tg.p("nix-daemon.log"))), "\n") {
		if strings.Contains(line, "accepted connection") && strings.Contains(line, "user "+tg.user) {
			seen = true
			if strings.Contains(line, "trusted") {
				t.Errorf("the daemon trusts the login user: %s", line)
			}
		}
	}
	if !seen {
		t.Errorf("the daemon's log shows no connection of %s", tg.user)
	}
}

// login is what a member types for ssh: user@host.
func (tg *nixTarget) login() string { return tg.user + "@127.0.0.1" }

// valid reports whether the target's store holds path, asking its daemon.
func (tg *nixTarget) valid(n *nixTool, path string) bool {
	tg.t.Helper()
	_, _, code := n.Run("nix-store", "--store", "unix://"+tg.socket, "--check-validity", path)
	return code == 0
}

// sigs lists the signatures the target's store holds for path.
func (tg *nixTarget) sigs(n *nixTool, path string) string {
	tg.t.Helper()
	return n.must("nix", "path-info", "--store", "unix://"+tg.socket, "--sigs", path)
}

// tripwire listens where the CA would be reached and fails the test if anything
// connects: during a deploy the CA is offline.
func tripwire(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hits := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(hits)
				return
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			hits <- strings.TrimSpace(line)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for h := range hits {
			t.Errorf("something reached the offline CA: %q", h)
		}
	})
	return l.Addr().String()
}
