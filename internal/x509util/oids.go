package x509util

import "encoding/asn1"

// nixpki's object identifiers, all defined here and nowhere else.
//
// They sit under 1.3.6.1.4.1.99999.1 — a private-enterprise arc that nixpki uses
// provisionally until it registers its own PEN with IANA (see docs/asn1.md). Arcs are
// kept below 2^31 so every X.509 stack, Go's included, can parse them.
var (
	// OIDNixStoreSigning is the extended key usage of Nix store-signing certificates
	// and of the intermediate that issues them.
	OIDNixStoreSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}
	// OIDNixConstraints is the critical extension carrying a Nix certificate's key
	// name, targets and scope.
	OIDNixConstraints = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 2}
)
