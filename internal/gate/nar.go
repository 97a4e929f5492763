package gate

import (
	"bufio"
	"compress/bzip2"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"

	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/narinfo"
)

// errTooLarge is returned when a NAR exceeds the configured maximum.
type errTooLarge struct {
	what string
	max  int64
}

func (e errTooLarge) Error() string {
	return fmt.Sprintf("%s is larger than max_nar_size (%d bytes)", e.what, e.max)
}

// errWriting is a failure to write a received NAR to the gate's disk: the gate's
// fault, not the upload's (answered 5xx).
type errWriting struct{ err error }

func (e errWriting) Error() string { return "writing the NAR: " + e.err.Error() }
func (e errWriting) Unwrap() error { return e.err }

// capReader fails once more than max bytes were read.
type capReader struct {
	r    io.Reader
	n    int64
	max  int64
	what string
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, errTooLarge{c.what, c.max}
	}
	return n, err
}

// hashWriter hashes and counts what is written.
type hashWriter struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func newHashWriter() *hashWriter { return &hashWriter{h: sha256.New()} }

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.h == nil { // counting only
		return len(p), nil
	}
	return w.h.Write(p)
}

func (w *hashWriter) sum() (s [32]byte) {
	copy(s[:], w.h.Sum(nil))
	return s
}

// narCheck is what receiving a NAR established.
type narCheck struct {
	FileHash    [32]byte // when hashed (HasFileHash)
	FileSize    int64
	HasFileHash bool
	NarHash     [32]byte
	NarSize     int64
}

var zstdPool sync.Pool

// narBufs are one upload's buffers, reused: a fresh 1.25 MiB per NAR costs more in
// clearing, page faults and GC than hashing a small NAR. The spool's buffer comes
// from alignedBufPool. dec is made only for the uploads that read it (xz, bzip2):
// the zstd and uncompressed uploads of a push, many at once, would each fault in
// 256 KiB of fresh memory for nothing.
type narBufs struct {
	dec *bufio.Reader // the spool, for the decompressors reading a bufio.Reader (xz, bzip2); nil until one does
	nar *bufio.Reader // the decompressed NAR, read by nar.Reader
}

var narBufPool = sync.Pool{New: func() any {
	return &narBufs{nar: bufio.NewReaderSize(nil, 64<<10)}
}}

// spool reads an upload into an aligned buffer, hashing it as it comes, and is read
// from that buffer by the decompressor; each full buffer is written to the file whole
// once read, so the bytes are copied once on their way to the file (with O_DIRECT,
// written from this buffer: see narFile) and once to the decompressor.
type spool struct {
	body io.Reader
	dst  io.Writer
	fh   *hashWriter
	buf  *alignedBuf // buf.mem[:buf.n] is received, buf.mem[r:buf.n] not yet read
	fl   *flow       // the decode slot, given up while waiting for the body
	r    int
	err  error // from body, returned once what precedes it is read
	werr error // from dst
}

func (s *spool) Read(p []byte) (int, error) {
	if s.r == s.buf.n {
		if err := s.fill(); err != nil {
			return 0, err
		}
		if s.r == s.buf.n {
			return 0, nil
		}
	}
	n := copy(p, s.buf.mem[s.r:s.buf.n])
	s.r += n
	return n, nil
}

