#!/usr/bin/env bash
# Install the Debian packages the tests need that a fresh machine lacks:
#   buildah      builds the container image (storage driver vfs, --isolation chroot: no daemon)
#   debootstrap  makes the local Debian base image (no container registry is reachable)
#   debian-archive-keyring  lets debootstrap verify the archive's signatures
#   uidmap       newuidmap/newgidmap, which buildah expects to find
# Idempotent: when every command is already there it returns at once, without apt-get update.
set -euo pipefail

# command -> package that provides it
declare -A want=(
  [buildah]=buildah
  [debootstrap]=debootstrap
  [newuidmap]=uidmap
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)

if ((${#missing[@]} == 0)); then
  echo "system deps: present (buildah $(buildah --version | awk '{print $3}'), debootstrap)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "system deps: missing ${missing[*]} and no apt-get on this machine; install them by hand" >&2
  exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "system deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

echo "system deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "system deps: installed (buildah $(buildah --version | awk '{print $3}'))"
