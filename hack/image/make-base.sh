#!/usr/bin/env bash
# Build a minimal Debian bookworm base image with Debian's own python3 from Debian packages
# (debootstrap --variant=minbase) and store it in the project's buildah storage as
# localhost/akua-base:bookworm. No container registry is needed.
#
# Cached: the image is also tagged bookworm-<hash of this script>; when that tag
# exists the script only re-points :bookworm at it and returns in a second. Change this file
# (or set AKUA_BASE_REBUILD=1) to rebuild, e.g. to pick up Debian security updates.
#
# Prints the image reference on its last line of stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/image/lib.sh
source "$here/lib.sh"

SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
# python3-venv brings ensurepip, so `python3 -m venv` works as with the official python image.
PACKAGES=python3,python3-venv,ca-certificates

key="$(sha256sum "$here/make-base.sh" | cut -c1-12)"
ref="$AKUA_BASE_REPO:$SUITE"
keyed="$AKUA_BASE_REPO:$SUITE-$key"

need buildah debootstrap
[[ $(id -u) -eq 0 ]] || { echo "error: make-base.sh needs root (debootstrap, buildah mount)" >&2; exit 1; }

lock base
if [[ "${AKUA_BASE_REBUILD:-0}" != 1 ]] && image_exists "$keyed"; then
  bah tag "$keyed" "$ref" >/dev/null
  echo "base: cached $keyed" >&2
  echo "$ref"
  exit 0
fi

start=$SECONDS
# debootstrap's and apt's output go to a log, shown when a step fails.
log="$AKUA_CACHE_DIR/containers/make-base.log"
: >"$log"
ctr="$(bah from --name "akua-base-build-$$" scratch)"
mnt=""
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    echo "base: failed (exit $rc); the end of $log:" >&2
    tail -n 40 "$log" >&2
  fi
  if [[ -n "$mnt" ]]; then
    for m in proc sys dev/pts; do umount -l "$mnt/$m" 2>/dev/null || true; done
  fi
  bah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
mnt="$(bah mount "$ctr")"

echo "base: debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR" >&2
debootstrap --variant=minbase --include="$PACKAGES" --components=main \
  "$SUITE" "$mnt" "$MIRROR" >>"$log" 2>&1

# Security and point-release updates, then drop everything a runtime image does not need.
cat >"$mnt/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
cp /etc/resolv.conf "$mnt/etc/resolv.conf"
mount -t proc proc "$mnt/proc"
chroot "$mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -euc 'apt-get update -q && apt-get -y -q -o Dpkg::Options::=--force-confold upgrade && apt-get clean' \
  >>"$log" 2>&1
umount -l "$mnt/proc"
rm -rf "$mnt"/var/lib/apt/lists/* "$mnt"/var/cache/apt/* "$mnt"/var/cache/debconf/*-old \
  "$mnt"/var/log/* "$mnt"/tmp/* "$mnt"/var/tmp/* "$mnt"/root/.cache \
  "$mnt"/usr/share/man/* "$mnt"/usr/share/info/* "$mnt"/usr/share/locale/* \
  "$mnt"/usr/share/lintian
# Keep the copyright files, drop the rest of the documentation.
find "$mnt/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$mnt/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$mnt/usr/lib/python3"* -name __pycache__ -type d -prune -exec rm -rf {} +
: >"$mnt/etc/resolv.conf"
: >"$mnt/etc/hostname"
rm -f "$mnt/etc/machine-id" && : >"$mnt/etc/machine-id"
chmod 1777 "$mnt/tmp"

python_version="$(chroot "$mnt" /usr/bin/python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
bah umount "$ctr" >/dev/null
mnt=""

bah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --cmd /usr/bin/python3 \
  --label org.opencontainers.image.title=akua-base \
  --label "org.opencontainers.image.description=Debian $SUITE minbase with python3 $python_version, built locally with debootstrap" \
  --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --label "org.opencontainers.image.version=$SUITE-$key" \
  --label "dev.akua.base.recipe=$key" \
  "$ctr"
bah commit --quiet --rm "$ctr" "$keyed" >/dev/null
trap - EXIT
bah tag "$keyed" "$ref" >/dev/null
# Untag the bases of earlier recipes (their layers go once no cached build uses them).
for old in $(bah images --format '{{.Name}}:{{.Tag}}' | grep -- "^$AKUA_BASE_REPO:$SUITE-"); do
  [[ "$old" == "$keyed" ]] || bah rmi "$old" >/dev/null 2>&1 || true
done
size="$(bah images --format '{{.Size}}' "$keyed" | head -n1)"
echo "base: built $keyed (python3 $python_version, $size) in $((SECONDS - start))s" >&2
echo "$ref"
