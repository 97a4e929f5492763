package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nixpki/internal/testutil"
)

// startUntil runs argv (argv[0] a program path) with env added, and returns its
// output once a line contains ready; the process is interrupted and waited for when
// the test ends. A process that exits first fails the test with its output.
func startUntil(t *testing.T, argv, env []string, ready string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); exited <- err }()
	t.Cleanup(func() { cancel(); <-exited })
	lines := make(chan string)
	var all strings.Builder
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, pr)
	}()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s exited before it was ready:\n%s", strings.Join(argv, " "), all.String())
			}
			all.WriteString(l + "\n")
			if strings.Contains(l, ready) {
				go func() {
					for range lines {
					}
				}()
				return all.String()
			}
		case <-deadline:
			t.Fatalf("%s not ready within 60s:\n%s", strings.Join(argv, " "), all.String())
		}
	}
}

// runOK runs nixpki with extra environment and returns its output (stdout, then
// stderr) and whether it succeeded.
func runOK(t *testing.T, env []string, args ...string) (string, bool) {
	t.Helper()
	out, errOut, err := runEnv(t, env, args...)
	return out + errOut, err == nil
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// acmeDirectory fetches an ACME directory over HTTPS, trusting only root.
func acmeDirectory(t *testing.T, root, url string) map[string]any {
	t.Helper()
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var d map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	if _, ok := d["newOrder"]; !ok {
		t.Fatalf("%s is not an ACME directory: %v", url, d)
	}
	return d
}

// TestServeFromSettings: a CA comes up from a settings file alone on an empty state
// directory, which then holds only state; admin commands find it with --config or
// NIXPKI_CONFIG; a contradicting creation-only setting is refused naming both values.
func TestServeFromSettings(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "state")
	httpsAddr, httpAddr := testutil.FreePort(t), testutil.FreePort(t)
	creds := filepath.Join(tmp, "creds")
	os.Mkdir(creds, 0o700)
	os.WriteFile(filepath.Join(creds, "password"), []byte("correct horse battery staple\n"), 0o600)
	settings := map[string]any{"name": "Settings Lab", "dns_names": []string{"localhost"}, "ip_addresses": []string{"127.0.0.1"},
		"listen": httpsAddr, "http_listen": httpAddr, "password_file": "$CREDENTIALS_DIRECTORY/password",
		"acme": map[string]any{"http_port": 5002}}
	sf := filepath.Join(tmp, "settings.json")
	writeJSON(t, sf, settings)
	os.Chmod(sf, 0o444)
	if out, ok := runOK(t, nil, "config", "check", "--config", sf); !ok || !strings.Contains(out, "ok") {
		t.Fatalf("config check: %s", out)
	}
	credEnv := []string{"CREDENTIALS_DIRECTORY=" + creds}
	out := startUntil(t, []string{nixpkiBin(t), "serve", "--config", sf, "--dir", dir}, credEnv, "ACME directory:")
	if !strings.Contains(out, "Initialised CA in "+dir) {
		t.Fatalf("first start did not create the CA:\n%s", out)
	}
	acmeDirectory(t, filepath.Join(dir, "root.crt"), "https://localhost:"+strings.Split(httpsAddr, ":")[1]+"/acme/acme/directory")
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		t.Error("the state directory holds config.json; settings belong in the settings file")
	}
	if _, err := os.Stat(filepath.Join(dir, "secrets", "password")); err == nil {
		t.Error("a password was generated although password_file named a credential")
	}
	// The keys are encrypted with the credential's password.
	if o, err := openssl(t, "pkey", "-in", filepath.Join(dir, "secrets/tls-intermediate.key"), "-passin", "file:"+filepath.Join(creds, "password"), "-noout"); err != nil {
		t.Fatalf("openssl pkey with the credential: %v\n%s", err, o)
	}

	// Admin commands on the same directory.
	if o, ok := runOK(t, nil, "cert", "list", "--dir", dir); ok || !strings.Contains(o, "--config") {
		t.Fatalf("cert list without the settings: ok=%v\n%s", ok, o)
	}
	if o, ok := runOK(t, []string{"NIXPKI_CONFIG=" + sf}, "cert", "list", "--dir", dir); !ok {
		t.Fatalf("cert list with NIXPKI_CONFIG: %s", o)
	}
	leaf := filepath.Join(tmp, "web.crt")
	if o, ok := runOK(t, credEnv, "cert", "issue", "--config", sf, "--dir", dir, "--san", "web.localhost", "--out-cert", leaf, "--out-key", filepath.Join(tmp, "web.key")); !ok {
		t.Fatalf("cert issue --config: %s", o)
	}

	// A contradicting creation-only setting: an error naming both values.
	settings["name"] = "Other Lab"
	settings["key_type"] = "p384"
	sf2 := filepath.Join(tmp, "settings2.json")
	writeJSON(t, sf2, settings)
	o, ok := runOK(t, credEnv, "serve", "--config", sf2, "--dir", dir)
	if ok {
		t.Fatal("serve accepted settings contradicting the CA's creation")
	}
	wantIn(t, "contradicting start", o, `name = "Other Lab" contradicts the CA in `+dir+`, created with name = "Settings Lab"`,
		`key_type = "p384" contradicts`, `created with key_type = "p256"`)
	// A settings file and creation flags cannot both speak.
	if o, ok := runOK(t, credEnv, "serve", "--config", sf, "--dir", dir, "--name", "X"); ok || !strings.Contains(o, "set name in the settings") {
		t.Fatalf("--name with --config: %s", o)
	}
}

