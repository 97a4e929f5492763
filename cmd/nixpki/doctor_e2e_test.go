package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/store"
	"nixpki/internal/testutil"
	"nixpki/internal/x509util"
)

// doctorRun runs nixpki doctor and returns its exit status and output.
func doctorRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return doctorRunEnv(t, nil, args...)
}

// doctorRunEnv is doctorRun with more environment.
func doctorRunEnv(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(nixpkiBin(t), append([]string{"doctor"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("nixpki doctor: %v", err)
	return 0, ""
}

// doctorCheck is one check of doctor --json.
type doctorCheck struct{ Name, Status, Detail string }

func doctorJSON(t *testing.T, dir string, args ...string) (int, []doctorCheck) {
	t.Helper()
	code, out := doctorRun(t, append([]string{"--dir", dir, "--json"}, args...)...)
	var r struct {
		Status string
		Checks []doctorCheck
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	return code, r.Checks
}

// wantFinding asserts that a check has the status and that its detail says each of
// wants; the other checks must be ok.
func wantFinding(t *testing.T, checks []doctorCheck, name, status string, wants ...string) {
	t.Helper()
	found := false
	for _, c := range checks {
		if c.Name == name {
			found = true
			if c.Status != status {
				t.Errorf("check %q is %s, want %s: %s", name, c.Status, status, c.Detail)
			}
			wantIn(t, name, c.Detail, wants...)
		} else if c.Status != "ok" {
			t.Errorf("check %q is %s: %s", c.Name, c.Status, c.Detail)
		}
	}
	if !found {
		t.Errorf("no check %q", name)
	}
}

// wantDoctor runs doctor --json on dir and checks its exit status and finding.
func wantDoctor(t *testing.T, dir string, exit int, name, status string, wants ...string) []doctorCheck {
	t.Helper()
	return wantDoctorArgs(t, dir, nil, exit, name, status, wants...)
}

// wantDoctorArgs is wantDoctor with more arguments.
func wantDoctorArgs(t *testing.T, dir string, args []string, exit int, name, status string, wants ...string) []doctorCheck {
	t.Helper()
	code, checks := doctorJSON(t, dir, args...)
	if code != exit {
		t.Errorf("exit %d, want %d (%s)", code, exit, status)
	}
	wantFinding(t, checks, name, status, wants...)
	return checks
}

func newDoctorCA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	run(t, false, "init", "--dir", dir, "--name", "Doctor")
	return dir
}

// TestDoctor runs nixpki doctor on a healthy CA and on CAs with one problem each,
// and checks the exit status and the check that names the problem.
func TestDoctor(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		dir := newDoctorCA(t)
		run(t, false, "cert", "issue", "--dir", dir, "--san", "web.lab.internal", "--valid", "2160h",
			"--out-cert", filepath.Join(t.TempDir(), "c.crt"), "--out-key", filepath.Join(t.TempDir(), "c.key"))
		code, out := doctorRun(t, "--dir", dir)
		if code != 0 {
			t.Fatalf("exit %d on a healthy CA:\n%s", code, out)
		}
		wantIn(t, "doctor", out, "Overall: ok", "1 name(s) issued for")
	})

	t.Run("intermediate expiring in 20 days", func(t *testing.T) {
		dir := newDoctorCA(t)
		resignIntermediate(t, dir, ca.IssuerTLS, time.Now().Add(20*24*time.Hour))
		wantDoctor(t, dir, 4, "tls intermediate validity", "critical", "in 19d", "less than 30d")
	})

	t.Run("stale CRL", func(t *testing.T) {
		dir := newDoctorCA(t)
		c, err := ca.Open(context.Background(), dir, "", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		c.Now = func() time.Time { return time.Now().Add(-10 * 24 * time.Hour) } // built ten days ago, valid seven
		if _, err := c.CRL(context.Background(), ca.IssuerNix); err != nil {
			t.Fatal(err)
		}
		c.Close()
		wantDoctor(t, dir, 4, "nix CRL freshness", "critical", "stale", "nextUpdate")
	})

	t.Run("key file 0644", func(t *testing.T) {
		dir := newDoctorCA(t)
		key := filepath.Join(dir, "secrets", "nix-intermediate.key")
		os.Chmod(key, 0o644)
		wantDoctor(t, dir, 4, "nix intermediate key permissions", "critical", key, "0644", "chmod 600")
	})

	t.Run("host stopped renewing", func(t *testing.T) {
		dir := newDoctorCA(t)
		tmp := t.TempDir()
		issue := func(name, valid string) {
			run(t, false, "cert", "issue", "--dir", dir, "--san", name, "--valid", valid,
				"--out-cert", filepath.Join(tmp, name+valid+".crt"), "--out-key", filepath.Join(tmp, name+valid+".key"))
		}
		issue("gone.lab.internal", "120h") // once, five days, never renewed
		issue("alive.lab.internal", "120h")
		issue("alive.lab.internal", "2160h") // renewed
		if code, out := doctorRun(t, "--dir", dir); code != 3 || !strings.Contains(out, "gone.lab.internal") {
			t.Errorf("exit %d, want 3 (warning) naming gone.lab.internal:\n%s", code, out)
		}
		checks := wantDoctor(t, dir, 3, "renewal", "warning", "1 host name(s) stopped renewing", "gone.lab.internal")
		for _, c := range checks {
			if strings.Contains(c.Detail, "alive.lab.internal") {
				t.Errorf("a renewed name reported: %s", c.Detail)
			}
		}
	})

	t.Run("CA created from a settings file", func(t *testing.T) {
		tmp := t.TempDir()
		dir, creds := filepath.Join(tmp, "state"), filepath.Join(tmp, "creds")
		os.Mkdir(creds, 0o700)
		os.WriteFile(filepath.Join(creds, "password"), []byte("correct horse battery staple\n"), 0o600)
		sf := filepath.Join(tmp, "settings.json")
		writeJSON(t, sf, map[string]any{"name": "Doctor", "dns_names": []string{"localhost"}, "ip_addresses": []string{"127.0.0.1"},
			"listen": testutil.FreePort(t), "http_listen": testutil.FreePort(t), "password_file": "$CREDENTIALS_DIRECTORY/password"})
		credEnv := []string{"CREDENTIALS_DIRECTORY=" + creds}
		startUntil(t, []string{nixpkiBin(t), "serve", "--config", sf, "--dir", dir}, credEnv, "ACME directory:")
		if code, out := doctorRunEnv(t, credEnv, "--config", sf, "--dir", dir); code != 0 {
			t.Errorf("doctor --config: exit %d:\n%s", code, out)
		}
		if code, out := doctorRunEnv(t, credEnv, "--dir", dir); code != 4 || !strings.Contains(out, "--config") {
			t.Errorf("doctor without the settings: exit %d, want 4 asking for --config:\n%s", code, out)
		}
		os.Chmod(filepath.Join(creds, "password"), 0o640)
		if code, out := doctorRunEnv(t, credEnv, "--config", sf, "--dir", dir); code != 4 || !strings.Contains(out, "chmod 600 "+filepath.Join(creds, "password")) {
			t.Errorf("doctor with a 0640 credential: exit %d, want 4 naming the chmod:\n%s", code, out)
		}
	})

	t.Run("offline root key left on the server", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ca")
		run(t, false, "init", "--dir", dir, "--name", "Doctor", "--offline-root")
		wantDoctor(t, dir, 3, "root key", "warning", "offline", "carry it")
		os.Remove(filepath.Join(dir, "offline", "root.key"))
		if code, out := doctorRun(t, "--dir", dir); code != 0 {
			t.Errorf("exit %d once the root key is carried away:\n%s", code, out)
		}
	})
}

// resignIntermediate replaces an intermediate's certificate with one for the same key
// and name that expires at notAfter, signed by the root, as a CA that let its
// intermediate run short would have it.
func resignIntermediate(t *testing.T, dir, issuer string, notAfter time.Time) {
	t.Helper()
	password, err := keys.ReadPassword(filepath.Join(dir, "secrets", "password"))
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := keys.LoadSigner(ca.KeyPath(dir, ca.IssuerRoot), password)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509util.ReadCertFile(ca.CertPath(dir, ca.IssuerRoot))
	inter, err := x509util.ReadCertFile(ca.CertPath(dir, issuer))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *inter
	tmpl.NotAfter = notAfter.UTC().Truncate(time.Second)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, root, inter.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := os.WriteFile(ca.CertPath(dir, issuer), x509util.ChainPEM(cert), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDoctorPostgres: doctor checks the database serve would use. With
// --database-url or NIXPKI_DATABASE_URL naming PostgreSQL, it reads the schema
// version, clock and CRLs there, not the SQLite file in the data directory.
func TestDoctorPostgres(t *testing.T) {
	owner, app, _, _ := pgRoles(t)
	dir := newDoctorCA(t)
	url := []string{"--database-url", app}
	wantDoctorArgs(t, dir, url, 4, "database", "critical", "schema version 0", "nixpki db migrate --dir "+dir)
	gone := "postgres://app:gone-pw@/nixpki?host=" + filepath.Join(t.TempDir(), "no-server")
	wantDoctorArgs(t, dir, []string{"--database-url", gone}, 4, "database", "critical", "cannot open", "app:xxxxx@")
	wantNoPassword(t, dir, gone, "gone-pw")

	run(t, false, "db", "migrate", "--dir", dir, "--database-url", owner)
	run(t, false, "db", "copy", "--from", dir, "--to", owner)
	wantDoctorArgs(t, dir, url, 0, "database", "ok", "reachable", "postgres "+store.RedactDSN(app))
	wantNoPassword(t, dir, app, "never-logged-pw")

	// A CRL built ten days ago, valid seven, in PostgreSQL only.
	t.Setenv(config.DatabaseURLEnv, owner)
	c, err := ca.Open(context.Background(), dir, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c.Now = func() time.Time { return time.Now().Add(-10 * 24 * time.Hour) }
	if _, err := c.CRL(context.Background(), ca.IssuerNix); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if c.DB.Dialect() != "postgres" {
		t.Fatalf("the CA opened %s, want postgres", c.DB.Dialect())
	}
	wantDoctor(t, dir, 4, "nix CRL freshness", "critical", "stale") // from NIXPKI_DATABASE_URL
	os.Unsetenv(config.DatabaseURLEnv)
	wantDoctor(t, dir, 0, "database", "ok", "sqlite "+filepath.Join(dir, "nixpki.db"))
}

// wantNoPassword checks that doctor's report on the database at url omits its password.
func wantNoPassword(t *testing.T, dir, url, password string) {
	t.Helper()
	if _, out := doctorRun(t, "--dir", dir, "--database-url", url); strings.Contains(out, password) {
		t.Errorf("doctor printed the database password:\n%s", out)
	}
}
