// Package nar reads and writes NAR archives, Nix's canonical serialisation
// of a file-system tree, and dumps paths like nix-store --dump.
package nar

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
)

// NAR (Nix ARchive) is the canonical serialisation of a file-system tree that
// Nix hashes and ships. It is a sequence of strings, each an 8-byte
// little-endian length followed by the bytes and zero padding to a multiple
// of 8:
//
//	archive   = "nix-archive-1" node
//	node      = "(" "type" ( regular | symlink | directory ) ")"
//	regular   = "regular" [ "executable" "" ] "contents" <contents>
//	symlink   = "symlink" "target" TARGET
//	directory = "directory" { "entry" "(" "name" NAME "node" node ")" }
//
// Directory entries are strictly sorted by name (bytewise). This file reads
// and writes exactly that canonical form; every other encoding of a tree
// (reordered or repeated markers, unsorted entries, non-zero padding) is
// rejected, so a NAR hash names exactly one tree.

const (
	narMagic = "nix-archive-1"
	// MaxNameLen bounds directory entry names and symlink targets.
	MaxNameLen = 4096
	// MaxPathLen bounds the path of an entry inside a NAR. Nix itself
	// cannot dump or restore trees with longer paths (PATH_MAX).
	MaxPathLen = 4096
	// maxTagLen bounds the fixed tokens ("(", "type", "directory", …).
	maxTagLen = 16
)

// Type is the type of a NAR entry.
type Type uint8

const (
	Regular    Type = iota + 1 // regular file
	Executable                 // regular file with the executable bit
	Symlink                    // symbolic link
	Directory                  // directory
)

func (t Type) String() string {
	switch t {
	case Regular:
		return "regular"
	case Executable:
		return "executable"
	case Symlink:
		return "symlink"
	case Directory:
		return "directory"
	}
	return fmt.Sprintf("NARType(%d)", uint8(t))
}

// Entry describes one node of a NAR, in the order the archive holds them
// (pre-order, directory entries sorted).
type Entry struct {
	// Path is "/" for the root and "/a/b" for entry b of directory a.
	Path string
	Type Type
	// Size is the length of a regular or executable file's contents.
	Size int64
	// LinkTarget is a symlink's target.
	LinkTarget string
}

// validNARName reports why name cannot be a directory entry name, or "".
func validNARName(name string) string {
	switch {
	case name == "":
		return "is empty"
	case name == "." || name == "..":
		return "is '.' or '..'"
	case strings.IndexByte(name, '/') >= 0:
		return "contains '/'"
	case strings.IndexByte(name, 0) >= 0:
		return "contains NUL"
	}
	return ""
}

// narPad returns the padding after n bytes.
func narPad(n uint64) int { return int((8 - n%8) % 8) }

// narDir is an open directory: the length of its path in the reader's or
// writer's path buffer and the name of its last entry.
type narDir struct {
	pathLen int
	prev    string
}

// childPath returns the path of entry name in a directory whose path (without
// the leading "/" of the root) is dir.
func childPath(dir []byte, name string) string {
	return string(dir) + "/" + name
}

// Reader reads a NAR as a sequence of entries, like archive/tar.Reader:
// Next advances to the next entry, and Read reads the contents of the
// current regular file. File contents are streamed, never buffered whole.
// Any violation of the NAR format, including a truncated stream or data after
// the archive's end, is an error; errors are sticky.
type Reader struct {
	br      *bufio.Reader
	off     int64 // bytes consumed
	err     error
	started bool
	dirs    []narDir
	path    []byte // path of the innermost open directory, "" for the root
	inFile  bool   // the current entry is a regular file with its trailer unread
	left    int64  // unread bytes of the current file
	pad     int    // padding after the current file
	scratch [maxTagLen + 8]byte
}

// NewReader returns a reader of the NAR in r. It buffers r and reads it to
// its end, to check that nothing follows the archive.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Offset returns the number of bytes of the NAR consumed so far.
func (nr *Reader) Offset() int64 { return nr.off }

func (nr *Reader) errorf(format string, args ...any) error {
	return fmt.Errorf("nar: at offset %d: %s", nr.off, fmt.Sprintf(format, args...))
}

// readFull reads exactly len(p) bytes; a short stream is io.ErrUnexpectedEOF.
func (nr *Reader) readFull(p []byte, what string) error {
	n, err := io.ReadFull(nr.br, p)
	nr.off += int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("nar: truncated at offset %d while reading %s: %w", nr.off, what, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return fmt.Errorf("nar: reading %s at offset %d: %w", what, nr.off, err)
	}
	return nil
}

