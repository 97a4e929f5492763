package push

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"nixpki/internal/nix/localstore"
	"nixpki/internal/nix/nixhash"
)

// closureFromDB reads the closure of paths from the local Nix database
// (localstore: read-only, no daemon, as nixpki verify reads it): the same
// records nix path-info --json -r prints, without starting Nix. The uploader reads the paths' files from the local
// store, so the local database is the one that describes them. Any failure (a
// database this user cannot read, a path that is not valid) is returned, and the
// caller asks nix path-info instead, which says what is wrong in Nix's words.
func closureFromDB(ctx context.Context, paths []string) ([]pathInfo, error) {
	s := localstore.Open(ctx, "/")
	defer s.Close()
	var roots []string
	seen := map[string]bool{}
	for _, a := range paths {
		p, err := s.Resolve(a)
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			roots = append(roots, p)
		}
	}
	pis, err := s.Closure(ctx, roots)
	if err != nil {
		return nil, err
	}
	infos := make([]pathInfo, 0, len(pis))
	for _, pi := range pis {
		if len(pi.BadSigs) > 0 {
			return nil, fmt.Errorf("%s: malformed signatures in the database", pi.Path)
		}
		in := pathInfo{Path: pi.Path, NarHash: nixhash.FormatSHA256(pi.NarHash), NarSize: pi.NarSize, References: pi.References, Deriver: pi.Deriver, CA: pi.CA}
		for _, sig := range pi.Sigs {
			in.Signatures = append(in.Signatures, sig.String())
		}
		if in.NarSize == 0 {
			return nil, fmt.Errorf("%s: the database does not record its NarSize", pi.Path)
		}
		infos = append(infos, in)
	}
	// In nix path-info's order (by path), so that the order of uploads does not
	// depend on where the records came from.
	slices.SortFunc(infos, func(a, b pathInfo) int { return strings.Compare(a.Path, b.Path) })
	return infos, nil
}
