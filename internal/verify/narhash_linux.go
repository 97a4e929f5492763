package verify

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/sys/unix"

	"nixpki/internal/nixkey"
)

// hashPath is nixkey.HashPath — the sha256 and size of a path's NAR, streamed —
// with fewer system calls per file: directories are walked by descriptor (openat,
// fstatat, getdents) and files read through raw descriptors, without os.File's
// poller registration, path re-resolution and finalizers. A closure of many small
// files spends most of its time there. The NAR itself is written by
// nixkey.NARWriter, so the bytes hashed are the ones nixkey.DumpPath produces;
// tests check that the two agree.
//
// With multi, the NARs of many paths are hashed at once (mbhash_linux.go).
func hashPath(fsPath string, multi bool) ([32]byte, uint64, error) {
	if multi {
		return mbHashPath(fsPath)
	}
	return hashPathGeneric(fsPath)
}

// hashPathGeneric is hashPath with crypto/sha256.
func hashPathGeneric(fsPath string) (sum [32]byte, size uint64, err error) {
	h := sha256.New()
	cw := &nixkey.CountWriter{W: h}
	if err := dumpNAR(cw, fsPath, make([]byte, 256<<10)); err != nil {
		return sum, 0, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, cw.N, nil
}

// multiBufferOS says that hashPath can use multi-buffer SHA-256 here.
const multiBufferOS = true

// dumpNAR writes the NAR of fsPath to w, reading files through buf.
func dumpNAR(w io.Writer, fsPath string, buf []byte) error {
	d := &narDumper{nw: nixkey.NewNARWriter(w), buf: buf}
	var st unix.Stat_t
	if err := unix.Lstat(fsPath, &st); err != nil {
		return fmt.Errorf("nar: lstat %s: %w", fsPath, err)
	}
	if err := d.node(unix.AT_FDCWD, fsPath, fsPath, "/", &st); err != nil {
		return err
	}
	return d.nw.Close()
}

type narDumper struct {
	nw     *nixkey.NARWriter
	buf    []byte
	dirBuf []byte
}

const openFlags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW

// node writes the entry name (relative to the directory dirfd) whose lstat is st;
// fsPath is its path, for messages.
func (d *narDumper) node(dirfd int, name, fsPath, narPath string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		typ := nixkey.NARRegular
		if st.Mode&0o100 != 0 {
			typ = nixkey.NARExecutable
		}
		fd, err := openat(dirfd, name, openFlags)
		if err != nil {
			return fmt.Errorf("nar: open %s: %w", fsPath, err)
		}
		defer unix.Close(fd)
		if err := d.nw.WriteHeader(&nixkey.NAREntry{Path: narPath, Type: typ, Size: st.Size}); err != nil {
			return err
		}
		for left := st.Size; left > 0; {
			n, err := read(fd, d.buf[:min(int64(len(d.buf)), left)])
			if err != nil {
				return fmt.Errorf("nar: reading %s: %w", fsPath, err)
			}
			if n == 0 {
				return fmt.Errorf("nar: %s shrank from %d to %d bytes while being read", fsPath, st.Size, st.Size-left)
			}
			if _, err := d.nw.Write(d.buf[:n]); err != nil {
				return err
			}
			left -= int64(n)
		}
		return nil
	case unix.S_IFLNK:
		target, err := readlinkat(dirfd, name, st.Size)
		if err != nil {
			return fmt.Errorf("nar: readlink %s: %w", fsPath, err)
		}
		return d.nw.WriteHeader(&nixkey.NAREntry{Path: narPath, Type: nixkey.NARSymlink, LinkTarget: target})
	case unix.S_IFDIR:
		if err := d.nw.WriteHeader(&nixkey.NAREntry{Path: narPath, Type: nixkey.NARDirectory}); err != nil {
			return err
		}
		fd, err := openat(dirfd, name, openFlags|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("nar: open %s: %w", fsPath, err)
		}
		defer unix.Close(fd)
		names, err := d.readDir(fd)
		if err != nil {
			return fmt.Errorf("nar: reading directory %s: %w", fsPath, err)
		}
		slices.Sort(names) // bytewise, as Nix sorts
		prefix := narPath
		if prefix == "/" {
			prefix = ""
		}
		for _, e := range names {
			var cst unix.Stat_t
			if err := fstatat(fd, e, &cst); err != nil {
				return fmt.Errorf("nar: lstat %s/%s: %w", fsPath, e, err)
			}
			if err := d.node(fd, e, fsPath+"/"+e, prefix+"/"+e, &cst); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("nar: %s has unsupported file type %#o", fsPath, st.Mode&unix.S_IFMT)
}

// readDir lists a directory's entries, without "." and "..".
func (d *narDumper) readDir(fd int) ([]string, error) {
	if d.dirBuf == nil {
		d.dirBuf = make([]byte, 32<<10)
	}
	var names []string
	for {
		n, err := unix.ReadDirent(fd, d.dirBuf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(d.dirBuf[:n], -1, names)
	}
}

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

func read(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		if err != unix.EINTR {
			if n < 0 {
				n = 0
			}
			return n, err
		}
	}
}

// readlinkat reads a symlink's target; size is its lstat size (a hint).
func readlinkat(dirfd int, name string, size int64) (string, error) {
	n := max(int(size)+1, 128)
	for {
		b := make([]byte, n)
		m, err := unix.Readlinkat(dirfd, name, b)
		if err != nil {
			return "", err
		}
		if m < n {
			return string(b[:m]), nil
		}
		if n > nixkey.MaxNARNameLen+1 {
			return "", fmt.Errorf("symlink target longer than %d bytes", nixkey.MaxNARNameLen)
		}
		n *= 2
	}
}
