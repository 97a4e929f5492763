package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nixpki/internal/store"
)

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                   "alice",
		"a\nb\tc\r":               `a\nb\tc\r`,
		"\x1b[32missued\x1b[0m":   `\x1b[32missued\x1b[0m`,
		"x\u202eevil\u200b\ufeff": `x\u202eevil\u200b\ufeff`,
		"c1 \u009b31m":            `c1 \u009b31m`,
		"back\\slash":             `back\\slash`,
		"bad \xff utf8":           `bad \xff utf8`,
		"naïve café ✓":            "naïve café ✓",
		"del \x7f":                `del \x7f`,
		"tag \U000E0041":          `tag \U000e0041`,
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
	// JSON keeps its meaning: what jsonTermSafe writes decodes to the same value.
	in := map[string]string{"s": "a\u202e\u009b\x7f\"\\\n\U000E0041✓"}
	b, _ := json.Marshal(in)
	out := jsonTermSafe(string(b))
	var back map[string]string
	if err := json.Unmarshal([]byte(out), &back); err != nil || back["s"] != in["s"] {
		t.Fatalf("jsonTermSafe changed the JSON's meaning: %s -> %q (%v)", b, back, err)
	}
	if strings.ContainsAny(out, "\u202e\u009b\x7f\U000E0041") {
		t.Errorf("jsonTermSafe left a raw control or format character: %q", out)
	}
}

// A subject with a newline, tabs and ANSI codes, recorded by a refused attempt,
// prints as one escaped row: it cannot draw a fake "issued" row.
func TestNixAttemptsEscaped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	run(t, false, "init", "--dir", dir, "--name", "Esc", "--dns", "ca.internal")
	db, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "nixpki.db"))
	if err != nil {
		t.Fatal(err)
	}
	forged := "x\n2026-01-01T00:00:00Z\ttoken\tissued\talice\talice-1\t4A3F\t\x1b[32mok\x1b[0m\u202e"
	if err := db.AddNixAttempt(context.Background(), &store.NixAttempt{At: time.Now(), Method: "token", Outcome: "refused", Reason: "unknown token", Subject: forged}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out := run(t, false, "nix", "attempts", "--dir", dir)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || strings.ContainsAny(out, "\x1b\t\u202e") || !strings.Contains(lines[1], `x\n2026-01-01T00:00:00Z\ttoken\tissued`) {
		t.Fatalf("nix attempts printed the forged subject raw:\n%s", out)
	}
	js := run(t, false, "nix", "attempts", "--dir", dir, "--json")
	if strings.ContainsAny(js, "\x1b\u202e") {
		t.Fatalf("nix attempts --json printed a raw escape:\n%s", js)
	}
}
