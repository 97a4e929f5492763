package gate

import "syscall"

const oDirect = syscall.O_DIRECT

// setNoDirect turns O_DIRECT off on fd.
func setNoDirect(fd uintptr) error {
	fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
	if errno != 0 {
		return errno
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFL, fl&^syscall.O_DIRECT); errno != 0 {
		return errno
	}
	return nil
}
