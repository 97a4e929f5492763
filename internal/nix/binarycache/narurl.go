package binarycache

import (
	"fmt"
	"strings"

	"nixpki/internal/nix/base32"
)

// Compressions of NAR files, by file extension, as Nix names them.
var extCompression = map[string]string{
	".nar":     "none",
	".nar.xz":  "xz",
	".nar.zst": "zstd",
	".nar.bz2": "bzip2",
}

// NARNameHeader is a NAR upload's header saying what hash its file name is:
// NARNameNarHash for the NarHash (the SHA-256 of the NAR the file decompresses
// to, which nixpki nix push knows before compressing); absent, the name is the
// hash of the file itself, as Nix names it.
const (
	NARNameHeader  = "Nixpki-Nar-Name"
	NARNameNarHash = "nar-hash"
)

// ParseNARURL checks a NAR location as Nix writes it, "nar/<nix32 sha256 of the
// file>.nar[.xz|.zst|.bz2]", and returns the file hash it names and the compression
// its extension stands for.
func ParseNARURL(u string) (fileHash [32]byte, compression string, err error) {
	name, ok := strings.CutPrefix(u, "nar/")
	if !ok {
		return fileHash, "", fmt.Errorf("NAR URL %.100q is not nar/<hash>.nar[.xz|.zst|.bz2]", u)
	}
	const hashLen = 52
	if len(name) < hashLen || strings.ContainsAny(name, "/\x00") {
		return fileHash, "", fmt.Errorf("NAR file name %.100q is not <52-character nix32 hash>.nar[.xz|.zst|.bz2]", name)
	}
	ext := name[hashLen:]
	compression, ok = extCompression[ext]
	if !ok {
		return fileHash, "", fmt.Errorf("NAR file name %.100q: extension %.20q: the gate takes xz, zstd, bzip2 or no compression (.nar.xz, .nar.zst, .nar.bz2, .nar)", name, ext)
	}
	d, err := base32.Decode(name[:hashLen])
	if err != nil || len(d) != 32 {
		return fileHash, "", fmt.Errorf("NAR file name %.100q: the hash part is not a nix32 SHA-256", name)
	}
	copy(fileHash[:], d)
	return fileHash, compression, nil
}

// NARURL is the location Nix gives a NAR file, "" for a compression it does
// not name.
func NARURL(fileHash [32]byte, compression string) string {
	for ext, c := range extCompression {
		if c == compression {
			return "nar/" + base32.Encode(fileHash[:]) + ext
		}
	}
	return ""
}
