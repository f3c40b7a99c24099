# Shared settings for hack/image/*.sh (sourced, not run).
# buildah runs daemonless as root in a containers storage of the project's own (so it neither
# needs nor disturbs the machine's default one), with `--isolation chroot` (no OCI runtime).
# Storage driver: overlay where the kernel has it and the storage is not itself on overlayfs
# (a commit then only reads what a step changed), else vfs, which works everywhere but copies
# the whole tree at every layer. AKUA_STORAGE_DRIVER=vfs|overlay forces one.

AKUA_CACHE_DIR="${AKUA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/akua-operator}"
if [[ -z "${AKUA_STORAGE_DRIVER:-}" ]]; then
  AKUA_STORAGE_DRIVER=vfs
  mkdir -p "$AKUA_CACHE_DIR"
  if { grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null; } &&
    [[ "$(stat -f -c %T "$AKUA_CACHE_DIR")" != overlayfs ]]; then
    AKUA_STORAGE_DRIVER=overlay
  fi
fi
AKUA_STORAGE_ROOT="${AKUA_STORAGE_ROOT:-$AKUA_CACHE_DIR/containers/storage-$AKUA_STORAGE_DRIVER}"
AKUA_STORAGE_RUNROOT="${AKUA_STORAGE_RUNROOT:-$AKUA_CACHE_DIR/containers/run-$AKUA_STORAGE_DRIVER}"
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

# Serialise the scripts that change the storage (two test runs at once): lock NAME.
lock() {
  mkdir -p "$AKUA_CACHE_DIR/containers"
  exec 9>"$AKUA_CACHE_DIR/containers/$1.lock"
  flock 9
}
