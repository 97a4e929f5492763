package gate

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"slices"
	"sync"

	"github.com/ulikunitz/xz/lzma"
)

// xzReader decodes an xz file — one or more streams of LZMA2 blocks, with stream
// padding — refusing any block whose header declares an LZMA2 dictionary larger
// than maxDict before anything is allocated for it: the decoder allocates what
// each block declares, so every block header is checked, not only the first.
//
// The container (stream headers, block headers, padding, checks, index, footer) is
// parsed here; the LZMA2 data of each block is decoded by ulikunitz/xz/lzma, fed
// exactly the bytes this parser's reading of the chunk headers delimits (lzma2Data).
// So the decoder never reads a block header itself: no stream can make it see one
// this parser did not check.
//
// Dictionaries are allocated (and cleared) per block, so their total is bounded too:
// at most twice max_xz_dict plus the bytes decoded so far. A file of many tiny
// blocks each declaring a large dictionary cannot make the gate clear far more
// memory than the NAR it decodes; xz's own multi-block output (blocks of three times
// the dictionary) stays well within the bound.
type xzReader struct {
	r       *bufio.Reader
	maxDict int64
	err     error
	// held is this reader's share of xzMemory, for the block being decoded; wait
	// runs a wait for it (the upload gives up its decode slot meanwhile).
	held int64
	wait func(func())
	// allocated sums the dictionaries of the blocks begun; decoded counts the bytes
	// they produced.
	allocated, decoded int64

	check    byte // the current stream's check type
	records  [][2]int64
	blk      *xzBlock
	started  bool // a stream header was read
	inStream bool // between a stream header and its footer
}

type xzBlock struct {
	headerLen    int64
	compressed   int64 // declared, or -1
	uncompressed int64 // declared, or -1
	data         *lzma2Data
	dec          io.Reader
	sum          hash.Hash
	n            int64 // uncompressed bytes read
}

var crc64Table = crc64.MakeTable(crc64.ECMA)

const xzMagic = "\xfd7zXZ\x00"

func newXZReader(r *bufio.Reader, maxDict int64, wait func(func())) (*xzReader, error) {
	if wait == nil {
		wait = func(f func()) { f() }
	}
	x := &xzReader{r: r, maxDict: maxDict, wait: wait}
	if err := x.streamHeader(); err != nil {
		return nil, err
	}
	return x, nil
}

// xzMemory bounds the dictionaries of the xz blocks decoded at once, by every
// upload and check together: a block takes its dictionary's size from it (all of it
// when larger) before the dictionary is allocated, and gives it back when it ends.
// Only a block whose header arrived takes any, so an upload that sent a stream
// header and stopped holds none.
var xzMemory = newBudget(128 << 20)

// release gives back the reader's share of xzMemory; the reader is not read again.
func (x *xzReader) release() {
	xzMemory.release(x.held)
	x.held = 0
	x.blk = nil
	if x.err == nil {
		x.err = errors.New("xz: reader released")
	}
}

func (x *xzReader) Read(p []byte) (int, error) {
	if x.err != nil {
		return 0, x.err
	}
	for {
		if x.blk == nil {
			if err := x.next(); err != nil {
				if err != io.EOF {
					err = xzErr(err)
				}
				x.err = err
				return 0, err
			}
		}
		n, err := x.blk.dec.Read(p)
		x.blk.sum.Write(p[:n])
		x.blk.n += int64(n)
		x.decoded += int64(n)
		if err == io.EOF {
			err = x.endBlock()
		}
		if err != nil {
			x.err = xzErr(err)
			return n, x.err
		}
		if n > 0 || len(p) == 0 {
			return n, nil
		}
	}
}

// noEOF turns io.EOF, from a read inside the structure, into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func xzErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("xz: %w", err)
}

// streamHeader reads a stream header (magic, flags, CRC32).
func (x *xzReader) streamHeader() error {
	var h [12]byte
	if _, err := io.ReadFull(x.r, h[:]); err != nil {
		return fmt.Errorf("xz: truncated stream header: %w", err)
	}
	if string(h[:6]) != xzMagic {
		return errors.New("xz: not an xz stream (bad magic)")
	}
	if crc32.ChecksumIEEE(h[6:8]) != binary.LittleEndian.Uint32(h[8:]) {
		return errors.New("xz: stream header CRC32 mismatch")
	}
	if h[6] != 0 || checkSize(h[7]) < 0 {
		return fmt.Errorf("xz: unsupported stream flags %#x %#x (checks: none, CRC32, CRC64, SHA-256)", h[6], h[7])
	}
	x.check, x.records, x.started, x.inStream = h[7], x.records[:0], true, true
	return nil
}

func checkSize(check byte) int {
	switch check {
	case 0x00:
		return 0
	case 0x01:
		return 4
	case 0x04:
		return 8
	case 0x0a:
		return 32
	}
	return -1
}

func newCheck(check byte) hash.Hash {
	switch check {
	case 0x01:
		return crc32.NewIEEE()
	case 0x04:
		return crc64.New(crc64Table)
	case 0x0a:
		return sha256.New()
	}
	return nopHash{}
}

