package nar

import (
	"fmt"
	"os"
	"path/filepath"
)

// dumpNode writes the NAR entry of the file-system object at fsPath, found at
// narPath inside the NAR, through package os: the portable walk, and the reference
// that dumpfs_linux.go's must agree with (FuzzDumpTree).
func dumpNode(nw *Writer, fsPath, narPath string) error {
	fi, err := os.Lstat(fsPath)
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	mode := fi.Mode()
	switch {
	case mode.IsRegular():
		typ := Regular
		if mode&0o100 != 0 {
			typ = Executable
		}
		size := fi.Size()
		if err := nw.WriteHeader(&Entry{Path: narPath, Type: typ, Size: size}); err != nil {
			return err
		}
		if nw.skipsContents(size) {
			return nil // before DumpPathFrom's offset: not even opened
		}
		f, err := os.Open(fsPath)
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		defer f.Close()
		n, err := nw.copyContents(f, size)
		if err != nil {
			return fmt.Errorf("nar: reading %s: %w", fsPath, err)
		}
		if n != size {
			return fmt.Errorf("nar: %s shrank from %d to %d bytes while being read", fsPath, size, n)
		}
		return nil
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(fsPath)
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		return nw.WriteHeader(&Entry{Path: narPath, Type: Symlink, LinkTarget: target})
	case mode.IsDir():
		if err := nw.WriteHeader(&Entry{Path: narPath, Type: Directory}); err != nil {
			return err
		}
		entries, err := os.ReadDir(fsPath) // sorted by name, bytewise
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		prefix := narPath
		if prefix == "/" {
			prefix = ""
		}
		for _, de := range entries {
			if err := dumpNode(nw, filepath.Join(fsPath, de.Name()), prefix+"/"+de.Name()); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("nar: %s has unsupported file type %v", fsPath, mode.Type())
}
