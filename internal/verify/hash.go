package verify

import (
	"bytes"
	"errors"
	"fmt"
	"hash"

	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/nixhash"
)

// errCorrupt marks a contents error that shows the data is damaged (as opposed to
// being unreadable): such a path is reported corrupt, not failed.
var errCorrupt = errors.New("corrupt")

type corruptError struct{ msg string }

func (e *corruptError) Error() string { return e.msg }
func (e *corruptError) Is(t error) bool {
	return t == errCorrupt
}

func corruptf(format string, args ...any) error {
	return &corruptError{msg: fmt.Sprintf(format, args...)}
}

// caHash is what a content address covers, beyond the NAR hash that every check
// computes: the flat file (text: and fixed: addresses) or the NAR under another
// algorithm than sha256 (fixed:r:sha1 and the like).
type caHash struct {
	ca        contentaddress.ContentAddress
	recursive bool
	h         hash.Hash
}

// newCAHash returns what must be hashed to check the content address ca beyond
// NarHash, or nil when checking NarHash is enough (fixed:r:sha256, whose digest
// CheckContentAddress compares with NarHash) or ca does not parse.
func newCAHash(caText string) *caHash {
	ca, err := contentaddress.Parse(caText)
	if err != nil {
		return nil
	}
	if ca.Method == contentaddress.FixedRecursive && ca.Algo == "sha256" {
		return nil
	}
	h, err := nixhash.New(ca.Algo)
	if err != nil {
		return nil
	}
	return &caHash{ca: ca, recursive: ca.Method == contentaddress.FixedRecursive, h: h}
}

// check compares what was hashed with the content address.
func (c *caHash) check() error {
	if got := c.h.Sum(nil); !bytes.Equal(got, c.ca.Digest) {
		what := "its file"
		if c.recursive {
			what = "its NAR"
		}
		got := contentaddress.ContentAddress{Method: c.ca.Method, Algo: c.ca.Algo, Digest: got}
		return corruptf("does not match its content address '%s': %s hashes to '%s'", c.ca, what, got)
	}
	return nil
}
