#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# install-deps.sh: installs the Debian packages the build and tests need, only those missing.
set -euo pipefail

packages=(
  g++ make cmake pkg-config binutils python3
  libboost-dev libboost-program-options-dev libboost-stacktrace-dev
  libcereal-dev libelf-dev libgtest-dev libhwloc-dev
  openmpi-bin libopenmpi-dev
  clang
  libzmq3-dev cppzmq-dev libsodium-dev
  nlohmann-json3-dev
  libcpp-httplib-dev chromium
  doxygen help2man man-db bash-completion
  dpkg-dev file
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install-deps: these packages are missing and I am not root: ${missing[*]}" >&2
  echo "install-deps: run as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
