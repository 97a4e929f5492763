package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// WriteFuzzCorpus stores seeds as the corpus of the fuzz target named
// target under testdata/fuzz, typ being the Go type of the target's one
// argument ("string" or "[]byte"). It writes only when
// NIXPKI_WRITE_FUZZ_CORPUS=1 and otherwise skips: it is a tool for
// regenerating the checked-in seeds, not a check.
func WriteFuzzCorpus(t *testing.T, target, typ string, seeds []string) {
	t.Helper()
	if os.Getenv("NIXPKI_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("a tool, not a test (never skipped as a check in CI): set NIXPKI_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz seeds")
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n%s(%q)\n", typ, s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
