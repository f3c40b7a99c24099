#!/usr/bin/env bash
# Build the real control-plane binaries the integration tests run against, from Go modules.
#
#   kube-apiserver, kube-controller-manager, kubectl
#                             k8s.io/kubernetes   (consumer module ./kube)
#   etcd                      go.etcd.io/etcd/server/v3 (consumer module ./etcd)
#   helm                      helm.sh/helm/v3/cmd/helm  (consumer module ./helm)
#   promtool                  github.com/prometheus/prometheus/cmd/promtool (consumer module ./promtool)
#
# Only what is missing is built, into a cache keyed by version outside the work tree:
#   ${AKUA_TESTBIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/akua-operator/testbin}/<name>-<version>/
# The last line printed is the directory holding all six binaries (a "bin" of symlinks),
# so callers can do: TESTBIN="$(hack/testbin/build.sh | tail -n1)".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
source "$here/versions.env"

cache="${AKUA_TESTBIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/akua-operator/testbin}"
mkdir -p "$cache"
command -v go >/dev/null || { echo "build.sh: 'go' is not on PATH; install Go >= 1.26 to build the test binaries" >&2; exit 1; }

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

k8s_minor="${KUBERNETES_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
build_date="1970-01-01T00:00:00Z"   # reproducible builds: a fixed date

# build <out-dir> <module-dir> <package> <binary> <ldflags...>   (build tags: $build_tags, if set)
build() {
  local out="$1" mod="$2" pkg="$3" bin="$4"; shift 4
  if [[ -x "$out/$bin" ]]; then echo "cached: $out/$bin" >&2; return; fi
  echo "building $bin ($pkg) ..." >&2
  local tmp; tmp="$(mktemp -d "$cache/.build-XXXXXX")"
  local start=$SECONDS
  if ! (cd "$here/$mod" && go build -trimpath ${build_tags:+-tags "$build_tags"} -ldflags "-s -w $*" -o "$tmp/$bin" "$pkg"); then
    rm -rf "$tmp"; echo "build.sh: FAILED to build $bin from $pkg" >&2; exit 1
  fi
  mkdir -p "$out"; mv "$tmp/$bin" "$out/$bin"; rm -rf "$tmp"
  echo "built $bin in $((SECONDS - start))s" >&2
}

cv="k8s.io/component-base/version"
k8s_ldflags="-X $cv.gitVersion=$KUBERNETES_VERSION -X $cv.gitMajor=1 -X $cv.gitMinor=$k8s_minor \
 -X $cv.gitTreeState=clean -X $cv.buildDate=$build_date \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$k8s_minor"
kdir="$cache/kubernetes-$KUBERNETES_VERSION"
build "$kdir" kube k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$k8s_ldflags"
build "$kdir" kube k8s.io/kubernetes/cmd/kubectl kubectl "$k8s_ldflags"
build "$kdir" kube k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "$k8s_ldflags"

edir="$cache/etcd-$ETCD_VERSION"
build "$edir" etcd go.etcd.io/etcd/server/v3 etcd "-X go.etcd.io/etcd/api/v3/version.GitSHA=release"

hdir="$cache/helm-$HELM_VERSION"
hv="helm.sh/helm/v3"
build "$hdir" helm "$hv/cmd/helm" helm "-X $hv/internal/version.version=$HELM_VERSION \
 -X $hv/internal/version.gitTreeState=clean \
 -X $hv/pkg/lint/rules.k8sVersionMajor=1 -X $hv/pkg/lint/rules.k8sVersionMinor=$k8s_minor \
 -X $hv/pkg/chartutil.k8sVersionMajor=1 -X $hv/pkg/chartutil.k8sVersionMinor=$k8s_minor"

pdir="$cache/prometheus-$PROMETHEUS_MODULE_VERSION"
pv="github.com/prometheus/common/version"
prom_version="${PROMETHEUS_MODULE_VERSION#v0.}"   # v0.316.0 -> 3.16.0
prom_version="$(( ${prom_version%%.*} / 100 )).$(( ${prom_version%%.*} % 100 )).${prom_version#*.}"
# remove_all_sd: without the service-discovery plugins (cloud SDKs) promtool needs only for
# `check config` of SD sections; rule checks and rule unit tests are unaffected, and the build
# is a fraction of the full one (the full one took over 20 minutes on 2 shared cores).
build_tags=remove_all_sd build "$pdir" promtool github.com/prometheus/prometheus/cmd/promtool promtool \
 "-X $pv.Version=$prom_version -X $pv.Revision=release -X $pv.Branch=release -X $pv.BuildDate=$build_date"

bin="$cache/bin-k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION-prom-$PROMETHEUS_MODULE_VERSION"
mkdir -p "$bin"
ln -sfn "$kdir/kube-apiserver" "$bin/kube-apiserver"
ln -sfn "$kdir/kubectl" "$bin/kubectl"
ln -sfn "$kdir/kube-controller-manager" "$bin/kube-controller-manager"
ln -sfn "$edir/etcd" "$bin/etcd"
ln -sfn "$hdir/helm" "$bin/helm"
ln -sfn "$pdir/promtool" "$bin/promtool"
echo "$bin"