type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 0 }
func (nopHash) BlockSize() int              { return 1 }

// next starts the next block, reading through indexes, footers, stream padding and
// stream headers on the way; io.EOF at the clean end of the file.
func (x *xzReader) next() error {
	for {
		if !x.inStream {
			// Stream padding (zero bytes, four at a time), another stream, or the end.
			b, err := x.r.Peek(4)
			if len(b) == 0 && err == io.EOF {
				return io.EOF
			}
			if errors.Is(err, io.EOF) {
				return errors.New("stream padding or data after the stream cut short")
			} else if err != nil {
				return err // the upload's read failed (a cancelled request, a reset)
			}
			if string(b) == "\x00\x00\x00\x00" {
				x.r.Discard(4)
				continue
			}
			if err := x.streamHeader(); err != nil {
				return noEOF(err)
			}
		}
		size, err := x.r.ReadByte()
		if err != nil {
			return noEOF(err)
		}
		if size == 0 {
			if err := x.indexAndFooter(); err != nil {
				return noEOF(err)
			}
			x.inStream = false
			continue
		}
		return noEOF(x.blockHeader((int(size) + 1) * 4))
	}
}

// blockHeader parses a block header of n bytes (its size byte read already) and
// starts decoding the block.
func (x *xzReader) blockHeader(n int) error {
	h := make([]byte, n)
	h[0] = byte(n/4 - 1)
	if _, err := io.ReadFull(x.r, h[1:]); err != nil {
		return fmt.Errorf("truncated block header: %w", err)
	}
	if crc32.ChecksumIEEE(h[:n-4]) != binary.LittleEndian.Uint32(h[n-4:]) {
		return errors.New("block header CRC32 mismatch")
	}
	flags := h[1]
	b := h[2 : n-4]
	blk := &xzBlock{headerLen: int64(n), compressed: -1, uncompressed: -1}
	if flags&0x3c != 0 {
		return errors.New("reserved block flags set")
	}
	var ok bool
	if flags&0x40 != 0 {
		if blk.compressed, b, ok = xzVarint(b); !ok || blk.compressed == 0 {
			return errors.New("malformed block header (compressed size)")
		}
	}
	if flags&0x80 != 0 {
		if blk.uncompressed, b, ok = xzVarint(b); !ok {
			return errors.New("malformed block header (uncompressed size)")
		}
	}
	if flags&3 != 0 {
		return fmt.Errorf("%d filters in a block: the gate takes LZMA2 alone, as Nix writes", flags&3+1)
	}
	id, b, ok1 := xzVarint(b)
	plen, b, ok2 := xzVarint(b)
	if !ok1 || !ok2 || id != 0x21 || plen != 1 || len(b) < 1 {
		return fmt.Errorf("block filter %#x: the gate takes LZMA2 (0x21) alone, as Nix writes", id)
	}
	code := b[0]
	if code > 40 {
		return errors.New("invalid LZMA2 dictionary size")
	}
	if !allZero(b[1:]) {
		return errors.New("non-zero block header padding")
	}
	dict := int64(0xffffffff)
	if code < 40 {
		dict = int64(2|(code&1)) << (code/2 + 11)
	}
	if dict > x.maxDict {
		return fmt.Errorf("block %d declares a %d MiB dictionary, more than max_xz_dict (%d MiB)", len(x.records)+1, dict>>20, x.maxDict>>20)
	}
	dictCap := max(dict, lzma.MinDictCap)
	if x.allocated+dictCap > 2*x.maxDict+x.decoded {
		return fmt.Errorf("block %d: its dictionaries (%d MiB with this one's) are out of proportion to the %d bytes decoded so far (at most twice max_xz_dict more): compress with larger blocks or a smaller dictionary",
			len(x.records)+1, (x.allocated+dictCap)>>20, x.decoded)
	}
	x.allocated += dictCap
	x.wait(func() { x.held = xzMemory.acquire(dictCap) })
	blk.data = &lzma2Data{r: x.r}
	dec, err := lzma.Reader2Config{DictCap: int(dictCap)}.NewReader2(blk.data)
	if err != nil {
		return err
	}
	blk.dec, blk.sum, x.blk = dec, newCheck(x.check), blk
	return nil
}

// endBlock checks a block's sizes, padding and check once its LZMA2 data ended.
func (x *xzReader) endBlock() error {
	blk := x.blk
	x.blk = nil
	xzMemory.release(x.held)
	x.held = 0
	if !blk.data.done {
		return errors.New("LZMA2 data does not end where its chunks say")
	}
	c := blk.data.n
	if blk.compressed >= 0 && c != blk.compressed || blk.uncompressed >= 0 && blk.n != blk.uncompressed {
		return errors.New("block sizes differ from its header's")
	}
	pad := (4 - (blk.headerLen+c)%4) % 4
	tail := make([]byte, pad+int64(checkSize(x.check)))
	if _, err := io.ReadFull(x.r, tail); err != nil {
		return fmt.Errorf("truncated block check: %w", err)
	}
	if !allZero(tail[:pad]) {
		return errors.New("non-zero block padding")
	}
	sum := blk.sum.Sum(nil)
	if x.check == 0x01 || x.check == 0x04 {
		slices.Reverse(sum) // CRC32 and CRC64 are stored little-endian
	}
	if !bytes.Equal(tail[pad:], sum) {
		return errors.New("block check mismatch (corrupt data)")
	}
	x.records = append(x.records, [2]int64{blk.headerLen + c + int64(checkSize(x.check)), blk.n})
	return nil
}

