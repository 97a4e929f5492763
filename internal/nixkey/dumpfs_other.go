//go:build !linux

package nixkey

// dumpTree writes the NAR entries of the file-system object at fsPath (see
// dumpfs_linux.go for the version with fewer system calls).
func dumpTree(nw *NARWriter, fsPath string) error { return dumpNode(nw, fsPath, "/") }
