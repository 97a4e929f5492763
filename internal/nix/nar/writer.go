package nar

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Writer writes a NAR from a sequence of entries, like
// archive/tar.Writer: WriteHeader starts an entry and Write supplies a
// regular file's contents. Entries must come in NAR order — the root first,
// then pre-order with each directory's entries sorted by name — which is the
// order Reader yields them, so copying a Reader's entries to a
// Writer reproduces the archive byte for byte.
type Writer struct {
	w      io.Writer // what bw writes to
	bw     *bufio.Writer
	err    error
	root   bool // the root entry has been written
	closed bool
	dirs   []narDir
	path   []byte // path of the innermost open directory, "" for the root
	inFile bool
	file   string // path of the current file, for messages
	left   int64  // contents still to be written for the current file
	pad    int
	buf    [8]byte
	copy   []byte      // buffer for DumpPath's copies
	skip   *skipWriter // DumpPathFrom's: drops the NAR's first bytes
}

// NewWriter returns a writer of a NAR to w. Output is buffered; Close
// flushes it.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, bw: bufio.NewWriterSize(w, 64<<10)}
}

func (nw *Writer) writeUint64(n uint64) {
	binary.LittleEndian.PutUint64(nw.buf[:], n)
	nw.bw.Write(nw.buf[:])
}

func (nw *Writer) writePad(n uint64) {
	clear(nw.buf[:])
	nw.bw.Write(nw.buf[:narPad(n)])
}

// str writes NAR strings. Write errors are sticky in bufio.Writer and are
// collected by the callers through nw.bw.Flush or the next Write.
func (nw *Writer) str(ss ...string) {
	for _, s := range ss {
		nw.writeUint64(uint64(len(s)))
		nw.bw.WriteString(s)
		nw.writePad(uint64(len(s)))
	}
}

func (nw *Writer) fail(err error) error {
	if nw.err == nil {
		nw.err = err
	}
	return err
}

// finishFile ends the current regular file, if any.
func (nw *Writer) finishFile() error {
	if !nw.inFile {
		return nil
	}
	if nw.left != 0 {
		return nw.fail(fmt.Errorf("nar: file %s: %d bytes of its declared size not written", nw.file, nw.left))
	}
	nw.inFile = false
	clear(nw.buf[:])
	nw.bw.Write(nw.buf[:nw.pad])
	nw.closeNode()
	return nil
}

// closeNode writes the ")" ending a node and, inside a directory, its entry.
func (nw *Writer) closeNode() {
	nw.str(")")
	if len(nw.dirs) > 0 {
		nw.str(")")
	}
}

// popDir closes the innermost open directory.
func (nw *Writer) popDir() {
	nw.dirs = nw.dirs[:len(nw.dirs)-1]
	if len(nw.dirs) > 0 {
		nw.path = nw.path[:nw.dirs[len(nw.dirs)-1].pathLen]
	}
	nw.closeNode()
}

