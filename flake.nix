{
  description = "nixpki: a private PKI for NixOS fleets";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      version = "unstable-" + (self.shortRev or self.dirtyShortRev or "dirty");
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs: rec {
        nixpki = pkgs.callPackage ./nix/package.nix { inherit version; };
        default = nixpki;
      });

      overlays.default = final: prev: { nixpki = final.callPackage ./nix/package.nix { inherit version; }; };

      # The module's package defaults to pkgs.nixpki; the overlay provides it.
      nixosModules.default = { pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };
    };
}
