package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"nixpki/internal/nixkey"
	"nixpki/internal/verify"
)

// closureFromDB reads the closure of paths from the local Nix database, as nixpki
// verify does (read-only, no daemon): the same records nix path-info --json -r
// prints, without starting Nix. The uploader reads the paths' files from the local
// store, so the local database is the one that describes them. Any failure (a
// database this user cannot read, a path that is not valid) is returned, and the
// caller asks nix path-info instead, which says what is wrong in Nix's words.
func closureFromDB(ctx context.Context, paths []string) ([]pathInfo, error) {
	s := verify.OpenLocalStore(ctx, "/")
	defer s.Close()
	var infos []pathInfo
	seen := map[string]bool{}
	var queue []string
	for _, a := range paths {
		p, err := s.Resolve(a)
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			queue = append(queue, p)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		pi, err := s.Info(ctx, p)
		if err != nil {
			return nil, err
		}
		if len(pi.BadSigs) > 0 {
			return nil, fmt.Errorf("%s: malformed signatures in the database", p)
		}
		in := pathInfo{Path: pi.Path, NarHash: nixkey.FormatSHA256(pi.NarHash), NarSize: pi.NarSize, References: pi.References, Deriver: pi.Deriver, CA: pi.CA}
		for _, sig := range pi.Sigs {
			in.Signatures = append(in.Signatures, sig.String())
		}
		if in.NarSize == 0 {
			return nil, fmt.Errorf("%s: the database does not record its NarSize", p)
		}
		infos = append(infos, in)
		for _, r := range pi.References {
			if !seen[r] {
				seen[r] = true
				queue = append(queue, r)
			}
		}
	}
	// In nix path-info's order (by path), so that the order of uploads does not
	// depend on where the records came from.
	slices.SortFunc(infos, func(a, b pathInfo) int { return strings.Compare(a.Path, b.Path) })
	return infos, nil
}