// WriteHeader starts entry e, ending the previous one. For regular and
// executable files exactly e.Size bytes must then be written with Write.
func (nw *Writer) WriteHeader(e *Entry) error {
	if nw.err != nil {
		return nw.err
	}
	if nw.closed {
		return nw.fail(errors.New("nar: WriteHeader after Close"))
	}
	if err := nw.finishFile(); err != nil {
		return err
	}
	if _, err := nw.bw.Write(nil); err != nil { // bufio's sticky write error
		return nw.fail(err)
	}
	switch e.Type {
	case Regular, Executable:
		if e.Size < 0 {
			return nw.fail(fmt.Errorf("nar: file %s has negative size %d", e.Path, e.Size))
		}
	case Symlink:
		if e.LinkTarget == "" || len(e.LinkTarget) > MaxNameLen || strings.IndexByte(e.LinkTarget, 0) >= 0 {
			return nw.fail(fmt.Errorf("nar: symlink %s: target must be 1 to %d bytes without NUL", e.Path, MaxNameLen))
		}
	case Directory:
	default:
		return nw.fail(fmt.Errorf("nar: entry %s has invalid type %v", e.Path, e.Type))
	}

	if !nw.root {
		if e.Path != "/" {
			return nw.fail(fmt.Errorf("nar: first entry must be the root \"/\", got %q", e.Path))
		}
		nw.root = true
		nw.str(narMagic)
	} else {
		if len(e.Path) > MaxPathLen {
			return nw.fail(fmt.Errorf("nar: path %.80q… is longer than %d bytes", e.Path, MaxPathLen))
		}
		i := strings.LastIndexByte(e.Path, '/')
		if i < 0 || len(nw.dirs) == 0 {
			return nw.fail(fmt.Errorf("nar: entry %q is not inside an open directory", e.Path))
		}
		parent, name := e.Path[:i], e.Path[i+1:]
		if why := validNARName(name); why != "" {
			return nw.fail(fmt.Errorf("nar: invalid entry name %q in %q: it %s", name, e.Path, why))
		}
		// Close directories until the parent is the innermost open one.
		for len(nw.dirs) > 0 && string(nw.path) != parent {
			nw.popDir()
		}
		if len(nw.dirs) == 0 {
			return nw.fail(fmt.Errorf("nar: entry %q is not inside an open directory (missing directory entry or wrong order)", e.Path))
		}
		top := &nw.dirs[len(nw.dirs)-1]
		if name <= top.prev {
			return nw.fail(fmt.Errorf("nar: entry %q comes after %q: directory entries must be sorted and unique", e.Path, top.prev))
		}
		top.prev = name
		nw.str("entry", "(", "name", name, "node")
	}

	nw.str("(", "type")
	switch e.Type {
	case Regular, Executable:
		nw.str("regular")
		if e.Type == Executable {
			nw.str("executable", "")
		}
		nw.str("contents")
		nw.writeUint64(uint64(e.Size))
		nw.inFile, nw.file, nw.left, nw.pad = true, e.Path, e.Size, narPad(uint64(e.Size))
	case Symlink:
		nw.str("symlink", "target", e.LinkTarget)
		nw.closeNode()
	case Directory:
		if e.Path != "/" {
			nw.path = append(nw.path, e.Path[len(nw.path):]...)
		}
		nw.str("directory")
		nw.dirs = append(nw.dirs, narDir{pathLen: len(nw.path)})
	}
	return nil
}

// Write writes contents of the current regular file. Writing more than the
// size given to WriteHeader is an error.
func (nw *Writer) Write(p []byte) (int, error) {
	if nw.err != nil {
		return 0, nw.err
	}
	if !nw.inFile {
		return 0, nw.fail(errors.New("nar: Write outside a regular file"))
	}
	if int64(len(p)) > nw.left {
		return 0, nw.fail(fmt.Errorf("nar: write of %d bytes exceeds the %d bytes left of the file's declared size", len(p), nw.left))
	}
	n, err := nw.bw.Write(p)
	nw.left -= int64(n)
	if err != nil {
		return n, nw.fail(err)
	}
	return n, nil
}

// directMin is the file size from which DumpPath's copies skip the writer's buffer.
const directMin = 256 << 10

// copyContents writes size bytes of the current file's contents from r. Large
// contents skip the buffer (one copy less): an underlying io.ReaderFrom reads them
// itself (a zstd encoder reads into its block buffer), any other writer gets them
// straight from the copy buffer. Small files go through the buffer, so that many of
// them make few writes.
func (nw *Writer) copyContents(r io.Reader, size int64) (int64, error) {
	if size < directMin || nw.err != nil || !nw.inFile || size > nw.left {
		return io.CopyBuffer(nw, io.LimitReader(r, size), nw.copy)
	}
	if err := nw.bw.Flush(); err != nil {
		return 0, nw.fail(err)
	}
	var skipped int64
	if sk, ok := r.(io.Seeker); ok && nw.skip != nil && nw.skip.skip > 0 {
		// Contents before DumpPathFrom's offset are skipped, not read.
		k := min(nw.skip.skip, size)
		if _, err := sk.Seek(k, io.SeekCurrent); err != nil {
			return 0, nw.fail(err)
		}
		nw.skip.skip -= k
		nw.left -= k
		skipped = k
	}
	lr := io.LimitReader(r, size-skipped)
	var n int64
	var err error
	if rf, ok := nw.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(lr)
	} else {
		n, err = io.CopyBuffer(writerOnly{nw.w}, lr, nw.copy)
	}
	nw.left -= n
	n += skipped
	if err != nil {
		return n, nw.fail(err)
	}
	return n, nil
}

