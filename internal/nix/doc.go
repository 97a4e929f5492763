// Package nix groups the packages that speak Nix's formats exactly as
// Nix 2.8 has them, so that the rest of nixpki can produce and check
// artefacts that a stock Nix accepts byte for byte:
//
//   - base32: nixbase32, Nix's base-32 encoding;
//   - nixhash: the hash notations Nix accepts (base16, nixbase32, base64, SRI);
//   - storepath: store directories, store paths and their names;
//   - signing: Ed25519 keys and detached signatures in the "NAME:base64"
//     form of nix-store --generate-binary-cache-key, and the fingerprint
//     of a store path that they sign;
//   - nar: a streaming NAR reader and writer, and DumpPath, which
//     serialises a file-system path like nix-store --dump;
//   - narinfo: .narinfo files as served by binary caches;
//   - contentaddress: content addresses and the store paths they imply;
//   - pathinfo: a store's record of one valid path;
//   - localstore: a read-only view of a local Nix store's database;
//   - binarycache: the client of binary caches (http(s):// and file://).
//
// Parsers are deliberately at least as strict as Nix: anything they accept,
// Nix accepts with the same meaning; where Nix is lenient in a way that could
// make two readers disagree (duplicate narinfo keys, non-canonical NAR
// encodings), they reject the input with an error naming the offending field
// or value. This package itself holds only the tests that check them
// against the real Nix binaries.
package nix
