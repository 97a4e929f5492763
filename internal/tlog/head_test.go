package tlog

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readHeadFile(t *testing.T, dir string) Head {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, HeadFile))
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHead(bytes.TrimSpace(b))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The head file is a checkpoint written at most once per interval while entries
// come, then by the timer and on Close: a lagging head file verifies, and the log
// catches it up.
func TestHeadFileCheckpoint(t *testing.T) {
	dir, key := makeLog(t, 0)
	l, err := Open(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	l.headEvery = time.Hour // no rewrite by time during the test; the timer never fires
	for i := range 5 {
		if _, _, err := l.Append("admission", i); err != nil {
			t.Fatal(err)
		}
	}
	if h := readHeadFile(t, dir); h.Size != 1 {
		t.Fatalf("head file size %d after 5 quick appends, want 1 (the first append's)", h.Size)
	}
	v, err := Verify(dir, pubOf(key))
	if err != nil {
		t.Fatalf("a log ahead of its head file: %v", err)
	}
	if len(v.Records) != 5 || !bytes.Equal(v.Head.marshal(), l.Head().marshal()) {
		t.Fatalf("verified %d records, head %+v; want 5, %+v", len(v.Records), v.Head, l.Head())
	}
	// The timer's flush catches the head file up.
	l.flushHead()
	if h := readHeadFile(t, dir); !bytes.Equal(h.marshal(), l.Head().marshal()) {
		t.Fatalf("after the flush the head file has size %d, want %d", h.Size, l.Head().Size)
	}
	l.Append("admission", 5)
	if h := readHeadFile(t, dir); h.Size != 5 {
		t.Fatalf("head file size %d, want 5", h.Size)
	}
	// Close writes it.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if h := readHeadFile(t, dir); h.Size != 6 {
		t.Fatalf("head file size %d after Close, want 6", h.Size)
	}
	l.flushHead() // a timer firing after Close writes nothing
	if err := l.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}
	// A cut of entries the head file names is still found.
	path := filepath.Join(dir, EntriesFile)
	data, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(data, []byte("\n"))
	os.WriteFile(path, bytes.Join(lines[:4], nil), 0o600)
	if _, err := Verify(dir, pubOf(key)); err == nil {
		t.Fatal("a log cut below its head file verified")
	}
}

// AppendNoSync writes entries that one Sync makes durable: Head and the head file
// name them only from then on, and the log verifies with them.
func TestGroupCommit(t *testing.T) {
	dir, key := makeLog(t, 0)
	l, err := Open(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	before := l.Head()
	var last Head
	for i := range 3 {
		if _, last, err = l.AppendNoSync("admission", i); err != nil {
			t.Fatal(err)
		}
	}
	if h := l.Head(); h.Size != before.Size {
		t.Fatalf("Head has %d entries before Sync, want %d (the unsynced ones left out)", h.Size, before.Size)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if h := l.Head(); h.Size != before.Size+3 || h.Root != last.Root {
		t.Fatalf("Head after Sync: %d entries, root %s; want %d, %s", h.Size, h.Root, before.Size+3, last.Root)
	}
	// Close syncs what AppendNoSync left.
	if _, _, err := l.AppendNoSync("admission", 3); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(dir, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if v.Head.Size != before.Size+4 || readHeadFile(t, dir).Size != before.Size+4 {
		t.Fatalf("after Close: log of %d entries, head file of %d; want %d", v.Head.Size, readHeadFile(t, dir).Size, before.Size+4)
	}
}
