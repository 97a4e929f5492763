# Evaluates nix/module.nix with nixpkgs' module system alone (lib.evalModules), for
# the tests: the NixOS options the module sets are declared here with the types
# NixOS gives them, and pkgs is reduced to what the module calls. Each generated
# file is an attrset whose outPath is a placeholder store path and which carries
# what went into it, so a test can map the path to a real file.
#
#   nix-instantiate --eval --strict --json nix/tests/eval-module.nix \
#     --arg lib 'import ../shared/nixpkgs-lib/lib' --arg case ./case.nix
{ lib, case }:
let
  inherit (lib) mkOption types;

  fakePath = name: "/nix/store/00000000000000000000000000000000-${name}";

  # pkgs.formats.json's type: any JSON value.
  jsonValue = types.nullOr (types.oneOf [
    types.bool types.int types.float types.str types.path
    (types.attrsOf jsonValue) (types.listOf jsonValue)
  ]) // { description = "JSON value"; };

  pkgs = {
    formats.json = { }: {
      type = types.attrsOf jsonValue;
      generate = name: value: { outPath = fakePath name; inherit value; };
    };
    runCommand = name: env: script: { outPath = fakePath name; inherit script; } // env;
  };

  # systemd's unit option values (nixos/lib/systemd-unit-options.nix: unitOption).
  unitOption = types.oneOf [ types.bool types.int types.str types.path (types.listOf (types.oneOf [ types.bool types.int types.str types.path ])) ];

  nixosOptions = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule { options.source = mkOption { type = types.unspecified; }; });
        default = { };
      };
      systemd.services = mkOption {
        default = { };
        type = types.attrsOf (types.submodule {
          options = {
            description = mkOption { type = types.str; default = ""; };
            wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
            after = mkOption { type = types.listOf types.str; default = [ ]; };
            wants = mkOption { type = types.listOf types.str; default = [ ]; };
            restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
            environment = mkOption { type = types.attrsOf types.str; default = { }; };
            serviceConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
          };
        });
      };
      networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
      nix.settings = mkOption {
        default = { };
        type = types.submodule {
          freeformType = types.attrsOf (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ]);
          options.substituters = mkOption { type = types.listOf types.str; default = [ ]; };
          options.trusted-public-keys = mkOption { type = types.listOf types.str; default = [ ]; };
        };
      };
      security.pki.certificateFiles = mkOption { type = types.listOf types.path; default = [ ]; };
      security.acme = {
        acceptTerms = mkOption { type = types.bool; default = false; };
        defaults = mkOption {
          default = { };
          type = types.submodule {
            freeformType = types.attrsOf types.anything;
            options.server = mkOption { type = types.str; default = "https://acme-v02.api.letsencrypt.org/directory"; };
          };
        };
        certs = mkOption { type = types.attrsOf (types.attrsOf types.anything); default = { }; };
      };
    };
  };

  eval = lib.evalModules {
    modules = [ nixosOptions ../module.nix case ];
    specialArgs = { inherit pkgs; };
  };
  c = eval.config;
  settingsOf = name: if c.environment.etc ? ${name} then c.environment.etc.${name}.source.file.value else null;
in
{
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  services = lib.mapAttrs (_: s: { inherit (s) description wantedBy after serviceConfig; }) c.systemd.services;
  settings = settingsOf "nixpki/settings.json";
  gateSettings = settingsOf "nixpki/gate.json";
  settingsPaths = lib.mapAttrs (_: e: e.source.outPath) c.environment.etc;
  checkScripts = lib.mapAttrs (_: e: e.source.script) c.environment.etc;
  firewall = c.networking.firewall.allowedTCPPorts;
  nixSettings = { inherit (c.nix.settings) substituters trusted-public-keys; };
  pki = map toString c.security.pki.certificateFiles;
  acmeServer = c.security.acme.defaults.server;
}
