package push

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"nixpki/internal/nix/nar"
)

// --compression auto: zstd, except for a NAR that looks incompressible, which is sent
// (and served by the gate) uncompressed. Store paths of already-compressed data
// (firmware, archives, images, fonts, media) gain nothing from a second compression,
// and everyone pays for it: the uploader compresses, the gate decompresses to check
// the NarHash, and each target decompresses again on substitution.
//
// A NAR looks incompressible when three autoProbe-byte windows of it (its start,
// middle and end; the whole NAR if it is smaller) each have an order-0 entropy
// above autoEntropy bits per byte. That is what random and compressed data have
// (zstd can save at most ~1% on them: no Huffman gain, and LZ matches are rare); text
// has 4.5–5 bits, machine code 5.5–6.5. The windows are read through DumpPathFrom,
// which seeks over file contents, so probing reads little; it costs no compression.
const (
	autoProbe   = 32 << 10
	autoEntropy = 7.9
)

// worker is one upload slot's reusable state.
type worker struct {
	raw []byte // the start of the NAR, probed by --compression auto
	win []byte // another window of it
}

// encoderPool holds the zstd encoders of a push: a NAR is compressed with one taken
// from it while its body is sent, so at most as many NARs are compressed at once as
// it holds (one per CPU), however many uploads are in flight. Uploads in flight hide
// the gate's latency (its fsyncs); compressions beyond the CPUs only make the
// encoders' tables and windows evict each other from the caches (measured in
// docs/benchmarks.md). nil entries are encoders not made yet.
type encoderPool struct {
	c     chan *zstd.Encoder
	level zstd.EncoderLevel
}

// newEncoderPool holds n encoders compressing at zstd level (1–22, as zstd(1) and
// Nix's compression-level count; see DefaultZstdLevel).
func newEncoderPool(n, level int) encoderPool {
	p := encoderPool{c: make(chan *zstd.Encoder, n), level: zstd.EncoderLevelFromZstd(level)}
	for range n {
		p.c <- nil
	}
	return p
}

// DefaultZstdLevel is --compression-level's default: 2, as cachix push (the Nix
// ecosystem's common uploader) compresses. The push is a transfer to a gate on the
// team's network, and the Go encoder maps levels 1–2 to its fastest mode: on 1 MiB
// pieces of the Go installation about 1.6× as fast as level 3 (what Nix writes by
// default) for about 5% more bytes; a push of such a closure took 17% less client
// CPU (BenchmarkZstdLevel; docs/benchmarks.md, "The push's zstd level").
const DefaultZstdLevel = 2

// get takes an encoder, waiting for one unless stop is closed first.
func (p encoderPool) get(stop <-chan struct{}) (*zstd.Encoder, error) {
	var zw *zstd.Encoder
	select {
	case zw = <-p.c:
	case <-stop:
		return nil, errors.New("NAR upload: body closed")
	}
	if zw != nil {
		return zw, nil
	}
	// As Nix (libzstd through libarchive) writes zstd: a 2 MiB window (windowLog 21),
	// no checksum (the gate checks the NarHash). A larger window gains nothing
	// measurable on store paths and costs both sides cache misses: 8 MiB took ~10%
	// more CPU in client and gate (docs/benchmarks.md).
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(p.level), zstd.WithWindowSize(2<<20),
		zstd.WithEncoderCRC(false))
	if err != nil {
		p.c <- nil
		return nil, err
	}
	return zw, nil
}

func (p encoderPool) put(zw *zstd.Encoder) { p.c <- zw }

// narBody returns the request body of in's NAR compressed as the uploader's
// compression says (auto: as the probe chose), its length (-1: unknown, sent
// chunked), the stream to wait for before the worker is used again (nil for a body
// whose closing is waited for through bodyReader), and the compression chosen.
func (u *uploader) narBody(w *worker, in pathInfo) (io.ReadCloser, int64, *narStream, string, error) {
	switch u.compression {
	case "none":
		// Streamed into the connection (narStream, sent chunked), as --compression auto
		// sends an incompressible NAR. With a Content-Length, net/http reads the body
		// through an io.LimitReader, so every chunk would cross a pipe between
		// goroutines: a push takes ~9% longer that way.
		s := newNARStream(func(out io.Writer) error { return dumpExactly(out, in.Path, in.NarSize, 0) })
		return s, -1, s, "none", nil
	case "xz":
		s := newNARStream(func(out io.Writer) error {
			zw, err := (xz.WriterConfig{DictCap: 8 << 20}).NewWriter(out)
			if err != nil {
				return err
			}
			if err := dumpExactly(zw, in.Path, in.NarSize, 0); err != nil {
				return err
			}
			return zw.Close()
		})
		return s, -1, s, "xz", nil
	case "zstd", "auto":
		return u.probedBody(w, in)
	}
	return nil, 0, nil, "", fmt.Errorf("compression %s: not supported by the uploader", u.compression)
}

// probedBody probes in's NAR (see autoProbe) and returns its body: zstd if it looks
// compressible; otherwise, for --compression auto, uncompressed, and for
// --compression zstd, a zstd frame of raw blocks (see rawZstdWriter), which is what
// libzstd stores for such data after searching it for matches in vain (the probe
// skips the search).
func (u *uploader) probedBody(w *worker, in pathInfo) (io.ReadCloser, int64, *narStream, string, error) {
	raw, whole, flat, err := w.probe(in)
	switch {
	case err != nil:
		return nil, 0, nil, "", err
	case !flat:
		return u.zstdBody(in, raw, whole)
	case u.compression == "zstd":
		s := newNARStream(func(out io.Writer) error {
			return writeNAR(newRawZstdWriter(out, in.NarSize), in, raw, whole)
		})
		return s, -1, s, "zstd", nil
	case whole:
		return bytesBody(raw), int64(len(raw)), nil, "none", nil
	}
	s := newNARStream(func(out io.Writer) error {
		if _, err := out.Write(raw); err != nil {
			return err
		}
		return dumpExactly(out, in.Path, in.NarSize, int64(len(raw)))
	})
	return s, -1, s, "none", nil
}

