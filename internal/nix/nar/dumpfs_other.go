//go:build !linux

package nar

// dumpTree writes the NAR entries of the file-system object at fsPath (see
// dumpfs_linux.go for the version with fewer system calls).
func dumpTree(nw *Writer, fsPath string) error { return dumpNode(nw, fsPath, "/") }
