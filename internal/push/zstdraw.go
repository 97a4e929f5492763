package push

import (
	"encoding/binary"
	"fmt"
	"io"
)

// rawZstdBlock is the largest zstd block (RFC 8878 §3.1.1.2.3: Block_Maximum_Size).
const rawZstdBlock = 128 << 10

// rawZstdWriter writes a zstd frame (RFC 8878 §3.1.1) of raw blocks holding exactly
// size bytes: a valid .zst file that every decoder reads, made without compressing.
// Its window is one block (raw blocks refer to nothing before them), so a decoder
// needs no more memory for it however large the NAR; the header names the content
// size; there is no checksum (the gate checks the NarHash). Each block's header is
// written when its first byte comes, as the size is known beforehand; nothing is
// buffered.
type rawZstdWriter struct {
	w       io.Writer
	left    uint64 // content bytes not yet written
	inBlock int    // bytes of the current block not yet written
	started bool
	hdr     [17]byte // the frame header (at most 14 bytes) and a block header
}

func newRawZstdWriter(w io.Writer, size uint64) *rawZstdWriter {
	return &rawZstdWriter{w: w, left: size}
}

// header is the frame header: magic, descriptor (not single-segment, a content size
// field of 4 or 8 bytes), the window (128 KiB: exponent 7, mantissa 0) and the
// content size.
func (z *rawZstdWriter) header() []byte {
	h := binary.LittleEndian.AppendUint32(z.hdr[:0], 0xFD2FB528)
	const window128K = 7 << 3
	if z.left < 1<<32 {
		h = append(h, 2<<6, window128K)
		return binary.LittleEndian.AppendUint32(h, uint32(z.left))
	}
	h = append(h, 3<<6, window128K)
	return binary.LittleEndian.AppendUint64(h, z.left)
}

// blockHeader starts the next raw block: min(rawZstdBlock, left) bytes, the last
// block if that is all that is left.
func (z *rawZstdWriter) blockHeader(buf []byte) []byte {
	n := min(z.left, rawZstdBlock)
	z.inBlock = int(n)
	v := uint32(n) << 3 // Block_Type 0: raw
	if n == z.left {
		v |= 1 // Last_Block
	}
	return append(buf, byte(v), byte(v>>8), byte(v>>16))
}

func (z *rawZstdWriter) Write(p []byte) (int, error) {
	if uint64(len(p)) > z.left {
		return 0, fmt.Errorf("zstd frame: %d bytes more than the %d announced", uint64(len(p))-z.left, z.left)
	}
	written := 0
	for len(p) > 0 {
		hdr := z.hdr[:0]
		if !z.started {
			hdr = z.header()
			z.started = true
		}
		if z.inBlock == 0 {
			hdr = z.blockHeader(hdr)
		}
		if err := writeAll(z.w, hdr); err != nil {
			return written, err
		}
		k := min(len(p), z.inBlock)
		if err := writeAll(z.w, p[:k]); err != nil {
			return written, err
		}
		written += k
		z.inBlock -= k
		z.left -= uint64(k)
		p = p[k:]
	}
	return written, nil
}

// writeAll writes p to w; a short write without an error is io.ErrShortWrite (the
// frame would be corrupt).
func writeAll(w io.Writer, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}

// Close checks that the announced size was written; a frame of no content gets its
// one empty last block.
func (z *rawZstdWriter) Close() error {
	if z.left != 0 {
		return fmt.Errorf("zstd frame: %d of the announced bytes not written", z.left)
	}
	if !z.started {
		z.started = true
		return writeAll(z.w, z.blockHeader(z.header()))
	}
	return nil
}
