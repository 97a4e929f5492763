package verify

import "nixpki/internal/nix/pathinfo"

// PathInfo is a store's record of one valid path (pathinfo.Info).
type PathInfo = pathinfo.Info

// ErrNotValid marks a path the store does not hold (Nix: "path '…' is not valid").
var ErrNotValid = pathinfo.ErrNotValid
