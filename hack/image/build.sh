#!/usr/bin/env bash
# Build the akua-operator image with buildah (daemonless, vfs storage, chroot isolation) on the
# Debian base made locally by make-base.sh, and print its size.
#
#   hack/image/build.sh                     # -> localhost/akua-operator:dev
#   IMAGE=localhost/akua-operator:x hack/image/build.sh
#   BASE_IMAGE=python:3.11-slim-bookworm hack/image/build.sh   # where a registry is reachable
#   hack/image/build.sh --export out.tar    # also write a docker-archive (docker load / kind load)
#   IMAGE_SOURCE=https://git.example/akua-operator hack/image/build.sh   # label ...image.source
#
# Intermediate layers are cached (--layers): a rebuild after a source change reuses the
# dependency layer as long as uv.lock is unchanged. Prints the image reference last on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=hack/image/lib.sh
source "$here/lib.sh"

IMAGE="${IMAGE:-localhost/akua-operator:dev}"
export_to=""
while (($#)); do
  case "$1" in
    --export) export_to="$2"; shift 2 ;;
    *) echo "usage: $0 [--export FILE.tar]" >&2; exit 2 ;;
  esac
done

need buildah
if [[ -z "${BASE_IMAGE:-}" ]]; then
  BASE_IMAGE="$("$here/make-base.sh" | tail -n1)"
fi

lock image
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -n1)"
revision="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
# The builder stage downloads from PyPI. Lend it the host's CA bundle for that (a TLS-inspecting
# proxy's CA may be in it): a bind mount for the RUN steps only, never part of a layer.
volumes=()
host_ca=/etc/ssl/certs/ca-certificates.crt
[[ -s "$host_ca" ]] && volumes+=(--volume "$host_ca:$host_ca:ro")
start=$SECONDS
echo "image: building $IMAGE on $BASE_IMAGE" >&2
bud=(bah bud --isolation chroot --layers --pull=false --build-arg "BASE_IMAGE=$BASE_IMAGE"
  "${volumes[@]}" --file "$repo/Dockerfile")
# The builder stage is tagged too, so that its cached layers are not dangling and survive the
# prune below; the second build then reuses them.
"${bud[@]}" --target builder --tag "$IMAGE-builder" "$repo" >&2
"${bud[@]}" --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  ${IMAGE_SOURCE:+--build-arg "SOURCE=$IMAGE_SOURCE"} \
  --tag "$IMAGE" "$repo" >&2
# Drop what earlier builds left behind (vfs keeps a full copy per layer); the current chains are
# tagged and stay, so the next build is still cached.
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [[ -n "$(bah rmi --prune 2>/dev/null)" ]] || break
done

size="$(bah images --format '{{.Size}}' "$IMAGE" | head -n1)"
echo "image: $IMAGE built in $((SECONDS - start))s, size $size" >&2
if [[ -n "$export_to" ]]; then
  rm -f "$export_to"
  bah push --quiet "$IMAGE" "docker-archive:$export_to:${IMAGE#localhost/}" >&2
  echo "image: exported to $export_to" >&2
fi
echo "$IMAGE"