func (nr *Reader) readUint64(what string) (uint64, error) {
	b := nr.scratch[:8]
	if err := nr.readFull(b, what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (nr *Reader) readPadding(n uint64, what string) error {
	p := narPad(n)
	if p == 0 {
		return nil
	}
	b := nr.scratch[:p]
	if err := nr.readFull(b, what); err != nil {
		return err
	}
	for _, c := range b {
		if c != 0 {
			return nr.errorf("non-zero padding after %s", what)
		}
	}
	return nil
}

// readString reads a length-prefixed string of at most max bytes.
func (nr *Reader) readString(max int, what string) (string, error) {
	n, err := nr.readUint64(what)
	if err != nil {
		return "", err
	}
	if n > uint64(max) {
		return "", nr.errorf("%s is %d bytes long, at most %d allowed", what, n, max)
	}
	var b []byte
	if n <= uint64(len(nr.scratch)) {
		b = nr.scratch[:n]
	} else {
		b = make([]byte, n)
	}
	if err := nr.readFull(b, what); err != nil {
		return "", err
	}
	s := string(b)
	return s, nr.readPadding(n, what)
}

// expect reads a token and checks it is want.
func (nr *Reader) expect(want string) error {
	got, err := nr.readString(maxTagLen, "token")
	if err != nil {
		return err
	}
	if got != want {
		return nr.errorf("expected %q, got %q", want, got)
	}
	return nil
}

// Next advances to the next entry. It returns io.EOF after the last entry
// of a well-formed archive. Unread contents of the previous file are
// skipped.
func (nr *Reader) Next() (*Entry, error) {
	if nr.err != nil {
		return nil, nr.err
	}
	e, err := nr.next()
	if err != nil {
		nr.err = err
		nr.inFile = false
		return nil, err
	}
	return e, nil
}

func (nr *Reader) next() (*Entry, error) {
	if nr.inFile {
		for nr.left > 0 {
			// Skipped in the buffer, not copied out of it.
			n, err := nr.br.Discard(int(min(nr.left, 1<<30)))
			nr.off += int64(n)
			nr.left -= int64(n)
			switch {
			case err == io.EOF:
				return nil, fmt.Errorf("nar: truncated at offset %d in file contents: %w", nr.off, io.ErrUnexpectedEOF)
			case err != nil:
				return nil, fmt.Errorf("nar: reading file contents at offset %d: %w", nr.off, err)
			}
		}
		nr.inFile = false
		b := nr.scratch[:nr.pad]
		if err := nr.readFull(b, "contents padding"); err != nil {
			return nil, err
		}
		for _, c := range b {
			if c != 0 {
				return nil, nr.errorf("non-zero padding after file contents")
			}
		}
		if err := nr.closeNode(); err != nil {
			return nil, err
		}
	}
	if !nr.started {
		nr.started = true
		if err := nr.expect(narMagic); err != nil {
			return nil, err
		}
		return nr.readNode("/")
	}
	for len(nr.dirs) > 0 {
		top := &nr.dirs[len(nr.dirs)-1]
		tok, err := nr.readString(maxTagLen, `"entry" or ")"`)
		if err != nil {
			return nil, err
		}
		switch tok {
		case "entry":
			if err := nr.expect("("); err != nil {
				return nil, err
			}
			if err := nr.expect("name"); err != nil {
				return nil, err
			}
			name, err := nr.readString(MaxNameLen, "entry name")
			if err != nil {
				return nil, err
			}
			if why := validNARName(name); why != "" {
				return nil, nr.errorf("invalid entry name %q in %q: it %s", name, nr.dirPath(), why)
			}
			if name <= top.prev {
				if name == top.prev {
					return nil, nr.errorf("duplicate entry %q in directory %q", name, nr.dirPath())
				}
				return nil, nr.errorf("entry %q follows %q in directory %q: entries must be sorted", name, top.prev, nr.dirPath())
			}
			top.prev = name
			p := childPath(nr.path, name)
			if len(p) > MaxPathLen {
				return nil, nr.errorf("path of entry %q is longer than %d bytes", name, MaxPathLen)
			}
			if err := nr.expect("node"); err != nil {
				return nil, err
			}
			return nr.readNode(p)
		case ")":
			nr.dirs = nr.dirs[:len(nr.dirs)-1]
			if len(nr.dirs) > 0 {
				nr.path = nr.path[:nr.dirs[len(nr.dirs)-1].pathLen]
				if err := nr.expect(")"); err != nil {
					return nil, err
				}
			}
		default:
			return nil, nr.errorf("expected \"entry\" or \")\" in directory %q, got %q", nr.dirPath(), tok)
		}
	}
	// The root node is complete: the stream must end here.
	if _, err := nr.br.ReadByte(); err == nil {
		return nil, nr.errorf("data after the end of the archive")
	} else if err != io.EOF {
		return nil, fmt.Errorf("nar: reading at offset %d: %w", nr.off, err)
	}
	return nil, io.EOF
}

// dirPath is the path of the innermost open directory, for messages.
func (nr *Reader) dirPath() string {
	if len(nr.path) == 0 {
		return "/"
	}
	return string(nr.path)
}

// closeNode reads the ")" ending a regular or symlink node and, if the node
// is a directory entry, the ")" ending the entry.
func (nr *Reader) closeNode() error {
	if err := nr.expect(")"); err != nil {
		return err
	}
	if len(nr.dirs) > 0 {
		return nr.expect(")")
	}
	return nil
}

// readNode reads a node's header at path p.
func (nr *Reader) readNode(p string) (*Entry, error) {
	if err := nr.expect("("); err != nil {
		return nil, err
	}
	if err := nr.expect("type"); err != nil {
		return nil, err
	}
	typ, err := nr.readString(maxTagLen, "node type")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "regular":
		e := &Entry{Path: p, Type: Regular}
		tok, err := nr.readString(maxTagLen, `"executable" or "contents"`)
		if err != nil {
			return nil, err
		}
		if tok == "executable" {
			if err := nr.expect(""); err != nil {
				return nil, err
			}
			e.Type = Executable
			if tok, err = nr.readString(maxTagLen, `"contents"`); err != nil {
				return nil, err
			}
		}
		if tok != "contents" {
			return nil, nr.errorf("expected \"contents\" in file %q, got %q", p, tok)
		}
		n, err := nr.readUint64("file size")
		if err != nil {
			return nil, err
		}
		if n > math.MaxInt64 {
			return nil, nr.errorf("file %q has impossible size %d", p, n)
		}
		e.Size = int64(n)
		nr.inFile, nr.left, nr.pad = true, int64(n), narPad(n)
		return e, nil
	case "symlink":
		if err := nr.expect("target"); err != nil {
			return nil, err
		}
		target, err := nr.readString(MaxNameLen, "symlink target")
		if err != nil {
			return nil, err
		}
		if target == "" || strings.IndexByte(target, 0) >= 0 {
			return nil, nr.errorf("symlink %q has an empty target or one containing NUL", p)
		}
		if err := nr.closeNode(); err != nil {
			return nil, err
		}
		return &Entry{Path: p, Type: Symlink, LinkTarget: target}, nil
	case "directory":
		if p != "/" {
			nr.path = append(nr.path, p[len(nr.path):]...)
		}
		nr.dirs = append(nr.dirs, narDir{pathLen: len(nr.path)})
		return &Entry{Path: p, Type: Directory}, nil
	}
	return nil, nr.errorf("node %q has unknown type %q", p, typ)
}

// Read reads from the contents of the current entry. It returns io.EOF at
// the end of a regular file's contents, and 0, io.EOF for other entries.
func (nr *Reader) Read(p []byte) (int, error) {
	if nr.err != nil {
		return 0, nr.err
	}
	if !nr.inFile || nr.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > nr.left {
		p = p[:nr.left]
	}
	n, err := nr.br.Read(p)
	nr.off += int64(n)
	nr.left -= int64(n)
	switch {
	case err == io.EOF && nr.left > 0:
		nr.err = fmt.Errorf("nar: truncated at offset %d in file contents: %w", nr.off, io.ErrUnexpectedEOF)
		return n, nr.err
	case err == io.EOF:
		err = nil
	case err != nil:
		nr.err = fmt.Errorf("nar: reading file contents at offset %d: %w", nr.off, err)
		return n, nr.err
	}
	return n, err
}

// Check reads a whole NAR from r, checking that it is well-formed, and
// returns its sha256 and size — what a narinfo's NarHash and NarSize must be.
func Check(r io.Reader) (sum [32]byte, size uint64, err error) {
	hc := newHashCounter()
	nr := NewReader(io.TeeReader(r, hc))
	for {
		if _, err := nr.Next(); err == io.EOF {
			break
		} else if err != nil {
			return sum, 0, err
		}
	}
	return hc.sum(), hc.n, nil
}

// Hash returns the sha256 and byte count of the stream r (typically a
// NAR), without interpreting it.
func Hash(r io.Reader) (sum [32]byte, size uint64, err error) {
	hc := newHashCounter()
	if _, err := io.Copy(hc, r); err != nil {
		return sum, 0, err
	}
	return hc.sum(), hc.n, nil
}

// hashCounter is an io.Writer computing sha256 and counting bytes.
type hashCounter struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n uint64
}

func newHashCounter() *hashCounter { return &hashCounter{h: sha256.New()} }

func (hc *hashCounter) Write(p []byte) (int, error) {
	hc.n += uint64(len(p))
	return hc.h.Write(p)
}

func (hc *hashCounter) sum() (s [32]byte) {
	copy(s[:], hc.h.Sum(nil))
	return s
}
