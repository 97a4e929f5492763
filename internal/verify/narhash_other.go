//go:build !linux

package verify

import "nixpki/internal/nix/nar"

// hashPath is the sha256 and size of a path's NAR (see the Linux version).
func hashPath(fsPath string, _ bool) ([32]byte, uint64, error) { return nar.HashPath(fsPath) }

// multiBufferOS says that hashPath cannot use multi-buffer SHA-256 here.
const multiBufferOS = false

func mbHashPath(string) ([32]byte, uint64, error) { panic("unreachable") }

// avx512 is false: multi-buffer hashing is for Linux.
func avx512() bool { return false }
