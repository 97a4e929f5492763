package verify

import "nixpki/internal/nix/nar"

// hashPath is nar.HashPath: the sha256 and size of a path's NAR, streamed, the
// tree walked with few system calls per file (nixkey's dumpfs_linux.go). With
// multi, the NARs of many paths are hashed at once (mbhash_linux.go).
func hashPath(fsPath string, multi bool) ([32]byte, uint64, error) {
	if multi {
		return mbHashPath(fsPath)
	}
	return nar.HashPath(fsPath)
}

// multiBufferOS says that hashPath can use multi-buffer SHA-256 here.
const multiBufferOS = true
