package nar

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// narBytes encodes NAR strings; file contents are strings too.
func narBytes(ss ...string) []byte {
	var b bytes.Buffer
	for _, s := range ss {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
		b.Write(make([]byte, narPad(uint64(len(s)))))
	}
	return b.Bytes()
}

// entry wraps a node as a directory entry.
func entry(name string, node []string) []string {
	return append(append([]string{"entry", "(", "name", name, "node"}, node...), ")")
}

func regular(contents string) []string {
	return []string{"(", "type", "regular", "contents", contents, ")"}
}

func executable(contents string) []string {
	return []string{"(", "type", "regular", "executable", "", "contents", contents, ")"}
}

func symlink(target string) []string {
	return []string{"(", "type", "symlink", "target", target, ")"}
}

func directory(entries ...[]string) []string {
	out := []string{"(", "type", "directory"}
	for _, e := range entries {
		out = append(out, e...)
	}
	return append(out, ")")
}

func nar(root []string) []byte {
	return narBytes(append([]string{narMagic}, root...)...)
}

// sampleNAR is a small valid NAR with every kind of entry.
func sampleNAR() []byte {
	return nar(directory(
		entry("a", regular("hello")),
		entry("b", directory(
			entry("x", executable("#!/bin/sh\n")),
			entry("y", directory()),
		)),
		entry("c", symlink("a")),
		entry("d", regular("")),
	))
}

var sampleEntries = []string{
	"{/ directory 0 }",
	"{/a regular 5 }",
	"{/b directory 0 }",
	"{/b/x executable 10 }",
	"{/b/y directory 0 }",
	"{/c symlink 0 a}",
	"{/d regular 0 }",
}

// rewriteNAR reads a NAR and writes its entries back with Writer.
func rewriteNAR(data []byte) (entries []string, out []byte, err error) {
	nr := NewReader(bytes.NewReader(data))
	var buf bytes.Buffer
	nw := NewWriter(&buf)
	for {
		e, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return entries, nil, err
		}
		entries = append(entries, fmt.Sprint(*e))
		if err := nw.WriteHeader(e); err != nil {
			return entries, nil, fmt.Errorf("Writer refused an entry Reader accepted: %w", err)
		}
		if _, err := io.Copy(nw, nr); err != nil {
			return entries, nil, err
		}
	}
	if err := nw.Close(); err != nil {
		return entries, nil, err
	}
	return entries, buf.Bytes(), nil
}

func readAndRewrite(t *testing.T, data []byte) ([]string, []byte) {
	t.Helper()
	entries, out, err := rewriteNAR(data)
	if err != nil {
		t.Fatalf("reading NAR: %v", err)
	}
	return entries, out
}

func TestNARReaderSample(t *testing.T) {
	data := sampleNAR()
	nr := NewReader(bytes.NewReader(data))
	var got []string
	contents := map[string]string{}
	for {
		e, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(*e))
		b, err := io.ReadAll(nr)
		if err != nil {
			t.Fatal(err)
		}
		contents[e.Path] = string(b)
	}
	if !slices.Equal(got, sampleEntries) {
		t.Errorf("entries:\n%q\nwant\n%q", got, sampleEntries)
	}
	if contents["/a"] != "hello" || contents["/b/x"] != "#!/bin/sh\n" || contents["/c"] != "" {
		t.Errorf("contents: %q", contents)
	}
	if nr.Offset() != int64(len(data)) {
		t.Errorf("Offset() = %d, want %d", nr.Offset(), len(data))
	}
	if _, err := nr.Next(); err != io.EOF {
		t.Errorf("Next after EOF = %v", err)
	}
	// Skipping contents works too, and writing back is byte-identical.
	if _, out := readAndRewrite(t, data); !bytes.Equal(out, data) {
		t.Error("round trip changed the archive")
	}
	sum, size, err := Check(bytes.NewReader(data))
	if want, _, _ := Hash(bytes.NewReader(data)); err != nil || size != uint64(len(data)) || sum != want {
		t.Errorf("Check = %x, %d, %v", sum, size, err)
	}
}

