package testutil

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// FilesBytes returns n bytes of the regular files under root whose names end in
// suffix, in path order (repeated if they are fewer).
func FilesBytes(tb testing.TB, root, suffix string, n int) []byte {
	tb.Helper()
	var data []byte
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if len(data) >= n {
			return filepath.SkipAll
		}
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(path, suffix) {
			if b, err := os.ReadFile(path); err == nil {
				data = append(data, b[:min(len(b), n-len(data))]...)
			}
		}
		return nil
	})
	if len(data) == 0 {
		tb.Fatalf("no files *%s under %s", suffix, root)
	}
	for len(data) < n {
		data = append(data, data[:min(len(data), n-len(data))]...)
	}
	return data
}

// GoSource returns n bytes of the Go installation's own Go source, in path
// order: text that compresses like a store path's sources, and the same for
// every checkout of this repository.
func GoSource(tb testing.TB, n int) []byte {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		tb.Fatal("go env GOROOT:", err)
	}
	return FilesBytes(tb, filepath.Join(strings.TrimSpace(string(out)), "src"), ".go", n)
}
