// Package nixkey implements Nix's signing keys, store-path fingerprints,
// detached signatures, narinfo files and NAR archives exactly as Nix 2.8 has
// them, so that the rest of nixpki can produce and check artefacts that a
// stock Nix accepts byte for byte.
//
// The package is the single place where nixpki speaks Nix's wire formats:
//
//   - nixbase32 and the hash notations Nix accepts (base32.go);
//   - Ed25519 secret and public keys in the "NAME:base64" form written by
//     nix-store --generate-binary-cache-key (key.go);
//   - detached signatures "NAME:base64" (sig.go);
//   - store-path validation and the "1;path;narHash;narSize;refs"
//     fingerprint that Nix signs (fingerprint.go);
//   - .narinfo files as served by binary caches (narinfo.go);
//   - a streaming NAR reader and writer and DumpPath, which serialises a
//     file-system path like nix-store --dump (nar.go).
//
// Parsers are deliberately at least as strict as Nix: anything they accept,
// Nix accepts with the same meaning; where Nix is lenient in a way that could
// make two readers disagree (duplicate narinfo keys, non-canonical NAR
// encodings), this package rejects the input with an error naming the
// offending field or value.
package nixkey
