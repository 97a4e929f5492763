package signing

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/storepath"
)

// Fingerprint returns the message Nix signs for a store path:
//
//	1;<store path>;sha256:<nixbase32 narHash>;<narSize>;<references>
//
// where references are full store paths, sorted, deduplicated and joined
// with ','. storePath must be a full store path; each reference may be a
// full store path in the same store directory or a bare base name, which is
// taken to be in storePath's store directory. As in Nix, narSize must be
// non-zero.
func Fingerprint(storePath string, narHash [32]byte, narSize uint64, references []string) (string, error) {
	storeDir, _, err := storepath.Split(storePath)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	if narSize == 0 {
		return "", fmt.Errorf("fingerprint of %s: NarSize is zero (unknown)", storePath)
	}
	refs := make([]string, 0, len(references))
	for _, r := range references {
		if strings.IndexByte(r, '/') < 0 {
			if err := storepath.ValidateBaseName(r); err != nil {
				return "", fmt.Errorf("fingerprint of %s: reference: %w", storePath, err)
			}
			r = storeDir + "/" + r
		} else if _, err := storepath.Parse(storeDir, r); err != nil {
			return "", fmt.Errorf("fingerprint of %s: reference: %w", storePath, err)
		}
		refs = append(refs, r)
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)

	var b strings.Builder
	b.Grow(len(storePath) + 80 + len(refs)*(len(storeDir)+50))
	b.WriteString("1;")
	b.WriteString(storePath)
	b.WriteByte(';')
	b.WriteString(nixhash.FormatSHA256(narHash))
	b.WriteByte(';')
	b.WriteString(strconv.FormatUint(narSize, 10))
	b.WriteByte(';')
	b.WriteString(strings.Join(refs, ","))
	return b.String(), nil
}
