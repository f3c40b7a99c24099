#!/usr/bin/env bash
# Write the CycloneDX SBOM (JSON) of the Python packages installed in an image built by build.sh:
# what is in the image's /opt/akua virtual environment, read from the packages' metadata
# (*.dist-info) by cyclonedx-py (the CycloneDX project's tool, locked in uv.lock's dev group).
#
#   hack/image/sbom.sh localhost/akua-operator:dev dist/akua-operator.cdx.json
#
# cyclonedx-py asks the environment's interpreter for its sys.path; the image's interpreter is
# not run on the build host, so a stand-in answers with the image's site-packages only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=hack/image/lib.sh
source "$here/lib.sh"

(($# == 2)) || { echo "usage: $0 IMAGE OUT.json" >&2; exit 2; }
image="$1" out="$2"
CYCLONEDX_PY="${CYCLONEDX_PY:-$repo/.venv/bin/cyclonedx-py}"
[[ -x "$CYCLONEDX_PY" ]] || { echo "error: $CYCLONEDX_PY not found; run 'make venv'" >&2; exit 1; }
need buildah

ctr="$(bah from --pull=false --name "akua-sbom-$$" "$image" | tail -n1)"
work="$(mktemp -d)"
cleanup() { bah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
rootfs="$(bah mount "$ctr")"
sites=("$rootfs"/opt/akua/lib/python3*/site-packages)
[[ -d "${sites[0]}" ]] || { echo "error: no /opt/akua/lib/python3*/site-packages in $image" >&2; exit 1; }
mkdir -p "$work/bin"
printf '#!/bin/sh\nprintf %%s %q\n' "[\"${sites[0]}\"]" >"$work/bin/python"
chmod +x "$work/bin/python"
mkdir -p "$(dirname "$out")"
# The timestamp is the image's creation time (reproducible for one image).
created="$(bah inspect --type image --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.created"}}' "$image")"
epoch="$(date -u -d "$created" +%s 2>/dev/null || date -u +%s)"
SOURCE_DATE_EPOCH="$epoch" "$CYCLONEDX_PY" environment --pyproject "$repo/pyproject.toml" \
  --mc-type application --sv 1.6 --of JSON --output-reproducible -o "$out" "$work/bin/python"
echo "sbom: $out ($(grep -c '"bom-ref"' "$out") bom-refs) for $image" >&2
