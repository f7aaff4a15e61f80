#!/usr/bin/env bash
# Installs the Debian 12 packages Stampede needs to build, test and run.
# Usage: scripts/deps.sh [--test]   (--test adds the test-only tools)
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc android-libboringssl-dev liburcu-dev libinih-dev
      libcrypt-dev libhiredis-dev redis-server curl openssl python3 python3-cryptography procps
      libcurl4-openssl-dev libssl-dev libdpdk-dev liblwip-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(libcmocka-dev clang-14 libclang-rt-14-dev iproute2 iputils-ping ethtool)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >&2
fi
