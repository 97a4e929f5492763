package nar

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// DumpPath writes large files' contents around its buffer (through the writer's
// ReadFrom, or straight from the copy buffer): the NAR is the same either way, and
// the same as writing every file through the buffer.
func TestDumpPathLargeFiles(t *testing.T) {
	root := t.TempDir()
	files := map[string][]byte{"a-small": []byte("small"), "b-big": make([]byte, directMin+12345), "c-exact": make([]byte, directMin), "d-small": []byte("x")}
	for name, data := range files {
		rand.Read(data)
		if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Every file through the buffer, by hand.
	var want bytes.Buffer
	nw := NewWriter(&want)
	nw.WriteHeader(&Entry{Path: "/", Type: Directory})
	for _, name := range []string{"a-small", "b-big", "c-exact", "d-small"} {
		nw.WriteHeader(&Entry{Path: "/" + name, Type: Regular, Size: int64(len(files[name]))})
		if _, err := nw.Write(files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}

	var viaReadFrom bytes.Buffer // bytes.Buffer is an io.ReaderFrom
	if err := DumpPath(&viaReadFrom, root); err != nil {
		t.Fatal(err)
	}
	var direct bytes.Buffer
	if err := DumpPath(writerOnly{&direct}, root); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(viaReadFrom.Bytes(), want.Bytes()) || !bytes.Equal(direct.Bytes(), want.Bytes()) {
		t.Fatalf("DumpPath's NARs differ from the buffered one (%d, %d, %d bytes)", viaReadFrom.Len(), direct.Len(), want.Len())
	}
	// A ReaderFrom reading in small pieces gets every byte.
	short := &shortWriter{}
	if err := DumpPath(short, root); err != nil {
		t.Fatal(err)
	}
	if int(short.n) != want.Len() {
		t.Fatalf("wrote %d bytes, want %d", short.n, want.Len())
	}
}

// shortWriter counts and has a ReadFrom that reads in small pieces.
type shortWriter struct{ n int64 }

func (s *shortWriter) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }

func (s *shortWriter) ReadFrom(r io.Reader) (int64, error) {
	var buf [1000]byte
	var n int64
	for {
		m, err := r.Read(buf[:])
		n += int64(m)
		s.n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
