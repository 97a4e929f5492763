package tlog

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Record is one verified record of the log.
type Record struct {
	Index uint64
	Entry Entry
	Raw   []byte // the entry's canonical bytes
	Leaf  Hash
	Head  Head // the signed tree head after this entry
}

// Verified is the result of a successful Verify.
type Verified struct {
	Head    Head // the newest head: the last record's, or the empty log's
	Records []Record
}

// Verify recomputes the Merkle tree from the stored entries of the log in dir and
// checks, for every record, that its signed tree head has the record's position as
// its size, the recomputed root, non-decreasing time and a valid signature by pub;
// then that the head file is signed, names no more entries than the log holds and
// agrees with the record at its size. The first failure is returned, naming the
// entry (its index, type and time) where the log stops being what was signed: an
// altered entry or head, entries reordered, inserted or deleted, records cut off the
// end.
func Verify(dir string, pub ed25519.PublicKey) (*Verified, error) {
	f, err := os.Open(filepath.Join(dir, EntriesFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hb, err := os.ReadFile(filepath.Join(dir, HeadFile))
	if err != nil {
		return nil, fmt.Errorf("log head: %w", err)
	}
	fileHead, err := ParseHead(bytes.TrimSpace(hb))
	if err != nil {
		return nil, fmt.Errorf("log head file %s: %w", HeadFile, err)
	}
	if err := fileHead.Verify(pub); err != nil {
		return nil, fmt.Errorf("log head file %s: %w", HeadFile, err)
	}
	v, err := verifyRecords(f, pub, fileHead.Origin)
	if err != nil {
		return nil, err
	}
	n := uint64(len(v.Records))
	switch {
	case fileHead.Size > n:
		return nil, fmt.Errorf("log truncated: the signed head names %d entries, the log holds %d: entries %d to %d were deleted", fileHead.Size, n, n, fileHead.Size-1)
	case fileHead.Size == 0:
		if fileHead.Root != emptyRoot {
			return nil, errors.New("log head file: size 0 with a non-empty root")
		}
	default:
		r := v.Records[fileHead.Size-1]
		if r.Head.Root != fileHead.Root {
			return nil, fmt.Errorf("entry %d (%s at %s): the head file signs another root for size %d: the log was rewritten", r.Index, r.Entry.Type, r.Entry.Time.Format(timeLayout), fileHead.Size)
		}
	}
	if n == 0 {
		v.Head = fileHead
	}
	return v, nil
}

// verifyRecords reads and checks every record.
func verifyRecords(r io.Reader, pub ed25519.PublicKey, origin string) (*Verified, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	v := &Verified{}
	var fr frontier
	var last Head
	for i := uint64(0); ; i++ {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		name := fmt.Sprintf("entry %d", i)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		eb, hjson, ok := bytes.Cut(line, []byte{'\t'})
		if !ok {
			return nil, fmt.Errorf("%s: damaged record: no tab between the entry and its tree head", name)
		}
		e, err := parseEntry(eb)
		if err != nil {
			return nil, fmt.Errorf("%s: altered: %w", name, err)
		}
		name = fmt.Sprintf("entry %d (%s at %s)", i, e.Type, e.Time.Format(timeLayout))
		h, err := ParseHead(hjson)
		if err != nil {
			return nil, fmt.Errorf("%s: altered tree head: %w", name, err)
		}
		if h.Origin != origin {
			return nil, fmt.Errorf("%s: tree head of log %q in log %q", name, h.Origin, origin)
		}
		if err := h.Verify(pub); err != nil {
			return nil, fmt.Errorf("%s: altered tree head: %w", name, err)
		}
		if h.Size != i+1 {
			if h.Size > i+1 {
				return nil, fmt.Errorf("%s: its signed tree head has size %d, it is at position %d: entries before it were deleted or reordered", name, h.Size, i)
			}
			return nil, fmt.Errorf("%s: its signed tree head has size %d, it is at position %d: entries were inserted or reordered", name, h.Size, i)
		}
		leaf := LeafHash(eb)
		fr.push(leaf)
		if fr.root() != h.Root {
			return nil, fmt.Errorf("%s: altered: the recomputed tree root differs from the signed one (this entry or an earlier one was changed)", name)
		}
		if h.Time.Before(last.Time) {
			return nil, fmt.Errorf("%s: its tree head is older than the previous one: reordered", name)
		}
		last = h
		v.Records = append(v.Records, Record{Index: i, Entry: e, Raw: bytes.Clone(eb), Leaf: leaf, Head: h})
	}
	if len(v.Records) > 0 {
		v.Head = last
	}
	return v, nil
}

// readLine reads one newline-terminated record; a final line without a newline is
// an incomplete record.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxRecordLen {
			return nil, fmt.Errorf("damaged record: longer than %d bytes", MaxRecordLen)
		}
		switch err {
		case nil:
			return line[:len(line)-1], nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if len(line) == 0 {
				return nil, io.EOF
			}
			return nil, errors.New("incomplete record (no final newline): cut short or altered")
		default:
			return nil, err
		}
	}
}

// Leaves returns the leaf hashes of the verified records.
func (v *Verified) Leaves() []Hash {
	out := make([]Hash, len(v.Records))
	for i, r := range v.Records {
		out[i] = r.Leaf
	}
	return out
}

// CheckExtends checks that the verified log extends an older signed head (one kept
// elsewhere, e.g. by `nixpki log head` on another machine): the head's signature, and
// an RFC 9162 consistency proof from its size to the current one. This catches a log
// cut back and regrown, which the log's own files cannot show.
func (v *Verified) CheckExtends(old Head, pub ed25519.PublicKey) error {
	if err := old.Verify(pub); err != nil {
		return fmt.Errorf("old head: %w", err)
	}
	if old.Origin != v.Head.Origin {
		return fmt.Errorf("old head is of log %q, this is log %q", old.Origin, v.Head.Origin)
	}
	n := uint64(len(v.Records))
	if old.Size > n {
		return fmt.Errorf("log truncated: an older head signed %d entries, the log holds %d", old.Size, n)
	}
	if old.Size == 0 {
		return nil
	}
	leaves := v.Leaves()
	proof, err := ConsistencyProof(leaves, old.Size, n)
	if err != nil {
		return err
	}
	if err := VerifyConsistency(old.Size, n, old.Root, RootOf(leaves), proof); err != nil {
		return fmt.Errorf("the log does not extend the older head of size %d: %w", old.Size, err)
	}
	return nil
}