// badNARs are malformed archives, with what the error must mention. They
// double as fuzz seeds.
func badNARs() []struct {
	name    string
	data    []byte
	errPart string
} {
	valid := sampleNAR()
	withPadding := slices.Clone(nar(directory(entry("a", regular("hello")))))
	// "hello" is followed by 3 padding bytes before the final ")" strings.
	withPadding[len(withPadding)-3*16-1] = 1
	huge := narBytes(narMagic, "(", "type", "regular", "contents")
	huge = binary.LittleEndian.AppendUint64(huge, math.MaxUint64)
	big := narBytes(narMagic, "(", "type", "regular", "contents")
	big = binary.LittleEndian.AppendUint64(big, 1<<40)
	big = append(big, "abc"...)
	longName := narBytes(narMagic, "(", "type", "directory", "entry", "(", "name")
	longName = binary.LittleEndian.AppendUint64(longName, 1<<62)
	return []struct {
		name    string
		data    []byte
		errPart string
	}{
		{"empty", nil, "truncated"},
		{"bad magic", narBytes("nix-archive-2", "(", "type", "symlink", "target", "x", ")"), "expected \"nix-archive-1\""},
		{"truncated", valid[:len(valid)-8], "truncated"},
		{"truncated in contents", valid[:200], "truncated"},
		{"trailing data", append(slices.Clone(valid), 0), "after the end"},
		{"slash in name", nar(directory(entry("a/b", regular("")))), "contains '/'"},
		{"dotdot name", nar(directory(entry("..", regular("")))), "'.' or '..'"},
		{"dot name", nar(directory(entry(".", regular("")))), "'.' or '..'"},
		{"empty name", nar(directory(entry("", regular("")))), "is empty"},
		{"NUL in name", nar(directory(entry("a\x00b", regular("")))), "NUL"},
		{"duplicate", nar(directory(entry("a", regular("")), entry("a", regular("")))), "duplicate"},
		{"unsorted", nar(directory(entry("b", regular("")), entry("a", regular("")))), "sorted"},
		{"huge size", huge, "impossible size"},
		{"big size, short data", big, "truncated"},
		{"huge name length", longName, "at most 4096"},
		{"non-zero padding", withPadding, "padding"},
		{"unknown type", nar([]string{"(", "type", "fifo", ")"}), "unknown type"},
		{"executable value", nar([]string{"(", "type", "regular", "executable", "x", "contents", "", ")"}), `expected ""`},
		{"executable after contents", nar([]string{"(", "type", "regular", "contents", "", "executable", "", ")"}), `expected ")"`},
		{"empty symlink", nar(symlink("")), "empty target"},
		{"NUL symlink", nar(symlink("a\x00")), "NUL"},
		{"missing entry close", narBytes(narMagic, "(", "type", "directory", "entry", "(", "name", "a", "node", "(", "type", "symlink", "target", "x", ")", ")"), "truncated"},
		{"junk in directory", nar([]string{"(", "type", "directory", "junk", ")"}), `"entry" or ")"`},
		{"two roots", append(nar(symlink("x")), narBytes("(")...), "after the end"},
	}
}

func TestNARReaderRejects(t *testing.T) {
	for _, c := range badNARs() {
		_, _, err := rewriteNAR(c.data)
		if err == nil || !strings.Contains(err.Error(), c.errPart) {
			t.Errorf("%s: error = %v, want one mentioning %q", c.name, err, c.errPart)
		}
		if _, _, err2 := Check(bytes.NewReader(c.data)); err2 == nil {
			t.Errorf("%s: Check accepted it", c.name)
		}
	}
	// Every proper prefix of a valid NAR is truncated.
	valid := sampleNAR()
	for i := 0; i < len(valid); i++ {
		_, _, err := rewriteNAR(valid[:i])
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("prefix of %d bytes: error = %v, want io.ErrUnexpectedEOF", i, err)
		}
	}
	// Errors are sticky.
	nr := NewReader(bytes.NewReader(valid[:100]))
	var first error
	for first == nil {
		_, first = nr.Next()
	}
	if _, err := nr.Next(); err != first {
		t.Errorf("second Next = %v, want %v", err, first)
	}
}

func TestNARWriterErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []Entry
		write   string
		errPart string
	}{
		{"not root first", []Entry{{Path: "/a", Type: Directory}}, "", "root"},
		{"unsorted", []Entry{{Path: "/", Type: Directory}, {Path: "/b", Type: Directory}, {Path: "/a", Type: Directory}}, "", "sorted"},
		{"orphan", []Entry{{Path: "/", Type: Directory}, {Path: "/a/b", Type: Directory}}, "", "not inside"},
		{"below file", []Entry{{Path: "/", Type: Directory}, {Path: "/a", Type: Regular}, {Path: "/a/b", Type: Regular}}, "", "not inside"},
		{"second root", []Entry{{Path: "/", Type: Symlink, LinkTarget: "x"}, {Path: "/a", Type: Regular}}, "", "not inside"},
		{"bad name", []Entry{{Path: "/", Type: Directory}, {Path: "/..", Type: Regular}}, "", "'.' or '..'"},
		{"short file", []Entry{{Path: "/", Type: Directory}, {Path: "/a", Type: Regular, Size: 3}, {Path: "/b", Type: Regular}}, "", "not written"},
		{"long file", []Entry{{Path: "/", Type: Regular, Size: 3}}, "abcd", "exceeds"},
		{"bad type", []Entry{{Path: "/"}}, "", "invalid type"},
		{"empty target", []Entry{{Path: "/", Type: Symlink}}, "", "target"},
	} {
		nw := NewWriter(io.Discard)
		var err error
		for i := range c.entries {
			if err = nw.WriteHeader(&c.entries[i]); err != nil {
				break
			}
		}
		if err == nil && c.write != "" {
			_, err = nw.Write([]byte(c.write))
		}
		if err == nil {
			err = nw.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.errPart) {
			t.Errorf("%s: error = %v, want one mentioning %q", c.name, err, c.errPart)
		}
	}
}

// makeTree creates a small tree exercising every NAR feature.
func makeTree(t testing.TB, root string) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "b/y"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a"), []byte("hello"), 0o644))
	must(os.WriteFile(filepath.Join(root, "b/x"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Symlink("a", filepath.Join(root, "c")))
	must(os.WriteFile(filepath.Join(root, "d"), nil, 0o600))
}

func TestDumpPath(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root)
	var buf bytes.Buffer
	if err := DumpPath(&buf, root); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), sampleNAR()) {
		t.Errorf("DumpPath differs from the hand-made NAR")
	}
	sum, size, err := HashPath(root)
	if want, wsize, _ := Hash(bytes.NewReader(sampleNAR())); err != nil || sum != want || size != wsize {
		t.Errorf("HashPath = %x %d %v", sum, size, err)
	}
	if err := DumpPath(io.Discard, filepath.Join(root, "missing")); err == nil {
		t.Error("DumpPath of a missing path succeeded")
	}
}

// TestStreaming checks that neither DumpPath nor Reader holds file
// contents in memory: a 256 MiB (sparse) file must not cost anywhere near
// that much allocation.
func TestStreaming(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short (CI runs it)")
	}
	const size = 256 << 20
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()

	allocated := func(fn func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		fn()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var n int64
	a := allocated(func() {
		cw := &countWriter{}
		if err := DumpPath(cw, dir); err != nil {
			t.Fatal(err)
		}
		n = cw.n
	})
	if n < size || a > 4<<20 {
		t.Errorf("DumpPath wrote %d bytes allocating %d bytes", n, a)
	}

	head := narBytes(narMagic, "(", "type", "regular", "contents")
	head = binary.LittleEndian.AppendUint64(head, size)
	stream := io.MultiReader(bytes.NewReader(head), io.LimitReader(zeroReader{}, size), bytes.NewReader(narBytes(")")))
	a = allocated(func() {
		if _, got, err := Check(stream); err != nil || got != uint64(len(head))+size+16 {
			t.Fatalf("Check  %d bytes, %v", got, err)
		}
	})
	if a > 4<<20 {
		t.Errorf("reading a %d-byte file allocated %d bytes", size, a)
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// benchTree makes a tree of one 16 MiB file and 1000 small ones.
func benchTree(b *testing.B) string {
	root := b.TempDir()
	big := make([]byte, 16<<20)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(root, "big"), big, 0o644); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		d := filepath.Join(root, fmt.Sprintf("d%02d", i%50))
		os.MkdirAll(d, 0o755)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%04d", i)), big[i:i+i%4096], 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return root
}

func BenchmarkDumpPathHash(b *testing.B) {
	root := benchTree(b)
	_, size, err := HashPath(root)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := HashPath(root); err != nil {
			b.Fatal(err)
		}
	}
}

// benchNAR is benchTree's NAR.
func benchNAR(b *testing.B) []byte {
	var buf bytes.Buffer
	if err := DumpPath(&buf, benchTree(b)); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func BenchmarkNARReader(b *testing.B) {
	data := benchNAR(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		nr := NewReader(bytes.NewReader(data))
		for {
			_, err := nr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, nr); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkCheckNAR(b *testing.B) {
	data := benchNAR(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := Check(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
