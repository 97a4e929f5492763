package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"nixpki/internal/config"
	"nixpki/internal/testutil"
)

// nixpkgsLib is a Nix expression for nixpkgs' lib: $NIXPKI_NIXPKGS_LIB, else the copy
// in shared/ beside the checkout, else <nixpkgs/lib> from NIX_PATH.
func nixpkgsLib(t *testing.T) string {
	t.Helper()
	cands := []string{os.Getenv("NIXPKI_NIXPKGS_LIB")}
	if root, err := filepath.Abs(filepath.Join("..", "..")); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(root), "shared", "nixpkgs-lib", "lib"))
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(c, "default.nix")); err == nil {
			abs, _ := filepath.Abs(c)
			return fmt.Sprintf("import (/. + %q)", abs)
		}
	}
	if strings.Contains(os.Getenv("NIX_PATH"), "nixpkgs") {
		return "import <nixpkgs/lib>"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nixpkgs lib not found: CI has it in ../shared/nixpkgs-lib/lib beside the checkout (or set NIXPKI_NIXPKGS_LIB, or NIX_PATH with nixpkgs)")
	}
	t.Skip("nixpkgs lib not found (set NIXPKI_NIXPKGS_LIB or NIX_PATH)")
	return ""
}

// moduleEval is what nix/tests/eval-module.nix reports.
type moduleEval struct {
	FailedAssertions []string `json:"failedAssertions"`
	Services         map[string]struct {
		ServiceConfig map[string]any `json:"serviceConfig"`
		WantedBy      []string       `json:"wantedBy"`
	} `json:"services"`
	Settings      map[string]any    `json:"settings"`
	GateSettings  map[string]any    `json:"gateSettings"`
	SettingsPaths map[string]string `json:"settingsPaths"`
	CheckScripts  map[string]string `json:"checkScripts"`
	Firewall      []int             `json:"firewall"`
	NixSettings   struct {
		Substituters      []string `json:"substituters"`
		TrustedPublicKeys []string `json:"trusted-public-keys"`
	} `json:"nixSettings"`
	PKI        []string `json:"pki"`
	ACMEServer string   `json:"acmeServer"`
}

// fakePackage is the store path the evaluated units name for the package.
const fakePackage = "/nix/store/11111111111111111111111111111111-nixpki"

// evalModule evaluates nix/module.nix with the NixOS configuration caseNix.
func evalModule(t *testing.T, caseNix string) moduleEval {
	t.Helper()
	out, err := evalModuleRaw(t, caseNix)
	if err != nil {
		t.Fatal(err)
	}
	var ev moduleEval
	if err := json.Unmarshal(out, &ev); err != nil {
		t.Fatalf("eval output: %v\n%s", err, out)
	}
	return ev
}

// evalModuleRaw runs the evaluation; an error carries nix-instantiate's message.
func evalModuleRaw(t *testing.T, caseNix string) ([]byte, error) {
	t.Helper()
	nixInst := testutil.NeedTool(t, "nix-instantiate")
	lib := nixpkgsLib(t)
	dir := t.TempDir()
	casePath := filepath.Join(dir, "case.nix")
	os.WriteFile(casePath, []byte(caseNix), 0o644)
	harness, _ := filepath.Abs(filepath.Join("..", "..", "nix", "tests", "eval-module.nix"))
	cmd := exec.Command(nixInst, "--eval", "--strict", "--json", "--readonly-mode", harness, "--arg", "lib", lib, "--arg", "case", casePath)
	cmd.Env = append(os.Environ(), "NIX_CONFIG=experimental-features = nix-command\nbuild-users-group =\nsubstituters =")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nix-instantiate: %v\n%s", err, stderr.String())
	}
	return out, nil
}

// caCase is a CA host's configuration as a user writes it.
func caCase(name, listen, httpListen string) string {
	return fmt.Sprintf(`{
  services.nixpki = {
    enable = true;
    package = { type = "derivation"; name = "nixpki"; outPath = %q; };
    passwordFile = "/run/keys/nixpki-password";
    openFirewall = true;
    settings = {
      name = %q;
      dns_names = [ "localhost" ];
      ip_addresses = [ "127.0.0.1" ];
      listen = %q;
      http_listen = %q;
      acme.http_port = 5002;
      policy.default_validity = "720h";
    };
  };
}`, fakePackage, name, listen, httpListen)
}

