package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
)

// BuildTree builds a file tree under root from fuzz input, read as a small program:
// each step makes a file ('f', then a length byte and the contents), an executable
// ('e', likewise), a symlink ('l', then a length byte and the target) or a
// directory ('d', which it enters), or leaves the current directory ('.'). Names
// are distinct and in no particular order. Errors are ignored: a tree is whatever
// could be made.
func BuildTree(root string, prog []byte) {
	os.MkdirAll(root, 0o755)
	dir, n := root, 0
	name := func() string {
		n++
		h := sha256.Sum256([]byte{byte(n), byte(n >> 8)})
		return hex.EncodeToString(h[:3])
	}
	for i := 0; i < len(prog); i++ {
		size := 0
		if i+1 < len(prog) {
			size = int(prog[i+1])
		}
		data := prog[min(i+2, len(prog)):min(i+2+size, len(prog))]
		switch prog[i] {
		case 'f', 'e':
			mode := os.FileMode(0o644)
			if prog[i] == 'e' {
				mode = 0o755
			}
			os.WriteFile(filepath.Join(dir, name()), data, mode)
			i += 1 + len(data)
		case 'l':
			target := string(data)
			if target == "" || strings.ContainsRune(target, 0) {
				target = "x"
			}
			os.Symlink(target, filepath.Join(dir, name()))
			i += 1 + len(data)
		case 'd':
			dir = filepath.Join(dir, name())
			os.Mkdir(dir, 0o755)
		case '.':
			if dir != root {
				dir = filepath.Dir(dir)
			}
		}
	}
}