// TestServeSettingsOnInitDirectory: a directory made by `nixpki init` keeps working,
// with or without a settings file; the settings may change what is not creation-only.
func TestServeSettingsOnInitDirectory(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ca")
	run(t, false, "init", "--dir", dir, "--name", "Old", "--dns", "localhost")
	httpsAddr, httpAddr := testutil.FreePort(t), testutil.FreePort(t)
	sf := filepath.Join(tmp, "s.json")
	writeJSON(t, sf, map[string]any{"listen": httpsAddr, "http_listen": httpAddr, "policy": map[string]any{"default_validity": "720h"}})
	startUntil(t, []string{nixpkiBin(t), "serve", "--config", sf, "--dir", dir}, nil, "ACME directory:")
	acmeDirectory(t, filepath.Join(dir, "root.crt"), "https://localhost:"+strings.Split(httpsAddr, ":")[1]+"/acme/acme/directory")
	writeJSON(t, sf, map[string]any{"name": "New"})
	if o, ok := runOK(t, nil, "serve", "--config", sf, "--dir", dir); ok || !strings.Contains(o, `name = "New" contradicts the CA in `+dir+`, created with name = "Old"`) {
		t.Fatalf("contradicting settings on an init directory: %s", o)
	}
}

// TestConfigCheckProblems: every problem of a settings file on its own line, naming
// its key; nothing is created.
func TestConfigCheckProblems(t *testing.T) {
	tmp := t.TempDir()
	sf := filepath.Join(tmp, "bad.json")
	os.WriteFile(sf, []byte(`{"nmae":"x","password":"hunter2","acme":{"http_port":"80"},"policy":{"max_validity":"forever"}}`), 0o644)
	out, ok := runOK(t, nil, "config", "check", "--config", sf)
	if ok {
		t.Fatal("config check accepted a bad file")
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 problem lines, got:\n%s", out)
	}
	wantIn(t, "config check", out, `unknown key "nmae"`, `key "password": secrets are never read from the settings`,
		`key "acme.http_port": expected a whole number`, `key "policy.max_validity": bad duration "forever"`)
	os.WriteFile(sf, []byte(`{"password_file":"/nix/store/0000-pw","dns_names":["bad name"]}`), 0o644)
	out, _ = runOK(t, nil, "config", "check", "--config", sf)
	wantIn(t, "config check", out, "password_file /nix/store/0000-pw is in /nix/store")
	os.WriteFile(sf, []byte(`{"dns_names":["-bad-"]}`), 0o644)
	out, _ = runOK(t, nil, "config", "check", "--config", sf)
	wantIn(t, "config check", out, "dns_names")
	os.WriteFile(sf, []byte(`{"name":"g","sigs_neded":2}`), 0o644)
	out, _ = runOK(t, nil, "config", "check", "--gate", "--config", sf)
	wantIn(t, "config check --gate", out, `unknown key "sigs_neded"`)
	if ents, _ := os.ReadDir(tmp); len(ents) != 1 {
		t.Fatalf("config check created files: %v", ents)
	}
}

