package gate

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"unsafe"
)

// narFile is an upload's temporary file, written around the page cache (O_DIRECT)
// where the file system allows: a NAR is written once, fsynced, and read rarely, so
// copying it into the page cache first only costs CPU (on a virtual machine, most of
// the gate's kernel time) and evicts pages worth keeping. Whole aligned blocks go to
// the disk from the caller's buffer or from an aligned staging buffer; the last
// partial block is written through the page cache after O_DIRECT is turned off. The
// caller still fsyncs (the size, the block map and the disk's write cache), as for
// any file. Where O_DIRECT is refused (tmpfs, some FUSE file systems), the file is
// written normally.
type narFile struct {
	*os.File
	direct bool
	buf    *alignedBuf // data not yet written, when direct
}

// directAlign is the alignment O_DIRECT asks of buffers, offsets and lengths here:
// the page size covers every logical block size in use.
const directAlign = 4096

type alignedBuf struct {
	mem []byte // aligned, cap a multiple of directAlign
	n   int
}

var alignedBufPool = sync.Pool{New: func() any {
	raw := make([]byte, 1<<20+directAlign)
	off := int(-uintptr(unsafe.Pointer(&raw[0])) & (directAlign - 1))
	return &alignedBuf{mem: raw[off : off+1<<20]}
}}

// createNARFile makes a new file named prefix-<random> in dir, mode 0600.
func createNARFile(dir, prefix string) (*narFile, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	name := filepath.Join(dir, prefix+"-"+hex.EncodeToString(rnd[:]))
	const flags = os.O_RDWR | os.O_CREATE | os.O_EXCL
	if oDirect != 0 {
		f, err := os.OpenFile(name, flags|oDirect, 0o600)
		if err == nil {
			return &narFile{File: f, direct: true}, nil
		}
		if !errors.Is(err, syscall.EINVAL) {
			return nil, err
		}
	}
	f, err := os.OpenFile(name, flags, 0o600)
	if err != nil {
		return nil, err
	}
	return &narFile{File: f}, nil
}

func aligned(p []byte) bool {
	return len(p)%directAlign == 0 && uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign == 0
}

func (f *narFile) Write(p []byte) (int, error) {
	empty := f.buf == nil || f.buf.n == 0
	if !f.direct && empty {
		return f.File.Write(p)
	}
	if f.direct && empty && len(p) > 0 && aligned(p) {
		return f.writeDirect(p)
	}
	if f.buf == nil {
		f.buf = alignedBufPool.Get().(*alignedBuf)
	}
	written := 0
	for len(p) > 0 {
		c := copy(f.buf.mem[f.buf.n:], p)
		f.buf.n += c
		p = p[c:]
		written += c
		if f.buf.n == len(f.buf.mem) {
			if _, err := f.writeDirect(f.buf.mem); err != nil {
				return written, err
			}
			f.buf.n = 0
		}
	}
	return written, nil
}

// writeDirect writes whole aligned blocks; a file system refusing them there turns
// O_DIRECT off and takes them (and what follows) through the page cache.
func (f *narFile) writeDirect(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if errors.Is(err, syscall.EINVAL) && n == 0 {
		if err := f.stopDirect(); err != nil {
			return 0, err
		}
		return f.File.Write(p)
	}
	return n, err
}

// Flush writes what the staging buffer holds: the aligned part directly, the rest
// (less than a block) through the page cache. Nothing may be written after it.
func (f *narFile) Flush() error {
	if f.buf == nil {
		return nil
	}
	b := f.buf
	defer func() {
		f.buf = nil
		b.n = 0
		alignedBufPool.Put(b)
	}()
	whole := b.n &^ (directAlign - 1)
	if whole > 0 {
		if _, err := f.writeDirect(b.mem[:whole]); err != nil {
			return err
		}
	}
	if whole == b.n {
		return nil
	}
	if f.direct {
		if err := f.stopDirect(); err != nil {
			return err
		}
	}
	_, err := f.File.Write(b.mem[whole:b.n])
	return err
}

// Close releases the staging buffer (unflushed data is dropped) and the file.
func (f *narFile) Close() error {
	if f.buf != nil {
		f.buf.n = 0
		alignedBufPool.Put(f.buf)
		f.buf = nil
	}
	return f.File.Close()
}

func (f *narFile) stopDirect() error {
	f.direct = false
	rc, err := f.File.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setNoDirect(fd) }); err != nil {
		return err
	}
	return serr
}
