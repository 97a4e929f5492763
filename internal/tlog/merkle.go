// Package tlog is a tamper-evident log: an append-only file of entries hashed into a
// Merkle tree as in Certificate Transparency (RFC 9162), with a signed tree head after
// every entry. The gate records in it every certificate, CRL, admission, rejection
// and quarantine it sees; Verify detects an altered, reordered, inserted or deleted
// entry and names it.
//
// Hashes (RFC 9162 §2.1.1): a leaf is SHA-256(0x00 ‖ entry), an interior node
// SHA-256(0x01 ‖ left ‖ right), and the tree of n leaves splits at the largest power
// of two below n. Inclusion and consistency proofs are RFC 9162 §2.1.3 and §2.1.4.
//
// On disk (file.go) each record is one line: the entry's canonical JSON, a tab, and
// the signed tree head over all entries up to and including it. A separate head file
// holds the newest tree head, so that cutting records off the end is detected too.
// Every append is written and fsynced before Append returns.
package tlog

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
)

// Hash is a SHA-256 digest.
type Hash [32]byte

// LeafHash is RFC 9162's hash of a leaf: SHA-256(0x00 ‖ data).
func LeafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash is RFC 9162's hash of an interior node: SHA-256(0x01 ‖ left ‖ right).
func NodeHash(left, right Hash) Hash {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], left[:])
	copy(buf[33:], right[:])
	return sha256.Sum256(buf[:])
}

// emptyRoot is the root of the empty tree: SHA-256 of the empty string.
var emptyRoot = Hash(sha256.Sum256(nil))

// frontier computes roots incrementally: it holds the roots of the perfect subtrees
// that make up the tree so far, largest (leftmost) first.
type frontier struct {
	n     uint64
	stack []Hash
}

// push appends a leaf hash.
func (f *frontier) push(leaf Hash) {
	h := leaf
	// Merge while the lowest bits of n are set: each set bit is a full subtree of
	// that size waiting for its right sibling.
	for n := f.n; n&1 == 1; n >>= 1 {
		top := f.stack[len(f.stack)-1]
		f.stack = f.stack[:len(f.stack)-1]
		h = NodeHash(top, h)
	}
	f.stack = append(f.stack, h)
	f.n++
}

// root is MTH of the leaves pushed so far.
func (f *frontier) root() Hash {
	if len(f.stack) == 0 {
		return emptyRoot
	}
	h := f.stack[len(f.stack)-1]
	for i := len(f.stack) - 2; i >= 0; i-- {
		h = NodeHash(f.stack[i], h)
	}
	return h
}

// RootOf computes MTH(leaves) recursively (RFC 9162 §2.1.1).
func RootOf(leaves []Hash) Hash {
	switch len(leaves) {
	case 0:
		return emptyRoot
	case 1:
		return leaves[0]
	}
	k := split(uint64(len(leaves)))
	return NodeHash(RootOf(leaves[:k]), RootOf(leaves[k:]))
}

// split is the largest power of two strictly below n (n ≥ 2).
func split(n uint64) uint64 {
	return 1 << (bits.Len64(n-1) - 1)
}

// InclusionProof returns the audit path of leaf index in the tree of the first n
// leaves (RFC 9162 §2.1.3.1).
func InclusionProof(leaves []Hash, index, n uint64) ([]Hash, error) {
	if n > uint64(len(leaves)) || index >= n {
		return nil, fmt.Errorf("inclusion proof: index %d not in a tree of size %d (log has %d entries)", index, n, len(leaves))
	}
	return path(index, leaves[:n]), nil
}

func path(m uint64, d []Hash) []Hash {
	n := uint64(len(d))
	if n == 1 {
		return nil
	}
	k := split(n)
	if m < k {
		return append(path(m, d[:k]), RootOf(d[k:]))
	}
	return append(path(m-k, d[k:]), RootOf(d[:k]))
}

// VerifyInclusion checks an audit path for leaf (a leaf hash) at index in a tree of
// size n with the given root (RFC 9162 §2.1.3.2).
func VerifyInclusion(leaf Hash, index, n uint64, proof []Hash, root Hash) error {
	if index >= n {
		return fmt.Errorf("inclusion: index %d is not below tree size %d", index, n)
	}
	fn, sn := index, n-1
	r := leaf
	for _, p := range proof {
		if sn == 0 {
			return errors.New("inclusion: proof is too long")
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return errors.New("inclusion: proof is too short")
	}
	if r != root {
		return errors.New("inclusion: the proof does not lead to the root")
	}
	return nil
}

// ConsistencyProof proves that the tree of the first m leaves is a prefix of the
// tree of the first n (RFC 9162 §2.1.4.1).
func ConsistencyProof(leaves []Hash, m, n uint64) ([]Hash, error) {
	if n > uint64(len(leaves)) || m > n || m == 0 {
		return nil, fmt.Errorf("consistency proof: sizes %d and %d invalid for a log of %d entries", m, n, len(leaves))
	}
	if m == n {
		return nil, nil
	}
	return subproof(m, leaves[:n], true), nil
}

func subproof(m uint64, d []Hash, b bool) []Hash {
	n := uint64(len(d))
	if m == n {
		if b {
			return nil
		}
		return []Hash{RootOf(d)}
	}
	k := split(n)
	if m <= k {
		return append(subproof(m, d[:k], b), RootOf(d[k:]))
	}
	return append(subproof(m-k, d[k:], false), RootOf(d[:k]))
}

// VerifyConsistency checks that a tree of size m with root oldRoot is a prefix of the
// tree of size n with root newRoot (RFC 9162 §2.1.4.2).
func VerifyConsistency(m, n uint64, oldRoot, newRoot Hash, proof []Hash) error {
	switch {
	case m > n:
		return fmt.Errorf("consistency: old size %d is larger than new size %d", m, n)
	case m == n:
		if len(proof) != 0 {
			return errors.New("consistency: a proof between equal sizes must be empty")
		}
		if oldRoot != newRoot {
			return errors.New("consistency: same size, different roots: the log was rewritten")
		}
		return nil
	case m == 0:
		return errors.New("consistency: old size is zero")
	}
	if m&(m-1) == 0 { // m is a power of two: the old root is the first node
		proof = append([]Hash{oldRoot}, proof...)
	}
	if len(proof) == 0 {
		return errors.New("consistency: empty proof")
	}
	fn, sn := m-1, n-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := proof[0], proof[0]
	for _, c := range proof[1:] {
		if sn == 0 {
			return errors.New("consistency: proof is too long")
		}
		if fn&1 == 1 || fn == sn {
			fr = NodeHash(c, fr)
			sr = NodeHash(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = NodeHash(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return errors.New("consistency: proof is too short")
	}
	if fr != oldRoot {
		return errors.New("consistency: the proof does not lead to the old root: the log was rewritten before the old head")
	}
	if sr != newRoot {
		return errors.New("consistency: the proof does not lead to the new root")
	}
	return nil
}
