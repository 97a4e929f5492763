package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// TreeSeeds are seed programs for fuzz targets built on BuildTree.
var TreeSeeds = [][]byte{
	[]byte("f\x05hello"),
	[]byte("d\x00f\x00x\x01l\x03abc.e\x10#!/bin/sh\necho hi\nd\x01.f\x00"),
	[]byte("f\xff" + strings.Repeat("z", 300)),
	[]byte("dddfx..l\x00e\x00"),
}

// FuzzTrees is a fuzz target over file trees: check runs on the tree of every input
// (FuzzTree), seeded with TreeSeeds.
func FuzzTrees(f *testing.F, check func(t *testing.T, root string)) {
	for _, seed := range TreeSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		if root := FuzzTree(t, prog); root != "" {
			check(t, root)
		}
	})
}

// FuzzTree builds prog's tree in a temporary directory and returns its root: a
// regular file holding the rest of prog when prog starts with 'f', else a directory
// (BuildTree). It returns "" for a program over 4 KiB, which a target skips.
func FuzzTree(t testing.TB, prog []byte) string {
	if len(prog) > 4096 {
		return ""
	}
	root := filepath.Join(t.TempDir(), "root")
	if len(prog) > 0 && prog[0] == 'f' {
		os.WriteFile(root, prog[1:], 0o644)
	} else {
		BuildTree(root, prog)
	}
	return root
}
