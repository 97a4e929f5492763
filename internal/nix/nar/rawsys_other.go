//go:build linux && !amd64 && !arm64

package nar

import "golang.org/x/sys/unix"

// The ordinary system calls, where rawsys_64.go's raw ones are not set up.

func rawOpenat(dirfd int, name string, flags int) (int, error) {
	return unix.Openat(dirfd, name, flags, 0)
}

func rawFstatat(dirfd int, name string, st *unix.Stat_t) error {
	return unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

func rawRead(fd int, b []byte) (int, error) { return unix.Read(fd, b) }

func rawClose(fd int) { unix.Close(fd) }