// TestNixOSModule evaluates nix/module.nix with nixpkgs' module system, checks the
// generated unit, validates its settings with `nixpki config check`, then runs the
// unit's ExecStart (store paths mapped to the built binary and temp files, systemd's
// credential directory simulated): the CA comes up from the settings alone and
// serves its ACME directory; a later contradicting settings file is refused.
func TestNixOSModule(t *testing.T) {
	httpsAddr, httpAddr := testutil.FreePort(t), testutil.FreePort(t)
	ev := evalModule(t, caCase("Module Lab", httpsAddr, httpAddr))
	if len(ev.FailedAssertions) > 0 {
		t.Fatalf("assertions failed: %v", ev.FailedAssertions)
	}
	unit, ok := ev.Services["nixpki"]
	if !ok {
		t.Fatalf("no systemd.services.nixpki: %v", ev.Services)
	}
	sc := unit.ServiceConfig
	settingsPath := ev.SettingsPaths["nixpki/settings.json"]
	execStart := strings.Fields(fmt.Sprint(sc["ExecStart"]))
	want := []string{fakePackage + "/bin/nixpki", "serve", "--config", settingsPath, "--dir", "/var/lib/nixpki"}
	if strings.Join(execStart, " ") != strings.Join(want, " ") {
		t.Fatalf("ExecStart = %q, want %q", execStart, want)
	}
	for key, want := range map[string]any{
		"DynamicUser": true, "StateDirectory": "nixpki", "UMask": "0077", "ProtectSystem": "strict",
		"NoNewPrivileges": true, "LoadCredential": []any{"password:/run/keys/nixpki-password"},
		"SystemCallFilter": []any{"@system-service", "~@privileged"}, "CapabilityBoundingSet": []any{""},
	} {
		if got, _ := json.Marshal(sc[key]); string(got) != mustJSON(want) {
			t.Errorf("serviceConfig.%s = %s, want %s", key, got, mustJSON(want))
		}
	}
	if fmt.Sprint(unit.WantedBy) != "[multi-user.target]" {
		t.Errorf("wantedBy %v", unit.WantedBy)
	}
	if !strings.Contains(ev.CheckScripts["nixpki/settings.json"], fakePackage+"/bin/nixpki config check") {
		t.Errorf("the settings are not checked at build time: %q", ev.CheckScripts["nixpki/settings.json"])
	}
	wantPorts := fmt.Sprint([]string{strings.Split(httpsAddr, ":")[1], strings.Split(httpAddr, ":")[1]})
	if got := fmt.Sprint(ev.Firewall); got != wantPorts {
		t.Errorf("firewall opens %v, want %v", got, wantPorts)
	}
	if ev.Settings["password_file"] != "$CREDENTIALS_DIRECTORY/password" || ev.Settings["name"] != "Module Lab" {
		t.Errorf("settings JSON: %v", ev.Settings)
	}

	// The settings JSON passes the program's own check.
	tmp := t.TempDir()
	settingsFile := filepath.Join(tmp, "settings.json")
	writeJSON(t, settingsFile, ev.Settings)
	run(t, false, "config", "check", "--config", settingsFile)

	// Run the unit's command line as systemd would.
	creds := filepath.Join(tmp, "credentials")
	os.Mkdir(creds, 0o700)
	os.WriteFile(filepath.Join(creds, "password"), []byte("module test password\n"), 0o400)
	stateDir := filepath.Join(tmp, "var-lib-nixpki")
	os.Mkdir(stateDir, 0o700) // StateDirectory= creates it empty
	argv := mapArgs(execStart, map[string]string{fakePackage + "/bin/nixpki": nixpkiBin(t), settingsPath: settingsFile, "/var/lib/nixpki": stateDir})
	env := []string{"CREDENTIALS_DIRECTORY=" + creds}
	out := startUntil(t, argv, env, "ACME directory:")
	wantIn(t, "first start", out, "Initialised CA in "+stateDir)
	acmeDirectory(t, filepath.Join(stateDir, "root.crt"), "https://localhost:"+strings.Split(httpsAddr, ":")[1]+"/acme/acme/directory")

	// The same host later configured with another CA name.
	ev2 := evalModule(t, caCase("Renamed Lab", testutil.FreePort(t), testutil.FreePort(t)))
	settings2 := filepath.Join(tmp, "settings2.json")
	writeJSON(t, settings2, ev2.Settings)
	argv2 := mapArgs(strings.Fields(fmt.Sprint(ev2.Services["nixpki"].ServiceConfig["ExecStart"])),
		map[string]string{fakePackage + "/bin/nixpki": nixpkiBin(t), ev2.SettingsPaths["nixpki/settings.json"]: settings2, "/var/lib/nixpki": stateDir})
	cmd := exec.Command(argv2[0], argv2[1:]...)
	cmd.Env = append(os.Environ(), env...)
	o, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("the CA started with a contradicting name")
	}
	wantIn(t, "contradicting start", string(o), `name = "Renamed Lab" contradicts the CA in `+stateDir+`, created with name = "Module Lab"`)
}

