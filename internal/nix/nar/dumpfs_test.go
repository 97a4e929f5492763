package nar

import (
	"bytes"
	"testing"

	"nixpki/internal/testutil"
)

// FuzzDumpTree builds a file tree from the input (testutil.BuildTree) and checks that
// DumpPath (on Linux the walk by descriptor, which TestNixDumpPath compares with
// nix-store --dump) writes the same NAR, or fails alike, as the portable walk through
// package os. It also checks DumpPathFrom from the NAR's middle.
func FuzzDumpTree(f *testing.F) {
	testutil.FuzzTrees(f, func(t *testing.T, root string) {
		var want bytes.Buffer
		nw := NewWriter(&want)
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
