package nar

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/sys/unix"
)

// dumpTree writes the NAR entries of the file-system object at fsPath. On Linux the
// walk goes by descriptor (openat, fstatat, getdents) and files are read through
// raw descriptors, without os.File's poller registration, finalizer, fcntls and
// path re-resolution: a closure of many small files spends most of its time in
// these system calls, which cost several microseconds each in a virtual machine.
// dumpfs_other.go is the portable version; both write the same bytes (tests
// compare them with nix-store --dump).
func dumpTree(nw *Writer, fsPath string) error {
	var st unix.Stat_t
	if err := fstatat(unix.AT_FDCWD, fsPath, &st); err != nil {
		return fmt.Errorf("nar: lstat %s: %w", fsPath, err)
	}
	d := fsDumper{nw: nw}
	return d.node(unix.AT_FDCWD, fsPath, fsPath, "/", &st)
}

type fsDumper struct {
	nw     *Writer
	dirBuf []byte
}

const openFlags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NOCTTY

// node writes the entry name (relative to the directory dirfd) whose lstat is st;
// fsPath is its path, for messages.
func (d *fsDumper) node(dirfd int, name, fsPath, narPath string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		typ := Regular
		if st.Mode&0o100 != 0 {
			typ = Executable
		}
		if err := d.nw.WriteHeader(&Entry{Path: narPath, Type: typ, Size: st.Size}); err != nil {
			return err
		}
		if st.Size == 0 || d.nw.skipsContents(st.Size) {
			return nil // nothing to read, or before DumpPathFrom's offset: not even opened
		}
		fd, err := openat(dirfd, name, openFlags)
		if err != nil {
			return fmt.Errorf("nar: open %s: %w", fsPath, err)
		}
		defer rawClose(fd)
		n, err := d.nw.copyContents(&fdReader{fd: fd}, st.Size)
		if err != nil {
			return fmt.Errorf("nar: reading %s: %w", fsPath, err)
		}
		if n != st.Size {
			return fmt.Errorf("nar: %s shrank from %d to %d bytes while being read", fsPath, st.Size, n)
		}
		return nil
	case unix.S_IFLNK:
		target, err := readlinkat(dirfd, name, st.Size)
		if err != nil {
			return fmt.Errorf("nar: readlink %s: %w", fsPath, err)
		}
		return d.nw.WriteHeader(&Entry{Path: narPath, Type: Symlink, LinkTarget: target})
	case unix.S_IFDIR:
		if err := d.nw.WriteHeader(&Entry{Path: narPath, Type: Directory}); err != nil {
			return err
		}
		fd, err := openat(dirfd, name, openFlags|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("nar: open %s: %w", fsPath, err)
		}
		defer rawClose(fd)
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
func (d *fsDumper) readDir(fd int) ([]string, error) {
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

// fdReader reads a raw descriptor. Its Seek lets DumpPathFrom skip contents.
type fdReader struct{ fd int }

func (r *fdReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := rawRead(r.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (r *fdReader) Seek(off int64, whence int) (int64, error) {
	return unix.Seek(r.fd, off, whence)
}

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := rawOpenat(dirfd, name, flags)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := rawFstatat(dirfd, name, st)
		if err != unix.EINTR {
			return err
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
		if n > MaxNameLen+1 {
			return "", fmt.Errorf("symlink target longer than %d bytes", MaxNameLen)
		}
		n *= 2
	}
}