// TestNixOSModuleGate: the gate on a target, its key made before deployment; the
// target's Nix substitutes from it and trusts only its key; the unit's command line
// brings the gate up from its settings.
func TestNixOSModuleGate(t *testing.T) {
	tmp := t.TempDir()
	caDir := filepath.Join(tmp, "ca")
	run(t, false, "init", "--dir", caDir, "--name", "GateModuleLab")
	keys := filepath.Join(tmp, "keys")
	pub := gateKey(t, keys, "gate.sec")
	listen := testutil.FreePort(t)
	ev := evalModule(t, fmt.Sprintf(`{
  services.nixpki-gate = {
    enable = true;
    package = { type = "derivation"; name = "nixpki"; outPath = %q; };
    rootCertificate = %q;
    keyFile = "/run/keys/nixpki-gate-key";
    publicKey = %q;
    settings = { name = "host-a"; listen = %q; sigs_needed = 1; };
  };
  security.nixpki.trust = { roots = [ %q ]; acmeServer = "https://ca.lab.internal:8443/acme/acme/directory"; };
}`, fakePackage, filepath.Join(caDir, "root.crt"), pub, listen, filepath.Join(caDir, "root.crt")))
	if len(ev.FailedAssertions) > 0 {
		t.Fatalf("assertions failed: %v", ev.FailedAssertions)
	}
	if fmt.Sprint(ev.NixSettings.Substituters) != "[http://"+listen+"]" || fmt.Sprint(ev.NixSettings.TrustedPublicKeys) != "["+pub+"]" {
		t.Errorf("nix.settings: %+v", ev.NixSettings)
	}
	if fmt.Sprint(ev.PKI) != "["+filepath.Join(caDir, "root.crt")+"]" || ev.ACMEServer != "https://ca.lab.internal:8443/acme/acme/directory" {
		t.Errorf("security.nixpki.trust: pki %v, acme %q", ev.PKI, ev.ACMEServer)
	}
	sc := ev.Services["nixpki-gate"].ServiceConfig
	if got := mustJSON(sc["LoadCredential"]); got != `["gate-key:/run/keys/nixpki-gate-key"]` {
		t.Errorf("LoadCredential %s", got)
	}
	settingsFile := filepath.Join(tmp, "gate.json")
	writeJSON(t, settingsFile, ev.GateSettings)
	run(t, false, "config", "check", "--gate", "--config", settingsFile)

	creds := filepath.Join(tmp, "credentials")
	os.Mkdir(creds, 0o700)
	sec, _ := os.ReadFile(filepath.Join(keys, "gate.sec"))
	os.WriteFile(filepath.Join(creds, "gate-key"), sec, 0o400)
	stateDir := filepath.Join(tmp, "var-lib-nixpki-gate")
	os.Mkdir(stateDir, 0o700)
	argv := mapArgs(strings.Fields(fmt.Sprint(sc["ExecStart"])), map[string]string{fakePackage + "/bin/nixpki": nixpkiBin(t),
		ev.SettingsPaths["nixpki/gate.json"]: settingsFile, "/var/lib/nixpki-gate": stateDir})
	out := startUntil(t, argv, []string{"CREDENTIALS_DIRECTORY=" + creds}, "serving on")
	wantIn(t, "gate first start", out, "Gate host-a created", pub)
}

// TestNixOSModuleRefuses: what the module refuses at evaluation.
func TestNixOSModuleRefuses(t *testing.T) {
	ev := evalModule(t, fmt.Sprintf(`{
  services.nixpki = { enable = true; package = { type = "derivation"; name = "nixpki"; outPath = %q; };
    passwordFile = "/nix/store/22222222222222222222222222222222-password"; };
  services.nixpki-gate = { enable = true; package = { type = "derivation"; name = "nixpki"; outPath = %q; };
    rootCertificate = "/etc/root.crt"; keyFile = "/nix/store/33333333333333333333333333333333-gate-key"; publicKey = "g-gate-1:x"; };
}`, fakePackage, fakePackage))
	all := strings.Join(ev.FailedAssertions, "\n")
	// A setting of the wrong type fails the evaluation, naming the option.
	_, err := evalModuleRaw(t, fmt.Sprintf(`{ services.nixpki = { enable = true; package = { type = "derivation"; name = "nixpki"; outPath = %q; };
    settings.listen = 8443; }; }`, fakePackage))
	if err == nil || !strings.Contains(err.Error(), "services.nixpki.settings.listen") || !strings.Contains(err.Error(), "is not of type") {
		t.Errorf("listen = 8443: %v", err)
	}
	wantIn(t, "assertions", all, "services.nixpki.passwordFile is /nix/store/22222222222222222222222222222222-password: a secret must not be in /nix/store",
		"services.nixpki-gate.keyFile is /nix/store/33333333333333333333333333333333-gate-key")
}

