package nixkey

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"nixpki/internal/testutil"
)

// FuzzDumpTree builds a file tree from the input (testutil.BuildTree) and checks that
// DumpPath (on Linux the walk by descriptor) writes the same NAR, or fails alike, as
// the portable walk through package os, whose output TestNixDumpMatches compares
// with nix-store --dump. It also checks DumpPathFrom from the NAR's middle.
func FuzzDumpTree(f *testing.F) {
	f.Add([]byte("f\x05hello"))
	f.Add([]byte("d\x00f\x00x\x01l\x03abc.e\x10#!/bin/sh\necho hi\nd\x01.f\x00"))
	f.Add([]byte("fx"))
	f.Add([]byte("dddfx..l\x00e\x00"))
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 4096 {
			return
		}
		root := filepath.Join(t.TempDir(), "root")
		if len(prog) > 0 && prog[0] == 'f' { // the root itself is a file
			os.WriteFile(root, prog[1:], 0o644)
		} else {
			testutil.BuildTree(root, prog)
		}
		var want bytes.Buffer
		nw := NewNARWriter(&want)
		wantErr := dumpNode(nw, root, "/")
		if wantErr == nil {
			wantErr = nw.Close()
		}
		var got bytes.Buffer
		err := DumpPath(&got, root)
		if (err == nil) != (wantErr == nil) || !bytes.Equal(got.Bytes(), want.Bytes()) && err == nil {
			t.Fatalf("DumpPath: %d bytes, %v; the walk through os: %d bytes, %v", got.Len(), err, want.Len(), wantErr)
		}
		if err != nil {
			return
		}
		off := int64(want.Len() / 2)
		var rest bytes.Buffer
		if err := DumpPathFrom(&rest, root, off); err != nil || !bytes.Equal(rest.Bytes(), want.Bytes()[off:]) {
			t.Fatalf("DumpPathFrom(%d): %d bytes, %v; want the last %d bytes of the NAR", off, rest.Len(), err, want.Len()-int(off))
		}
	})
}
