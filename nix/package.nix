# The nixpki package: `pkgs.callPackage ./nix/package.nix { }`.
# vendorHash covers go.mod/go.sum; a test (TestVendorHash) fails when a dependency
# change leaves it stale, printing the value to put here.
{ lib, buildGoModule, version ? "unstable" }:

buildGoModule {
  pname = "nixpki";
  inherit version;

  # Only what the build reads: a change to docs or tests elsewhere keeps the hash.
  src = lib.sourceByRegex ../. [ "^go\\.(mod|sum)$" "^cmd(/.*)?$" "^internal(/.*)?$" ];

  vendorHash = "sha256-0TW61ixgM73pm7AYTu2WQdMTKsYcDqtIlZpAdq+Xeoo=";

  subPackages = [ "cmd/nixpki" ];
  env.CGO_ENABLED = 0;
  ldflags = [ "-s" "-w" "-X main.version=${version}" ];

  # The tests drive real tools (Nix, OpenSSL, lego, PostgreSQL, …) and daemons;
  # they run with scripts/test.sh, not in the build sandbox.
  doCheck = false;

  meta = {
    description = "A private PKI for NixOS fleets: CA with an ACME server, certified Nix signing keys, a gate binary cache";
    mainProgram = "nixpki";
    platforms = lib.platforms.linux;
  };
}