// writeNAR writes in's NAR to w, its start read already (raw, the whole NAR if
// whole), then the rest dumped from the store, and closes w.
func writeNAR(w io.WriteCloser, in pathInfo, raw []byte, whole bool) error {
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if !whole {
		if err := dumpExactly(w, in.Path, in.NarSize, int64(len(raw))); err != nil {
			return err
		}
	}
	return w.Close()
}

// probe reads the start of in's NAR (the whole NAR if small: whole) and reports
// whether it looks incompressible (flat; see autoProbe).
func (w *worker) probe(in pathInfo) (raw []byte, whole, flat bool, err error) {
	if w.raw == nil {
		w.raw = make([]byte, 0, autoProbe)
	}
	raw, whole, err = probeNAR(w.raw, in.Path, 0)
	if err != nil {
		return nil, false, false, err
	}
	if whole && uint64(len(raw)) != in.NarSize {
		return nil, false, false, fmt.Errorf("the NAR of %s is %d bytes, but the store's database says %d (the store path changed?)", in.Path, len(raw), in.NarSize)
	}
	flat = highEntropy(raw)
	if flat && !whole {
		if w.win == nil {
			w.win = make([]byte, 0, autoProbe)
		}
		for _, off := range []int64{int64(in.NarSize/2) - autoProbe/2, int64(in.NarSize) - autoProbe} {
			if off < autoProbe {
				continue
			}
			win, _, err := probeNAR(w.win, in.Path, off)
			if err != nil {
				return nil, false, false, err
			}
			if !highEntropy(win) {
				return raw, whole, false, nil
			}
		}
	}
	return raw, whole, flat, nil
}

// zstdBody is in's NAR zstd-compressed: the bytes of its start already read (raw,
// the whole NAR if whole), then the rest dumped from the store.
func (u *uploader) zstdBody(in pathInfo, raw []byte, whole bool) (io.ReadCloser, int64, *narStream, string, error) {
	var s *narStream
	s = newNARStream(func(out io.Writer) error {
		zw, err := u.encoders.get(s.done)
		if err != nil {
			return err
		}
		defer u.encoders.put(zw)
		// The frame names the NAR's size: its window is then no larger than the NAR,
		// and the gate's decoder allocates no more.
		zw.ResetContentSize(out, int64(in.NarSize))
		return writeNAR(zw, in, raw, whole)
	})
	return s, -1, s, "zstd", nil
}

// probeNAR returns up to cap(buf) bytes of path's NAR from offset off, and whether
// they reach its end.
func probeNAR(buf []byte, path string, off int64) ([]byte, bool, error) {
	pw := &prefixWriter{buf: buf[:0]}
	err := nar.DumpPathFrom(pw, path, off)
	if err != nil && !errors.Is(err, errPrefixFull) {
		return nil, false, err
	}
	return pw.buf, err == nil, nil
}

// highEntropy reports whether p's bytes have an order-0 entropy above autoEntropy
// bits per byte. Fewer than 4 KiB are not judged (false).
func highEntropy(p []byte) bool {
	if len(p) < 4<<10 {
		return false
	}
	var count [256]int
	for _, b := range p {
		count[b]++
	}
	n := float64(len(p))
	h := 0.0
	for _, c := range count {
		if c > 0 {
			q := float64(c) / n
			h -= q * math.Log2(q)
		}
	}
	return h > autoEntropy
}

// bytesBody is a request body of p, which the caller keeps until its wait returns.
func bytesBody(p []byte) *bodyReader {
	return &bodyReader{r: bytes.NewReader(p), closed: make(chan struct{})}
}

var errPrefixFull = errors.New("probe full")

// prefixWriter keeps the first cap(buf) bytes written to it, then fails.
type prefixWriter struct{ buf []byte }

func (p *prefixWriter) Write(b []byte) (int, error) {
	room := cap(p.buf) - len(p.buf)
	if len(b) <= room {
		p.buf = append(p.buf, b...)
		return len(b), nil
	}
	p.buf = append(p.buf, b[:room]...)
	return room, errPrefixFull
}

// ReadFrom reads a file's contents straight into the buffer.
func (p *prefixWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	for len(p.buf) < cap(p.buf) {
		m, err := r.Read(p.buf[len(p.buf):cap(p.buf)])
		p.buf = p.buf[:len(p.buf)+m]
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	// Full: more to read is an error, as in Write.
	var one [1]byte
	if m, _ := r.Read(one[:]); m > 0 {
		return n, errPrefixFull
	}
	return n, nil
}

// dumpExactly writes the NAR of path to w, less its first skip bytes (written
// already), and checks its size against the store's database (the gate checks the
// hash).
func dumpExactly(w io.Writer, path string, narSize uint64, skip int64) error {
	cw := &nar.CountWriter{W: w}
	if err := nar.DumpPathFrom(cw, path, skip); err != nil {
		return err
	}
	if cw.N+uint64(skip) != narSize {
		return fmt.Errorf("the NAR of %s is %d bytes, but the store's database says %d (the store path changed?)", path, cw.N+uint64(skip), narSize)
	}
	return nil
}
