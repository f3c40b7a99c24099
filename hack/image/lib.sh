# Shared settings for hack/image/*.sh (sourced, not run).
# buildah runs daemonless as root with the vfs storage driver (works on any filesystem, also
# inside a container) in a storage of the project's own, so it neither needs nor disturbs the
# machine's default containers storage. `--isolation chroot` needs no OCI runtime.

AKUA_CACHE_DIR="${AKUA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/akua-operator}"
AKUA_STORAGE_ROOT="${AKUA_STORAGE_ROOT:-$AKUA_CACHE_DIR/containers/storage}"
AKUA_STORAGE_RUNROOT="${AKUA_STORAGE_RUNROOT:-$AKUA_CACHE_DIR/containers/run}"
AKUA_STORAGE_DRIVER="${AKUA_STORAGE_DRIVER:-vfs}"
AKUA_BASE_REPO="${AKUA_BASE_REPO:-localhost/akua-base}"

# buildah with the project's storage; use as `bah images`, `bah from ...`.
bah() {
  buildah --root "$AKUA_STORAGE_ROOT" --runroot "$AKUA_STORAGE_RUNROOT" \
    --storage-driver "$AKUA_STORAGE_DRIVER" "$@"
}

need() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || {
      echo "error: '$cmd' not found; run 'make system-deps' (hack/install-system-deps.sh)" >&2
      exit 1
    }
  done
}

image_exists() { bah inspect --type image "$1" >/dev/null 2>&1; }
