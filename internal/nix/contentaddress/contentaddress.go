// Package contentaddress implements Nix's content addresses (the CA field):
// parsing, the store path a content address implies, and checking a NAR
// against one.
package contentaddress

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"nixpki/internal/nix/base32"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/storepath"
)

// Method is how a content-addressed store path's hash was computed.
type Method int

const (
	// Text: "text:sha256:…", the sha256 of a flat file (builtins.toFile,
	// .drv files). May have references, never a self-reference.
	Text Method = iota + 1
	// FixedFlat: "fixed:ALGO:…", the hash of a flat file (fetchurl).
	FixedFlat
	// FixedRecursive: "fixed:r:ALGO:…", the hash of the path's NAR
	// (nix-store --add, fetchTarball, flake sources).
	FixedRecursive
)

// ContentAddress is the parsed CA field of a narinfo.
type ContentAddress struct {
	Method Method
	Algo   string // md5, sha1, sha256 or sha512
	Digest []byte
}

// Parse parses a content address as Nix's parseContentAddress
// does: "text:sha256:HASH", "fixed:ALGO:HASH" or "fixed:r:ALGO:HASH", HASH
// in base16, nixbase32 or base64 (not SRI).
func Parse(s string) (ContentAddress, error) {
	var ca ContentAddress
	var rest string
	switch {
	case strings.HasPrefix(s, "text:"):
		ca.Method, rest = Text, s[len("text:"):]
	case strings.HasPrefix(s, "fixed:r:"):
		ca.Method, rest = FixedRecursive, s[len("fixed:r:"):]
	case strings.HasPrefix(s, "fixed:"):
		ca.Method, rest = FixedFlat, s[len("fixed:"):]
	default:
		return ca, fmt.Errorf("content address %q: want prefix \"text:\", \"fixed:\" or \"fixed:r:\"", s)
	}
	if !strings.Contains(rest, ":") {
		return ca, fmt.Errorf("content address %q: want ALGO:HASH after the method", s)
	}
	algo, d, err := nixhash.Parse(rest)
	if err != nil {
		return ca, fmt.Errorf("content address %q: %w", s, err)
	}
	if ca.Method == Text && algo != "sha256" {
		return ca, fmt.Errorf("content address %q: text content addresses must use sha256, not %s", s, algo)
	}
	ca.Algo, ca.Digest = algo, d
	return ca, nil
}

// String renders ca as Nix's renderContentAddress does (hash in nixbase32).
func (ca ContentAddress) String() string {
	prefix := "fixed:"
	switch ca.Method {
	case Text:
		prefix = "text:"
	case FixedRecursive:
		prefix = "fixed:r:"
	}
	return prefix + nixhash.Format(ca.Algo, ca.Digest)
}

// compressHash folds a digest to n bytes by XOR, as Nix's compressHash.
func compressHash(d []byte, n int) []byte {
	out := make([]byte, n)
	for i, b := range d {
		out[i%n] ^= b
	}
	return out
}

// makeStorePath is Nix's Store::makeStorePath: the store path whose hash part
// is the 160-bit fold of sha256("TYPE:sha256:<hex>:STOREDIR:NAME").
func makeStorePath(storeDir, typ string, digest [32]byte, name string) string {
	s := typ + ":sha256:" + hex.EncodeToString(digest[:]) + ":" + storeDir + ":" + name
	h := sha256.Sum256([]byte(s))
	return storeDir + "/" + base32.Encode(compressHash(h[:], 20)) + "-" + name
}

