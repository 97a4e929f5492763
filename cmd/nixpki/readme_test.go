package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"nixpki/internal/testutil"
)

// readmeBlock returns the fenced block that follows marker in README.md.
func readmeBlock(t *testing.T, readme, marker string) string {
	t.Helper()
	_, after, ok := strings.Cut(readme, marker)
	if !ok {
		t.Fatalf("README.md has no %s", marker)
	}
	_, body, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatalf("no fenced block after %s", marker)
	}
	body = body[strings.IndexByte(body, '\n')+1:] // the fence's language tag
	block, _, ok := strings.Cut(body, "```")
	if !ok {
		t.Fatalf("the block after %s is not closed", marker)
	}
	return block
}

// TestReadmeSession runs README.md's first steps as written, with its ports
// swapped for free ones, and finds the output the README shows in what it printed.
func TestReadmeSession(t *testing.T) {
	for _, tool := range []string{"lego", "openssl", "curl", "bash"} {
		testutil.NeedTool(t, tool)
	}
	n := testutil.NewNix(t)
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	script := readmeBlock(t, readme, "<!-- first-steps -->")
	want := readmeBlock(t, readme, "<!-- first-steps-output -->")
	for _, port := range []string{"8443", "8080", "8501", "5002"} {
		_, free, _ := net.SplitHostPort(testutil.FreePort(t))
		script = strings.ReplaceAll(script, "127.0.0.1:"+port, "127.0.0.1:"+free)
		script = strings.ReplaceAll(script, "--acme-http-port "+port, "--acme-http-port "+free)
		want = strings.ReplaceAll(want, "127.0.0.1:"+port, "127.0.0.1:"+free)
	}

	dir, bin := t.TempDir(), t.TempDir()
	if err := os.Symlink(nixpkiBin(t), filepath.Join(bin, "nixpki")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(n.Env, "PATH="+bin+":"+os.Getenv("PATH"))
	// The session's servers run in the background: its process group is ended with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	if err != nil {
		t.Fatalf("the README session failed: %v\n%s\nserve.log:\n%s\ngate.log:\n%s", err, out.String(), readLog(dir, "serve.log"), readLog(dir, "gate.log"))
	}
	lines := strings.Split(runVarying(out.String()), "\n")
	for _, w := range strings.Split(strings.TrimSpace(runVarying(want)), "\n") {
		if !anyLineMatches(lines, w) {
			t.Errorf("README shows %q, but the session printed no such line:\n%s", w, out.String())
		}
	}
}

// Serials and fingerprints differ from run to run.
var (
	fingerprintRE = regexp.MustCompile(`([0-9A-F]{2}:){31}[0-9A-F]{2}`)
	serialRE      = regexp.MustCompile(`\b[0-9A-F]{32}\b`)
)

func runVarying(s string) string {
	return serialRE.ReplaceAllString(fingerprintRE.ReplaceAllString(s, "FINGERPRINT"), "SERIAL")
}

func readLog(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return string(b)
}

// anyLineMatches reports whether a line contains pattern's pieces in order, "…"
// standing for anything.
func anyLineMatches(lines []string, pattern string) bool {
	pieces := strings.Split(strings.TrimSpace(pattern), "…")
	for _, l := range lines {
		rest, ok := l, true
		for _, p := range pieces {
			i := strings.Index(rest, p)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(p):]
		}
		if ok {
			return true
		}
	}
	return false
}