// skipsContents reports whether the current file's size bytes of contents lie wholly
// before DumpPathFrom's offset (what the buffer holds is skipped too), and if so
// counts them as written and skipped.
func (nw *Writer) skipsContents(size int64) bool {
	if nw.skip == nil || nw.err != nil || !nw.inFile || size > nw.left || nw.skip.skip-int64(nw.bw.Buffered()) < size {
		return false
	}
	nw.skip.skip -= size
	nw.left -= size
	return true
}

// writerOnly hides any ReaderFrom of a writer from io.CopyBuffer.
type writerOnly struct{ io.Writer }

// Close finishes the archive and flushes it; it does not close the
// underlying writer. The archive must have a root entry.
func (nw *Writer) Close() error {
	if nw.err != nil {
		return nw.err
	}
	if nw.closed {
		return nil
	}
	if !nw.root {
		return nw.fail(errors.New("nar: Close before any entry was written"))
	}
	if err := nw.finishFile(); err != nil {
		return err
	}
	for len(nw.dirs) > 0 {
		nw.popDir()
	}
	nw.closed = true
	if err := nw.bw.Flush(); err != nil {
		return nw.fail(err)
	}
	return nil
}

// DumpPath writes the NAR serialisation of the file-system object at fsPath
// to w, exactly as nix-store --dump does: symlinks are not followed, a
// regular file is executable if its owner-execute bit is set, directory
// entries are sorted bytewise, and other file types (devices, sockets,
// FIFOs) are errors. File contents are streamed; memory use does not grow
// with file sizes. As in Nix, a file's size is taken when it is stat'ed and
// exactly that many bytes are read; a file that shrinks meanwhile is an
// error.
func DumpPath(w io.Writer, fsPath string) error {
	return DumpPathFrom(w, fsPath, 0)
}

// DumpPathFrom is DumpPath without the NAR's first off bytes: the rest of a NAR
// whose beginning was written already (the same path dumped again). File contents
// before off are skipped with a seek, not read.
func DumpPathFrom(w io.Writer, fsPath string, off int64) error {
	b := dumpBufPool.Get().(*dumpBufs)
	defer dumpBufPool.Put(b)
	nw := &Writer{w: w, bw: b.bw, copy: b.copy}
	if off > 0 {
		nw.skip = &skipWriter{w: w, skip: off}
		nw.w = nw.skip
	}
	b.bw.Reset(nw.w)
	defer b.bw.Reset(nil)
	if err := dumpTree(nw, fsPath); err != nil {
		return err
	}
	return nw.Close()
}

// CountWriter counts what it passes on to W. Its ReadFrom reads through W's ReadFrom
// when W has one (a zstd encoder reading a store file into its block buffer), else
// in 256 KiB pieces: DumpPath hands it large files' contents.
type CountWriter struct {
	W io.Writer
	N uint64
}

func (c *CountWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += uint64(n)
	return n, err
}

func (c *CountWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.W.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.N += uint64(n)
		return n, err
	}
	buf := countBufs.Get().(*[]byte)
	defer countBufs.Put(buf)
	return io.CopyBuffer(writerOnly{c}, r, *buf)
}

var countBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// skipWriter drops the first skip bytes written to it and passes on the rest.
type skipWriter struct {
	w    io.Writer
	skip int64
}

func (s *skipWriter) Write(p []byte) (int, error) {
	if s.skip >= int64(len(p)) {
		s.skip -= int64(len(p))
		return len(p), nil
	}
	k := int(s.skip)
	s.skip = 0
	n, err := s.w.Write(p[k:])
	return k + n, err
}

// ReadFrom passes r on to the underlying writer's ReadFrom once nothing is left to
// skip (DumpPathFrom's seek skipped what was).
func (s *skipWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := s.w.(io.ReaderFrom); ok && s.skip == 0 {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{s}, r)
}

// dumpBufs are DumpPath's buffers, reused: a dump of a small path costs less than
// clearing 128 KiB of fresh memory.
type dumpBufs struct {
	bw   *bufio.Writer
	copy []byte
}

var dumpBufPool = sync.Pool{New: func() any {
	return &dumpBufs{bw: bufio.NewWriterSize(nil, 64<<10), copy: make([]byte, 64<<10)}
}}

// HashPath returns the sha256 and size of the NAR serialisation of fsPath
// (what nix hash path computes and a narinfo's NarHash and NarSize hold).
func HashPath(fsPath string) (sum [32]byte, size uint64, err error) {
	hc := newHashCounter()
	if err := DumpPath(hc, fsPath); err != nil {
		return sum, 0, err
	}
	return hc.sum(), hc.n, nil
}
