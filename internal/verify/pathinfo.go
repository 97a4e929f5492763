package verify

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
)

// ErrNotValid marks a path the store does not hold (Nix: "path '…' is not valid").
var ErrNotValid = errors.New("is not valid")

// PathInfo is what a store records about one valid path: the local database's
// ValidPaths row and its Refs, or a binary cache's narinfo.
type PathInfo struct {
	Path       string
	NarHash    [32]byte
	NarSize    uint64   // 0 if the store does not know it (old databases)
	References []string // full store paths, sorted, unique
	Sigs       []signing.Signature
	// BadSigs are signature texts that do not parse, each with the reason.
	BadSigs []string
	// CA is the content address in Nix's canonical rendering, or "".
	CA string
	// Deriver is the store path of the derivation that built it, or "".
	Deriver string
	// Ultimate: built locally (Nix trusts such paths when no signatures are
	// demanded).
	Ultimate bool

	// For binary caches: where the NAR is and how it is compressed.
	URL, Compression string
}

// narInfo returns the fields that fingerprints and content addresses use, in
// the form nixkey checks.
func (pi *PathInfo) narInfo() *narinfo.NarInfo {
	refs := make([]string, len(pi.References))
	for i, r := range pi.References {
		refs[i] = r[strings.LastIndexByte(r, '/')+1:]
	}
	return &narinfo.NarInfo{StorePath: pi.Path, NarHash: pi.NarHash, NarSize: pi.NarSize, References: refs, CA: pi.CA}
}

// fingerprint is the message signatures of the path sign.
func (pi *PathInfo) fingerprint() (string, error) {
	return signing.Fingerprint(pi.Path, pi.NarHash, pi.NarSize, pi.References)
}

// parseSigs splits a space-separated list of signatures (the database's sigs
// column) into well-formed signatures, without duplicates, and the texts that
// do not parse, each with the reason.
func parseSigs(field string) (sigs []signing.Signature, bad []string) {
	seen := map[string]bool{}
	for _, s := range strings.Fields(field) {
		sig, err := signing.ParseSignature(s)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%.100q: %v", s, err))
			continue
		}
		if canon := sig.String(); !seen[canon] {
			seen[canon] = true
			sigs = append(sigs, sig)
		}
	}
	return sigs, bad
}

// dbRow is one ValidPaths row as the database holds it; NULL columns are "" or 0.
type dbRow struct {
	Path     string
	Hash     string // "sha256:<base16>" as Nix writes it; any notation Nix reads is accepted
	NarSize  int64
	Ultimate int64
	Sigs     string
	CA       string
	Deriver  string
	Refs     []string
}

// parseDBRow checks a database row of a store in storeDir and turns it into a
// PathInfo. Malformed signatures do not fail the row (they are kept in
// BadSigs); a malformed path, hash, size, content address or reference does.
func parseDBRow(storeDir string, r dbRow) (*PathInfo, error) {
	if _, err := storepath.Parse(storeDir, r.Path); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	h, err := nixhash.ParseSHA256(r.Hash)
	if err != nil {
		return nil, fmt.Errorf("database record of '%s': NarHash: %w", r.Path, err)
	}
	if r.NarSize < 0 {
		return nil, fmt.Errorf("database record of '%s': negative NarSize %d", r.Path, r.NarSize)
	}
	pi := &PathInfo{Path: r.Path, NarHash: h, NarSize: uint64(r.NarSize), Ultimate: r.Ultimate != 0}
	if _, err := storepath.Parse(storeDir, r.Deriver); err == nil {
		pi.Deriver = r.Deriver // informative only: a malformed one is left out
	}
	pi.Sigs, pi.BadSigs = parseSigs(r.Sigs)
	if r.CA != "" {
		ca, err := contentaddress.Parse(r.CA)
		if err != nil {
			return nil, fmt.Errorf("database record of '%s': %w", r.Path, err)
		}
		pi.CA = ca.String()
	}
	for _, ref := range r.Refs {
		if _, err := storepath.Parse(storeDir, ref); err != nil {
			return nil, fmt.Errorf("database record of '%s': reference: %w", r.Path, err)
		}
	}
	pi.References = slices.Compact(slices.Sorted(slices.Values(r.Refs)))
	return pi, nil
}

// fromNarInfo turns a parsed narinfo into a PathInfo.
func fromNarInfo(storeDir string, ni *narinfo.NarInfo) *PathInfo {
	refs := make([]string, len(ni.References))
	for i, r := range ni.References {
		refs[i] = storeDir + "/" + r
	}
	return &PathInfo{
		Path: ni.StorePath, NarHash: ni.NarHash, NarSize: ni.NarSize, References: refs,
		Sigs: ni.Sigs, CA: ni.CA, URL: ni.URL, Compression: ni.Compression,
	}
}
