# NixOS module for nixpki: the CA (services.nixpki), the gate on a target
# (services.nixpki-gate) and a host's trust in the CA (security.nixpki.trust).
# Options are documented in docs/nixos.md.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf mkMerge types literalExpression;

  cfg = config.services.nixpki;
  gcfg = config.services.nixpki-gate;
  tcfg = config.security.nixpki.trust;
  json = pkgs.formats.json { };

  packageOption = mkOption {
    type = types.package;
    default = pkgs.nixpki or (pkgs.callPackage ./package.nix { });
    defaultText = literalExpression "pkgs.nixpki";
    description = "The nixpki package.";
  };

  boolOption = description: mkOption { type = types.bool; default = false; inherit description; };

  portOf = addr: lib.toInt (lib.last (lib.splitString ":" addr));
  lowPort = addrs: lib.any (a: a != "" && portOf a < 1024) addrs;

  # The settings file, validated with the program at build time: a file it would
  # refuse fails the build, not the service.
  checkedSettings = name: package: flags: settings:
    pkgs.runCommand "${name}-checked.json" { file = json.generate "${name}.json" settings; } ''
      ${package}/bin/nixpki config check ${lib.escapeShellArgs flags} --config "$file"
      ln -s "$file" "$out"
    '';

  notInStore = p: p == null || (builtins.isString p && !lib.hasPrefix "/nix/store/" p);

  storeAssertion = opt: p: {
    assertion = notInStore p;
    message = ''
      ${opt} is ${toString p}: a secret must not be in /nix/store, which every user
      can read. Give it as a quoted absolute path string ("/run/keys/…", or a
      secrets manager's path), never a path literal such as ./secret.
    '';
  };

  # Hardening shared by both services; binding a port below 1024 is the only
  # capability either may keep.
  hardening = needLowPort: {
    DynamicUser = true;
    UMask = "0077";
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    NoNewPrivileges = true;
    CapabilityBoundingSet = if needLowPort then [ "CAP_NET_BIND_SERVICE" ] else [ "" ];
    AmbientCapabilities = if needLowPort then [ "CAP_NET_BIND_SERVICE" ] else [ "" ];
    SystemCallFilter = [ "@system-service" "~@privileged" ];
    SystemCallArchitectures = "native";
    RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    ProtectClock = true;
    ProtectControlGroups = true;
    ProtectHostname = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    ProtectProc = "invisible";
    Restart = "on-failure";
  };

  stateDirectory = opt: dir: {
    assertion = lib.hasPrefix "/var/lib/" dir && !lib.hasInfix "/" (lib.removePrefix "/var/lib/" dir);
    message = "${opt} is ${dir}: with DynamicUser the state directory must be /var/lib/NAME.";
  };
in
{
  options = {
    services.nixpki = {
      enable = mkEnableOption "the nixpki certificate authority (CA, ACME server, Nix signing certificates)";

      package = packageOption;

      dataDir = mkOption {
        type = types.str;
        default = "/var/lib/nixpki";
        description = ''
          State directory: database, encrypted CA keys, certificates and what the
          first start decided. It is created and initialised from
          {option}`settings` at the first start.
        '';
      };

      passwordFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/keys/nixpki-password";
        description = ''
          File holding the password that encrypts the CA keys, passed to the
          service with systemd's LoadCredential. When null, the first start
          generates one inside {option}`dataDir`.
        '';
      };

      openFirewall = boolOption "Open the HTTPS and plain-HTTP ports in the firewall.";

      settings = mkOption {
        default = { };
        description = ''
          nixpki's settings (docs/config.md), written as JSON and checked with
          `nixpki config check` at build time. Secrets never go here: use
          {option}`passwordFile`.
        '';
        type = types.submodule {
          freeformType = json.type;
          options = {
            name = mkOption {
              type = types.str;
              default = "nixpki";
              description = "CA name; the root is \"NAME Root CA\". Fixed at the first start.";
            };
            dns_names = mkOption {
              type = types.listOf types.str;
              default = [ config.networking.fqdnOrHostName or "localhost" ];
              defaultText = literalExpression "[ config.networking.fqdnOrHostName ]";
              description = "DNS names the server answers on. Fixed at the first start.";
            };
            listen = mkOption {
              type = types.str;
              default = ":8443";
              description = "HTTPS listen address (API and ACME).";
            };
            http_listen = mkOption {
              type = types.str;
              default = ":8080";
              description = "Plain-HTTP listen address (CRL, OCSP, CA certificates); empty disables it.";
            };
            external_url = mkOption {
              type = types.nullOr types.str;
              default = null;
              example = "http://ca.lab.internal:8080";
              description = "Plain-HTTP base URL put into certificates for CRL, OCSP and caIssuers.";
            };
          };
        };
      };
    };

    services.nixpki-gate = {
      enable = mkEnableOption "the nixpki gate: a Nix binary cache admitting only what certified keys signed";

      package = packageOption;

      dataDir = mkOption {
        type = types.str;
        default = "/var/lib/nixpki-gate";
        description = "The gate's state directory (database, NARs, log).";
      };

      rootCertificate = mkOption {
        type = types.path;
        example = literalExpression "./root.crt";
        description = "The CA root certificate (PEM) the gate trusts. Public: it may be in the store.";
      };

      keyFile = mkOption {
        type = types.str;
        example = "/run/keys/nixpki-gate-key";
        description = ''
          The gate's Nix secret key (from `nixpki gate key generate`), passed with
          LoadCredential. Its public half is {option}`publicKey`.
        '';
      };

      publicKey = mkOption {
        type = types.str;
        example = "host-a-gate-1:Xm9…=";
        description = "The gate's public key, as `nixpki gate key generate` printed it.";
      };

      passwordFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Password encrypting the gate's ACME account and certificate keys; null generates one in the state directory.";
      };

      configureNix = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Make this host's Nix substitute from the gate only and trust only the gate's
          key ({option}`nix.settings.substituters` and
          {option}`nix.settings.trusted-public-keys`, forced: NixOS's default
          cache.nixos.org is dropped), with negative narinfo lookups not cached.
        '';
      };

      openFirewall = boolOption "Open the gate's port in the firewall (members push to it).";

      settings = mkOption {
        default = { };
        description = "The gate's settings (docs/gate.md), checked with `nixpki config check --gate` at build time.";
        type = types.submodule {
          freeformType = json.type;
          options = {
            name = mkOption {
              type = types.str;
              default = config.networking.hostName or "gate";
              defaultText = literalExpression "config.networking.hostName";
              description = "The gate's name, as certificates' targets match it. Fixed at the first start.";
            };
            listen = mkOption {
              type = types.str;
              default = "127.0.0.1:8501";
              description = "Address to serve on; plain HTTP only on loopback.";
            };
            url = mkOption {
              type = types.str;
              default = "http://${gcfg.settings.listen}";
              defaultText = literalExpression "\"http://\${listen}\"";
              description = "URL this host's Nix substitutes from.";
            };
          };
        };
      };
    };

    security.nixpki.trust = {
      roots = mkOption {
        type = types.listOf types.path;
        default = [ ];
        example = literalExpression "[ ./root.crt ]";
        description = "nixpki root certificates this host trusts (added to security.pki.certificateFiles).";
      };
      acmeServer = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "https://ca.lab.internal:8443/acme/acme/directory";
        description = "When set, the default ACME directory of security.acme (security.acme.defaults.server).";
      };
    };
  };

  config = mkMerge [
    (mkIf cfg.enable (
      let
        settings = lib.filterAttrs (_: v: v != null) cfg.settings
          // lib.optionalAttrs (cfg.passwordFile != null) { password_file = "$CREDENTIALS_DIRECTORY/password"; };
        settingsFile = checkedSettings "nixpki" cfg.package [ ] settings;
      in
      {
        assertions = [
          (storeAssertion "services.nixpki.passwordFile" cfg.passwordFile)
          (stateDirectory "services.nixpki.dataDir" cfg.dataDir)
        ];
        environment.systemPackages = [ cfg.package ];
        # Admin commands (nixpki cert issue --dir …) find the settings here.
        environment.etc."nixpki/settings.json".source = settingsFile;
        systemd.services.nixpki = {
          description = "nixpki certificate authority";
          wantedBy = [ "multi-user.target" ];
          after = [ "network-online.target" ];
          wants = [ "network-online.target" ];
          restartTriggers = [ settingsFile ];
          serviceConfig = hardening (lowPort [ cfg.settings.listen cfg.settings.http_listen ]) // {
            ExecStart = lib.escapeShellArgs [ "${cfg.package}/bin/nixpki" "serve" "--config" "${settingsFile}" "--dir" cfg.dataDir ];
            StateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
            StateDirectoryMode = "0700";
          } // lib.optionalAttrs (cfg.passwordFile != null) {
            LoadCredential = [ "password:${cfg.passwordFile}" ];
          };
        };
        networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall
          (map portOf (lib.filter (a: a != "") [ cfg.settings.listen cfg.settings.http_listen ]));
      }
    ))

    (mkIf gcfg.enable (
      let
        settings = gcfg.settings // {
          root_file = "${gcfg.rootCertificate}";
          key_file = "$CREDENTIALS_DIRECTORY/gate-key";
          key_name = lib.head (lib.splitString ":" gcfg.publicKey);
        } // lib.optionalAttrs (gcfg.passwordFile != null) { password_file = "$CREDENTIALS_DIRECTORY/password"; };
        settingsFile = checkedSettings "nixpki-gate" gcfg.package [ "--gate" ] settings;
      in
      {
        assertions = [
          (storeAssertion "services.nixpki-gate.keyFile" gcfg.keyFile)
          (storeAssertion "services.nixpki-gate.passwordFile" gcfg.passwordFile)
          (stateDirectory "services.nixpki-gate.dataDir" gcfg.dataDir)
        ];
        environment.systemPackages = [ gcfg.package ];
        environment.etc."nixpki/gate.json".source = settingsFile;
        systemd.services.nixpki-gate = {
          description = "nixpki gate (Nix binary cache)";
          wantedBy = [ "multi-user.target" ];
          after = [ "network.target" ];
          restartTriggers = [ settingsFile ];
          serviceConfig = hardening (lowPort [ gcfg.settings.listen ]) // {
            ExecStart = lib.escapeShellArgs [ "${gcfg.package}/bin/nixpki" "gate" "serve" "--config" "${settingsFile}" "--dir" gcfg.dataDir ];
            StateDirectory = lib.removePrefix "/var/lib/" gcfg.dataDir;
            StateDirectoryMode = "0700";
            LoadCredential = [ "gate-key:${gcfg.keyFile}" ]
              ++ lib.optional (gcfg.passwordFile != null) "password:${gcfg.passwordFile}";
          };
        };
        # The gate is the only substituter and its key the only one trusted: NixOS's
        # own defaults (cache.nixos.org) would otherwise merge in beside them.
        # Negative narinfo lookups are not cached, so a path admitted after a
        # first try (a second signer arrived) is substituted at once.
        nix.settings = mkIf gcfg.configureNix {
          substituters = lib.mkForce [ gcfg.settings.url ];
          trusted-public-keys = lib.mkForce [ gcfg.publicKey ];
          narinfo-cache-negative-ttl = lib.mkDefault 0;
        };
        networking.firewall.allowedTCPPorts = mkIf gcfg.openFirewall [ (portOf gcfg.settings.listen) ];
      }
    ))

    {
      security.pki.certificateFiles = tcfg.roots;
      security.acme.defaults.server = mkIf (tcfg.acmeServer != null) tcfg.acmeServer;
    }
  ];
}
