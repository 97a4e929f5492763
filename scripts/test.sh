#!/usr/bin/env bash
# Runs every nixpki test on a fresh Debian machine: installs the real tools the tests
# drive (Nix, lego, OpenSSL, Pebble, …) when run as root, then go vet and go test -race.
# In CI (CI=true) a test whose tool is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use. Keep this list the single source of truth.
PACKAGES=(nix-bin lego openssl pebble ca-certificates openssh-client openssh-server xz-utils zstd bzip2 curl prometheus postgresql)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Install without starting the packages' services (openssh-server would listen on
    # every address): the tests start their own daemons on loopback.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod 755 "$policy"
      trap 'rm -f "$policy"' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    [ "${CI:-}" = true ] && exit 1
  fi
fi

export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "go is not installed (need Go 1.26+)" >&2; exit 1; }

echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 25m "$@" ./...
