#!/usr/bin/env bash
# What a release pipeline pushes, built into dist/ (`make release`):
#   akua-operator-<version>.tgz        the Helm chart (helm package charts/akua-operator)
#   akua-operator-<version>.oci.tar    the image as an OCI archive (buildah), tagged <version>
#   akua-operator-<version>.cdx.json   the CycloneDX SBOM of the image's Python packages
#   SHA256SUMS                         sha256sum of the three (check with `sha256sum -c SHA256SUMS`)
#
#   hack/release.sh                          # builds the image (hack/image/build.sh), then the rest
#   hack/release.sh --image REF --out DIR    # reuse an image build.sh already built (the tests)
#
# Needs root (buildah, see hack/image/), helm ($HELM, else the one hack/testbin/build.sh builds)
# and the dev venv (cyclonedx-py). docs/release.md says how to push and install the artefacts.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=hack/image/lib.sh
source "$here/image/lib.sh"

out="$repo/dist"
image=""
while (($#)); do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--image REF] [--out DIR]" >&2; exit 2 ;;
  esac
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -n1)"
chart="$repo/charts/akua-operator"
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")"
if [[ "$app_version" != "$version" ]]; then
  echo "error: the chart's appVersion ($app_version) is not the project's version ($version)" >&2
  exit 1
fi
HELM="${HELM:-$("$repo/hack/testbin/build.sh" | tail -n1)/helm}"

if [[ -z "$image" ]]; then
  image="$(IMAGE="localhost/akua-operator:$version" "$here/image/build.sh" | tail -n1)"
fi
labelled="$(bah inspect --type image \
  --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}' "$image")"
if [[ "$labelled" != "$version" ]]; then
  echo "error: $image is labelled version '$labelled', not $version" >&2
  exit 1
fi

mkdir -p "$out"
name="akua-operator-$version"
rm -f "$out/$name.tgz" "$out/$name.oci.tar" "$out/$name.cdx.json" "$out/SHA256SUMS"

"$HELM" package "$chart" --destination "$out" >&2
[[ -f "$out/$name.tgz" ]] || { echo "error: helm package wrote no $out/$name.tgz" >&2; exit 1; }
# The archive's image is tagged with the version (its index names it): copy it to a registry
# with `skopeo copy oci-archive:FILE:VERSION docker://REGISTRY/akua-operator:VERSION`.
bah push --quiet "$image" "oci-archive:$out/$name.oci.tar:$version" >&2
"$here/image/sbom.sh" "$image" "$out/$name.cdx.json"
(cd "$out" && sha256sum "$name.tgz" "$name.oci.tar" "$name.cdx.json" >SHA256SUMS)
echo "release: $version from $image into $out:" >&2
cat "$out/SHA256SUMS" >&2
echo "$out"