// TestGateServeFromSettings: a gate comes up from its settings, its key made before
// by `nixpki gate key generate` and read as a credential; a different key later is
// refused naming both.
func TestGateServeFromSettings(t *testing.T) {
	tmp := t.TempDir()
	caDir := filepath.Join(tmp, "ca")
	run(t, false, "init", "--dir", caDir, "--name", "GateLab")
	creds := filepath.Join(tmp, "creds")
	pub := gateKey(t, creds, "gate-key")
	addr := testutil.FreePort(t)
	sf := filepath.Join(tmp, "gate.json")
	writeJSON(t, sf, map[string]any{"name": "host-a", "listen": addr, "root_file": filepath.Join(caDir, "root.crt"),
		"key_file": "$CREDENTIALS_DIRECTORY/gate-key", "sigs_needed": 1})
	if o, ok := runOK(t, nil, "config", "check", "--gate", "--config", sf); !ok {
		t.Fatalf("config check --gate: %s", o)
	}
	gdir := filepath.Join(tmp, "gate")
	// What an interrupted first start leaves is cleared by the next.
	os.MkdirAll(filepath.Join(gdir, ".init-1234", "log"), 0o700)
	env := []string{"CREDENTIALS_DIRECTORY=" + creds}
	o := startUntil(t, []string{nixpkiBin(t), "gate", "serve", "--config", sf, "--dir", gdir}, env, "serving on")
	wantIn(t, "gate first start", o, "Gate host-a created in "+gdir, pub)
	if _, err := os.Stat(filepath.Join(gdir, "gate.sec")); err == nil {
		t.Error("the gate stored a key although key_file gave it")
	}
	if ents, _ := os.ReadDir(gdir); len(ents) == 0 || strings.HasPrefix(ents[0].Name(), ".init-") {
		t.Errorf("the gate directory after the first start: %v", ents)
	}
	resp, err := http.Get("http://" + addr + "/nix-cache-info")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("nix-cache-info: %s", resp.Status)
	}
	// Another key for the same gate.
	other := filepath.Join(tmp, "creds2")
	gateKey(t, other, "gate-key")
	o, ok := runOK(t, []string{"CREDENTIALS_DIRECTORY=" + other}, "gate", "serve", "--config", sf, "--dir", gdir, "--listen", testutil.FreePort(t))
	if ok {
		t.Fatal("gate serve accepted a different key")
	}
	wantIn(t, "gate with another key", o, "created with "+pub, "a gate's key cannot change")
}

// gateKey makes a key for gate host-a with `nixpki gate key generate`: the secret as
// dir/name (dir created 0700), the public half returned.
func gateKey(t *testing.T, dir, name string) string {
	t.Helper()
	os.Mkdir(dir, 0o700)
	out := run(t, false, "gate", "key", "generate", "--gate", "host-a", "--out-secret", filepath.Join(dir, name), "--out-public", filepath.Join(dir, name+".pub"))
	pub, _ := os.ReadFile(filepath.Join(dir, name+".pub"))
	if !strings.HasPrefix(string(pub), "host-a-gate-1:") || !strings.Contains(out, string(pub)) {
		t.Fatalf("gate key generate: %s (pub %s)", out, pub)
	}
	return strings.TrimSpace(string(pub))
}

// TestVersion: --version prints the version the build set (the package passes it with
// -ldflags -X main.version=…), else "devel" or Go's module version.
func TestVersion(t *testing.T) {
	if out := run(t, false, "--version"); !strings.HasPrefix(out, "nixpki ") || strings.TrimSpace(out) == "nixpki" {
		t.Fatalf("--version: %q", out)
	}
	old := version
	defer func() { version = old }()
	version = "1.2.3"
	if got := buildVersion(); got != "1.2.3" {
		t.Fatalf("buildVersion with main.version set: %q", got)
	}
}