// fill reads from body into the buffer (one read that returns something), after
// writing the buffer out if it is full and read. An error is what body returned, or
// what writing returned.
func (s *spool) fill() error {
	if s.werr != nil {
		return s.werr
	}
	if s.err != nil {
		return s.err
	}
	if s.buf.n == len(s.buf.mem) && s.r < s.buf.n {
		return nil
	}
	// Waiting for the disk or the network holds no decode slot: an upload that
	// stalls keeps none from the others.
	s.fl.give()
	defer s.fl.take()
	if s.buf.n == len(s.buf.mem) {
		if _, err := s.dst.Write(s.buf.mem); err != nil {
			s.werr = err
			return err
		}
		s.buf.n, s.r = 0, 0
	}
	for range 100 { // as bufio.Reader, a body that keeps returning nothing is an error
		n, err := s.body.Read(s.buf.mem[s.buf.n:])
		s.fh.Write(s.buf.mem[s.buf.n : s.buf.n+n])
		s.buf.n += n
		s.err = err
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	s.err = io.ErrNoProgress
	return s.err
}

// drain reads the rest of the upload, to its end.
func (s *spool) drain() error {
	for {
		s.r = s.buf.n
		if err := s.fill(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// flush writes what the buffer holds: whole blocks, then the rest (which a narFile
// stages, where the blocks go straight from this buffer).
func (s *spool) flush() error {
	if s.werr != nil {
		return s.werr
	}
	b := s.buf.mem[:s.buf.n]
	if whole := len(b) &^ (directAlign - 1); whole > 0 && whole < len(b) {
		if _, err := s.dst.Write(b[:whole]); err != nil {
			return err
		}
		b = b[whole:]
	}
	if len(b) > 0 {
		if _, err := s.dst.Write(b); err != nil {
			return err
		}
	}
	s.buf.n, s.r = 0, 0
	return nil
}

// decodeSlots bounds concurrent decompression, of every format. An upload holds a
// slot only while it decodes data that arrived (see spool.fill and flow): one
// that waits for the network or the disk, or for xz dictionary memory, gives its
// slot up meanwhile, so slow or idle uploads cannot keep others from decoding.
var decodeSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// flow is one decode's claim on a decode slot. Its methods are called from the
// goroutine doing the decode.
type flow struct{ held bool }

func (f *flow) take() {
	if f != nil && !f.held {
		decodeSlots <- struct{}{}
		f.held = true
	}
}

func (f *flow) give() {
	if f != nil && f.held {
		<-decodeSlots
		f.held = false
	}
}

// wait runs fn (a wait) without holding a slot, and takes one again if it held one.
func (f *flow) wait(fn func()) {
	if f == nil || !f.held {
		fn()
		return
	}
	f.give()
	defer f.take()
	fn()
}

// decodes counts the decompressions begun, for tests that check which requests cost one.
var decodes atomic.Int64

// decompress returns a reader of the decompressed stream and a function releasing
// what it holds; fl is the decode's slot (xz gives it up while waiting for memory).
func decompress(r io.Reader, compression string, maxXZDict int64, fl *flow) (io.Reader, func(), error) {
	decodes.Add(1)
	switch compression {
	case "none":
		return r, func() {}, nil
	case "bzip2":
		return bzip2.NewReader(r), func() {}, nil
	case "zstd":
		d, _ := zstdPool.Get().(*zstd.Decoder)
		if d == nil {
			var err error
			d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(64<<20))
			if err != nil {
				return nil, nil, err
			}
		}
		if err := d.Reset(r); err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return d, func() { d.Reset(nil); zstdPool.Put(d) }, nil
	case "xz":
		br, ok := r.(*bufio.Reader)
		if !ok {
			br = bufio.NewReaderSize(r, 256<<10)
		}
		xr, err := newXZReader(br, maxXZDict, fl.wait)
		if err != nil {
			return nil, nil, err
		}
		return xr, xr.release, nil
	}
	return nil, nil, fmt.Errorf("unsupported compression %q", compression)
}

// receiveNAR reads a compressed NAR from body, writing it unchanged to dst while
// hashing it, decompresses it as it goes and checks that it is one well-formed NAR
// (nar.Reader), hashing the NAR too. Memory does not depend on the NAR's size.
func receiveNAR(body io.Reader, dst io.Writer, compression string, maxSize, maxXZDict int64) (narCheck, error) {
	return receiveNARFile(body, dst, compression, maxSize, maxXZDict, true)
}

// receiveNARFile is receiveNAR; with hashFile false a compressed file is only counted,
// not hashed (a file named by its NarHash: the NarHash is what is checked). An
// uncompressed file is its NAR and always hashed.
func receiveNARFile(body io.Reader, dst io.Writer, compression string, maxSize, maxXZDict int64, hashFile bool) (narCheck, error) {
	var res narCheck
	fh := newHashWriter()
	if !hashFile && compression != "none" {
		fh.h = nil
	}
	bufs := narBufPool.Get().(*narBufs)
	defer narBufPool.Put(bufs)
	// The decode slot is taken once data arrives (the spool's first fill).
	fl := &flow{}
	defer fl.give()
	sp := &spool{body: body, dst: dst, fh: fh, fl: fl, buf: alignedBufPool.Get().(*alignedBuf)}
	defer func() {
		sp.buf.n = 0
		alignedBufPool.Put(sp.buf)
	}()
	var src io.Reader = sp
	if compression == "xz" || compression == "bzip2" { // they read a bufio.Reader
		if bufs.dec == nil {
			bufs.dec = bufio.NewReaderSize(nil, 256<<10)
		}
		bufs.dec.Reset(sp)
		defer bufs.dec.Reset(nil)
		src = bufs.dec
	}
	dec, release, err := decompress(src, compression, maxXZDict, fl)
	if err != nil {
		return res, err
	}
	defer release()
	// SHA-256 is most of the work: an uncompressed file is its NAR, hashed once.
	nh := newHashWriter()
	var in io.Reader = &capReader{r: dec, max: maxSize, what: "the decompressed NAR"}
	if compression != "none" {
		in = io.TeeReader(in, nh)
	}
	// A bufio.Reader of at least NARReader's size is used as it is (no second buffer).
	bufs.nar.Reset(in)
	defer bufs.nar.Reset(nil)
	nr := nar.NewReader(bufs.nar)
	for {
		_, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if sp.werr != nil {
				return res, errWriting{sp.werr}
			}
			var tl errTooLarge
			if errors.As(err, &tl) {
				return res, tl
			}
			return res, fmt.Errorf("not a valid %s-compressed NAR: %w", compression, err)
		}
	}
	// Whatever follows the compressed stream is part of the file (and its hash).
	if err := sp.drain(); err != nil {
		if sp.werr != nil {
			return res, errWriting{err}
		}
		return res, fmt.Errorf("reading the upload: %w", err)
	}
	if err := sp.flush(); err != nil {
		return res, errWriting{err}
	}
	res.FileSize = fh.n
	if fh.h != nil {
		res.FileHash, res.HasFileHash = fh.sum(), true
	}
	res.NarHash, res.NarSize = nh.sum(), nh.n
	if compression == "none" {
		res.NarHash, res.NarSize = res.FileHash, res.FileSize
	}
	return res, nil
}

// checkCAContent checks the NAR of a path whose CA field derives its store path (see
// NarInfo.CheckContentAddress) against that content address: the file of a flat
// (fixed: or text:) address, or the NAR hashed with the algorithm of a recursive one
// (fixed:r:sha256 is the NarHash, already checked). It reports whether the path
// counts as content-addressed, and when not, why, for the reason. The NAR was
// verified when received; it is read again from the gate's NAR directory.
func (g *Gate) checkCAContent(ni *narinfo.NarInfo) (bool, string, error) {
	ca, err := contentaddress.Parse(ni.CA)
	if err != nil {
		return false, "", err
	}
	if ca.Algo != "sha256" && ca.Algo != "sha512" {
		// Whoever chooses content can make two files of one MD5 or SHA-1 digest: the
		// address does not fix the content, so it is not checked at all.
		return false, fmt.Sprintf("its CA field uses %s, which is not collision-resistant (only sha256 and sha512 are): it counts as input-addressed", ca.Algo), nil
	}
	if ca.Method == contentaddress.FixedRecursive && ca.Algo == "sha256" {
		return true, "", nil
	}
	f, err := os.Open(filepath.Join(g.Dir, filepath.FromSlash(ni.URL)))
	if errors.Is(err, fs.ErrNotExist) {
		return false, "", rejectErr(Gone, "its NAR %s expired from staging (staging_max_age %s) before this narinfo came: push the path again", ni.URL, g.Cfg.StagingMaxAge.D())
	}
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	fl := &flow{}
	fl.take()
	defer fl.give()
	dec, release, err := decompress(bufio.NewReaderSize(f, 256<<10), ni.Compression, g.Cfg.MaxXZDict, fl)
	if err != nil {
		return false, "", fmt.Errorf("NAR %s: %w", ni.URL, err)
	}
	defer release()
	err = contentaddress.CheckNAR(&capReader{r: dec, max: g.Cfg.MaxNARSize, what: "the decompressed NAR"}, ca)
	switch {
	case errors.Is(err, contentaddress.ErrMismatch):
		return false, fmt.Sprintf("its NAR does not match its CA field (%v): it counts as input-addressed", err), nil
	case err != nil:
		return false, "", fmt.Errorf("NAR %s: %w", ni.URL, err)
	}
	return true, "", nil
}
