package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProblemsNameEveryKey(t *testing.T) {
	ps := Problems([]byte(`{"nmae":"x","api_token":"t","acme":{"provisioners":[{"name":"a","max_body_bytes":-1.5,"key_typos":[]}]},"nix":{"ssh_principals":[{"targets":"host-a"}]},"policy":{"allow_wildcards":"yes"}}`), &Config{})
	var lines []string
	for _, p := range ps {
		lines = append(lines, p.Error())
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		`unknown key "nmae"`,
		`key "api_token": secrets are never read from the settings`,
		`key "acme.provisioners[0].max_body_bytes": expected a whole number (int64), got the number -1.5`,
		`unknown key "acme.provisioners[0].key_typos"`,
		`key "nix.ssh_principals[0].targets": expected a list, got the string "host-a"`,
		`key "policy.allow_wildcards": expected true or false, got the string "yes"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if len(ps) != 6 {
		t.Errorf("want 6 problems, got %d:\n%s", len(ps), got)
	}
	if ps := Problems([]byte(`[]`), &Config{}); len(ps) != 1 || !strings.Contains(ps[0].Error(), "must be a JSON object") {
		t.Errorf("a list as settings: %v", ps)
	}
}

func TestLoadDirRecordedState(t *testing.T) {
	dir := t.TempDir()
	st := State{Name: "Lab", KeyType: "p256", DNSNames: []string{"ca.lab.internal"}, IPAddresses: []string{"100.64.0.1"}, PermittedIP: []string{"100.64.0.0/10"}}
	b, _ := st.Marshal()
	os.WriteFile(filepath.Join(dir, StateFile), b, 0o640)
	sf := filepath.Join(dir, "settings.json")

	// Omitted creation-only keys keep the recorded values; equal ones in another
	// spelling are no contradiction.
	os.WriteFile(sf, []byte(`{"dns_names":["CA.lab.internal."],"permitted_ip":["100.64.1.0/10"],"listen":"127.0.0.1:9443"}`), 0o644)
	c, err := LoadDir(dir, sf)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Lab" || c.Listen != "127.0.0.1:9443" || c.IPAddresses[0] != "100.64.0.1" {
		t.Fatalf("loaded %+v", c)
	}
	os.WriteFile(sf, []byte(`{"name":"Lab2","ip_addresses":["100.64.0.2"]}`), 0o644)
	_, err = LoadDir(dir, sf)
	if err == nil || !strings.Contains(err.Error(), `name = "Lab2" contradicts the CA in `+dir+`, created with name = "Lab"`) ||
		!strings.Contains(err.Error(), `ip_addresses = ["100.64.0.2"] contradicts`) {
		t.Fatalf("contradiction: %v", err)
	}
	if _, err := LoadDir(dir, ""); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("a settings-made directory without settings: %v", err)
	}
}

func TestSecretPath(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/nixpki.service")
	for in, want := range map[string]string{
		"$CREDENTIALS_DIRECTORY/password":   "/run/credentials/nixpki.service/password",
		"${CREDENTIALS_DIRECTORY}/password": "/run/credentials/nixpki.service/password",
		"secrets/password":                  "/d/secrets/password",
		"/etc/pw":                           "/etc/pw",
	} {
		if got, err := SecretPath("/d", in); err != nil || got != want {
			t.Errorf("SecretPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := SecretPath("/d", "$CREDENTIALS_DIRECTORY/password"); err == nil || !strings.Contains(err.Error(), "LoadCredential") {
		t.Errorf("unset CREDENTIALS_DIRECTORY: %v", err)
	}
	if _, err := Parse([]byte(`{"password_file":"/nix/store/0000-pw"}`)); err == nil || !strings.Contains(err.Error(), "is in /nix/store") {
		t.Errorf("password_file in the store: %v", err)
	}
}

// A parse error keeps its cause for callers: the JSON syntax error and its offset.
func TestProblemsWrapSyntaxError(t *testing.T) {
	ps := Problems([]byte(`{"name": "x",}`), &Config{})
	var se *json.SyntaxError
	if len(ps) != 1 || !errors.As(ps[0], &se) || !strings.Contains(ps[0].Error(), "not valid JSON at byte") {
		t.Fatalf("Problems of broken JSON: %v, want one error wrapping *json.SyntaxError", ps)
	}
}
