// Package pathinfo is what a Nix store reports about one valid path: the local
// database's ValidPaths row and its references, or a binary cache's narinfo, in
// one form, so that code checking paths need not care which store it reads.
package pathinfo

import (
	"errors"
	"strings"

	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/signing"
)

// ErrNotValid marks a path the store does not hold (Nix: "path '…' is not valid").
var ErrNotValid = errors.New("is not valid")

// Info is a store's record of one valid path.
type Info struct {
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

	// For binary caches: where the NAR is, how it is compressed and, if the
	// narinfo says, the file's size.
	URL, Compression string
	FileSize         uint64
}

// NarInfo returns the fields that fingerprints and content addresses use, as a
// narinfo, whose methods check them.
func (pi *Info) NarInfo() *narinfo.NarInfo {
	refs := make([]string, len(pi.References))
	for i, r := range pi.References {
		refs[i] = r[strings.LastIndexByte(r, '/')+1:]
	}
	return &narinfo.NarInfo{StorePath: pi.Path, NarHash: pi.NarHash, NarSize: pi.NarSize, References: refs, CA: pi.CA}
}

// Fingerprint is the message signatures of the path sign.
func (pi *Info) Fingerprint() (string, error) {
	return signing.Fingerprint(pi.Path, pi.NarHash, pi.NarSize, pi.References)
}

// FromNarInfo turns a parsed narinfo of a store in storeDir into an Info.
func FromNarInfo(storeDir string, ni *narinfo.NarInfo) *Info {
	refs := make([]string, len(ni.References))
	for i, r := range ni.References {
		refs[i] = storeDir + "/" + r
	}
	return &Info{
		Path: ni.StorePath, NarHash: ni.NarHash, NarSize: ni.NarSize, References: refs,
		Sigs: ni.Sigs, CA: ni.CA, URL: ni.URL, Compression: ni.Compression, FileSize: ni.FileSize,
	}
}

// JSON is one entry of `nix path-info --json` as Nix 2.8 prints it: hashes and
// references in Nix's text forms, as read from the command's output.
type JSON struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
	CA         string   `json:"ca"`
	Signatures []string `json:"signatures"`
}