// StorePath computes the store path that a content-addressed path with
// the given name and references must have in storeDir (Nix's
// makeTextPath / makeFixedOutputPath). references are full store paths; for
// fixed-output addresses a reference to the path itself (selfPath) becomes
// Nix's ":self" marker. It fails for combinations Nix forbids, e.g. a flat
// or non-sha256 fixed-output address with references.
func StorePath(storeDir, name string, ca ContentAddress, selfPath string, references []string) (string, error) {
	if err := storepath.ValidateStoreDir(storeDir); err != nil {
		return "", err
	}
	if err := storepath.ValidateName(name); err != nil {
		return "", err
	}
	refs := slices.Clone(references)
	slices.Sort(refs)
	refs = slices.Compact(refs)
	self := false
	if ca.Method != Text {
		if i := slices.Index(refs, selfPath); i >= 0 {
			self = true
			refs = slices.Delete(refs, i, i+1)
		}
	}
	for _, r := range refs {
		if _, err := storepath.Parse(storeDir, r); err != nil {
			return "", fmt.Errorf("content address reference: %w", err)
		}
	}
	makeType := func(typ string) string {
		for _, r := range refs {
			typ += ":" + r
		}
		if self {
			typ += ":self"
		}
		return typ
	}
	if size, ok := nixhash.Size(ca.Algo); !ok || size != len(ca.Digest) {
		return "", fmt.Errorf("content address has invalid hash (algorithm %q, %d bytes)", ca.Algo, len(ca.Digest))
	}
	var digest [32]byte
	switch {
	case ca.Method == Text:
		if ca.Algo != "sha256" {
			return "", errors.New("text content address must use sha256")
		}
		copy(digest[:], ca.Digest)
		return makeStorePath(storeDir, makeType("text"), digest, name), nil
	case ca.Method == FixedRecursive && ca.Algo == "sha256":
		copy(digest[:], ca.Digest)
		return makeStorePath(storeDir, makeType("source"), digest, name), nil
	case ca.Method == FixedRecursive || ca.Method == FixedFlat:
		if len(refs) > 0 || self {
			return "", fmt.Errorf("fixed-output content address %s cannot have references", ca)
		}
		method := ""
		if ca.Method == FixedRecursive {
			method = "r:"
		}
		inner := sha256.Sum256([]byte("fixed:out:" + method + ca.Algo + ":" + hex.EncodeToString(ca.Digest) + ":"))
		return makeStorePath(storeDir, "output:out", inner, name), nil
	}
	return "", fmt.Errorf("content address has unknown method %d", ca.Method)
}

// ErrMismatch is wrapped by CheckNAR's errors when the content does not
// match the content address (as opposed to a NAR that cannot be read).
var ErrMismatch = errors.New("content does not match the content address")

// CheckNAR reads a whole NAR from r and checks it against ca: for a flat
// fixed-output address, it must be exactly one regular (non-executable, as Nix
// writes them) file whose contents hash to the digest with the named algorithm; for a text address, one regular
// non-executable file whose contents' SHA-256 is the digest; for a recursive
// address, the NAR's hash with the named algorithm must be the digest. A mismatch
// is reported as an error wrapping ErrMismatch.
func CheckNAR(r io.Reader, ca ContentAddress) error {
	h, err := nixhash.New(ca.Algo)
	if err != nil {
		return err
	}
	mismatch := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrMismatch, ca, fmt.Sprintf(format, args...))
	}
	if ca.Method == FixedRecursive {
		nr := nar.NewReader(io.TeeReader(r, h))
		for {
			if _, err := nr.Next(); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
		}
		if got := h.Sum(nil); !bytes.Equal(got, ca.Digest) {
			return mismatch("the NAR hashes to %s", ContentAddress{Method: ca.Method, Algo: ca.Algo, Digest: got})
		}
		return nil
	}
	nr := nar.NewReader(r)
	e, err := nr.Next()
	if err != nil {
		if err == io.EOF {
			return errors.New("nar: empty archive")
		}
		return err
	}
	switch {
	case e.Type == nar.Executable:
		// Nix writes flat and text content-addressed paths non-executable.
		return mismatch("it covers a single non-executable file, the NAR holds an executable one")
	case e.Type != nar.Regular:
		return mismatch("it covers a single regular file, the NAR holds a %s", e.Type)
	}
	if _, err := io.Copy(h, nr); err != nil {
		return err
	}
	if _, err := nr.Next(); err != io.EOF {
		if err == nil {
			err = errors.New("nar: entries after the root file")
		}
		return err
	}
	if got := h.Sum(nil); !bytes.Equal(got, ca.Digest) {
		return mismatch("the file hashes to %s", ContentAddress{Method: ca.Method, Algo: ca.Algo, Digest: got})
	}
	return nil
}