func mapArgs(argv []string, m map[string]string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if v, ok := m[a]; ok {
			a = v
		}
		out[i] = a
	}
	return out
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestREADMEModuleBlocks: the README's NixOS blocks, copied as a user would, evaluate
// with the module, and their settings pass `nixpki config check`.
func TestREADMEModuleBlocks(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	i := strings.Index(section, "## Deploy on NixOS")
	if i < 0 {
		t.Fatal(`README has no "## Deploy on NixOS" section`)
	}
	section = section[i:]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	var blocks []string
	for _, part := range strings.Split(section, "```nix\n")[1:] {
		blocks = append(blocks, part[:strings.Index(part, "```")])
	}
	if len(blocks) != 3 {
		t.Fatalf("want the CA, gate and client blocks, found %d", len(blocks))
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.crt"), []byte("not read at evaluation\n"), 0o644)
	pkg := fmt.Sprintf(`{ type = "derivation"; name = "nixpki"; outPath = %q; }`, fakePackage)
	var mods []string
	for i, b := range blocks {
		b = strings.ReplaceAll(b, "nixpki.nixosModules.default", "")
		p := filepath.Join(dir, fmt.Sprintf("block%d.nix", i))
		os.WriteFile(p, []byte(b), 0o644)
		mods = append(mods, p)
	}
	ev := evalModule(t, fmt.Sprintf(`{ imports = [ %s ]; services.nixpki.package = %s; services.nixpki-gate.package = %s; }`, strings.Join(mods, " "), pkg, pkg))
	if len(ev.FailedAssertions) > 0 {
		t.Fatalf("assertions: %v", ev.FailedAssertions)
	}
	if ev.Settings["name"] != "Lab" || ev.GateSettings["name"] != "host-a" || ev.ACMEServer != "https://ca.lab.internal:8443/acme/acme/directory" {
		t.Fatalf("README blocks evaluated to settings %v, gate %v, acme %q", ev.Settings, ev.GateSettings, ev.ACMEServer)
	}
	for name, s := range map[string]map[string]any{"ca.json": ev.Settings, "gate.json": ev.GateSettings} {
		f := filepath.Join(dir, name)
		writeJSON(t, f, s)
		args := []string{"config", "check", "--config", f}
		if name == "gate.json" {
			args = append(args, "--gate")
		}
		run(t, false, args...)
	}
}

// TestModuleSnippet: `nixpki nixos module-snippet` prints a block the module accepts,
// carrying the directory's creation-only settings.
func TestModuleSnippet(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ca")
	run(t, false, "init", "--dir", dir, "--name", `Snip "Lab"`, "--dns", "ca.lab.internal", "--permitted-dns", "lab.internal", "--key-type", "p384")
	snippet := run(t, false, "nixos", "module-snippet", "--dir", dir)
	snippet = strings.ReplaceAll(snippet, "./root.crt", fmt.Sprintf("%q", filepath.Join(dir, "root.crt")))
	ev := evalModule(t, fmt.Sprintf("{\n%s\nservices.nixpki.package = { type = \"derivation\"; name = \"nixpki\"; outPath = %q; };\n}", snippet, fakePackage))
	if len(ev.FailedAssertions) > 0 {
		t.Fatalf("assertions: %v", ev.FailedAssertions)
	}
	if ev.Settings["name"] != `Snip "Lab"` || ev.Settings["key_type"] != "p384" || mustJSON(ev.Settings["dns_names"]) != `["ca.lab.internal"]` || mustJSON(ev.Settings["permitted_dns"]) != `["lab.internal"]` {
		t.Fatalf("snippet settings: %v\n%s", ev.Settings, snippet)
	}
	// The directory starts under those settings unchanged.
	f := filepath.Join(tmp, "s.json")
	writeJSON(t, f, ev.Settings)
	run(t, false, "config", "check", "--config", f)
	if _, err := config.LoadDir(dir, f); err != nil {
		t.Fatalf("the snippet's settings contradict the directory: %v", err)
	}
}
