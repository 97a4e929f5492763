//go:build linux && (amd64 || arm64)

package nar

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The walk's system calls go through unix.RawSyscall, outside the Go
// scheduler's syscall bookkeeping. On a store in the page cache each returns
// in a few microseconds, and a closure makes hundreds of thousands of them
// (four per file); the scheduler's side of an ordinary call (entering and
// leaving a syscall, and its monitor handing the processor to another thread
// when a call looks long) cost about as much again (bench/verify-vs-nix.sh). A
// call that waits for the disk keeps its processor meanwhile, as a thread of a
// C program does; the other processors go on.

func rawOpenat(dirfd int, name string, flags int) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	r, _, e := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func rawFstatat(dirfd int, name string, st *unix.Stat_t) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	_, _, e := unix.RawSyscall6(unix.SYS_NEWFSTATAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func rawRead(fd int, b []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func rawClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}