// indexAndFooter reads a stream's index (its indicator byte read already), checks
// it against the blocks read, and the stream footer.
func (x *xzReader) indexAndFooter() error {
	crc := crc32.NewIEEE()
	crc.Write([]byte{0})
	size := int64(1)
	varint := func() (int64, error) {
		var v uint64
		for i := 0; i < 9; i++ {
			c, err := x.r.ReadByte()
			if err != nil {
				return 0, err
			}
			crc.Write([]byte{c})
			size++
			v |= uint64(c&0x7f) << (7 * i)
			if c&0x80 == 0 {
				if c == 0 && i > 0 || v > 1<<62 {
					return 0, errors.New("malformed index")
				}
				return int64(v), nil
			}
		}
		return 0, errors.New("malformed index")
	}
	count, err := varint()
	if err != nil {
		return err
	}
	if count != int64(len(x.records)) {
		return errors.New("index does not list the stream's blocks")
	}
	for _, rec := range x.records {
		u, err := varint()
		if err != nil {
			return err
		}
		n, err := varint()
		if err != nil {
			return err
		}
		if u != rec[0] || n != rec[1] {
			return errors.New("index does not match the stream's blocks")
		}
	}
	tail := make([]byte, (4-size%4)%4+4)
	if _, err := io.ReadFull(x.r, tail); err != nil {
		return err
	}
	pad := tail[:len(tail)-4]
	crc.Write(pad)
	if !allZero(pad) || crc.Sum32() != binary.LittleEndian.Uint32(tail[len(pad):]) {
		return errors.New("corrupt index")
	}
	size += int64(len(tail))
	var f [12]byte
	if _, err := io.ReadFull(x.r, f[:]); err != nil {
		return err
	}
	if crc32.ChecksumIEEE(f[4:10]) != binary.LittleEndian.Uint32(f[:4]) || string(f[10:]) != "YZ" ||
		int64(binary.LittleEndian.Uint32(f[4:8])+1)*4 != size || f[8] != 0 || f[9] != x.check {
		return errors.New("corrupt stream footer")
	}
	return nil
}

func xzVarint(b []byte) (int64, []byte, bool) {
	var v uint64
	for i := 0; i < 9 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			if b[i] == 0 && i > 0 || v > 1<<62 {
				return 0, nil, false
			}
			return int64(v), b[i+1:], true
		}
	}
	return 0, nil, false
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// lzma2Data passes through exactly one block's LZMA2 data, as its chunk headers
// delimit it, up to and including the end marker; then io.EOF.
type lzma2Data struct {
	r    *bufio.Reader
	left int64 // bytes of the current chunk (header included) not yet passed
	last bool  // the current chunk is the end marker
	done bool
	n    int64
}

func (d *lzma2Data) Read(p []byte) (int, error) {
	if d.done {
		return 0, io.EOF
	}
	if d.left == 0 {
		c, err := d.r.Peek(1)
		if err != nil {
			return 0, io.ErrUnexpectedEOF
		}
		switch ctl := c[0]; {
		case ctl == 0x00:
			d.left, d.last = 1, true
		case ctl == 0x01 || ctl == 0x02:
			h, err := d.r.Peek(3)
			if err != nil {
				return 0, io.ErrUnexpectedEOF
			}
			d.left = 3 + int64(binary.BigEndian.Uint16(h[1:])) + 1
		case ctl >= 0x80:
			hl := 5
			if ctl >= 0xc0 {
				hl = 6
			}
			h, err := d.r.Peek(hl)
			if err != nil {
				return 0, io.ErrUnexpectedEOF
			}
			d.left = int64(hl) + int64(binary.BigEndian.Uint16(h[3:])) + 1
		default:
			return 0, fmt.Errorf("invalid LZMA2 chunk control byte %#x", ctl)
		}
	}
	if int64(len(p)) > d.left {
		p = p[:d.left]
	}
	n, err := d.r.Read(p)
	d.n += int64(n)
	d.left -= int64(n)
	if d.left == 0 && d.last {
		d.done = true
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// budget is a counting semaphore of bytes.
type budget struct {
	mu   sync.Mutex
	cond *sync.Cond
	size int64
	free int64
}

func newBudget(size int64) *budget {
	b := &budget{size: size, free: size}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// acquire waits until n bytes (at most the whole budget) are free, takes them and
// returns how many it took.
func (b *budget) acquire(n int64) int64 {
	n = min(n, b.size)
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.free < n {
		b.cond.Wait()
	}
	b.free -= n
	return n
}

func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
	b.cond.Broadcast()
}
