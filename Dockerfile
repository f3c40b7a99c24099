# syntax=docker/dockerfile:1
# akua-operator container image. See docs/image.md.
#
#   docker build -t akua-operator .                # default base: the official slim Python image
#   hack/image/build.sh                             # buildah, on a Debian base made locally
#   buildah bud --build-arg BASE_IMAGE=localhost/akua-base:bookworm -t akua-operator .
#
# The base only has to provide `python3` (3.11 or newer) on PATH with the venv module:
# /usr/local/bin/python3 in the official image, /usr/bin/python3 in Debian's. Both stages use the
# same base by default, so the virtual environment's link to the interpreter resolves in the
# final image (a different BUILDER_IMAGE must have python3 at the same path).
# Dependencies are installed from uv.lock (exact versions and hashes), without the dev group and
# without the `sim` extra (the simulator's web stack: starlette, uvicorn).
# Runs as uid 65532 with a read-only root filesystem: mount an emptyDir at /tmp.

ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG BUILDER_IMAGE=${BASE_IMAGE}

FROM ${BUILDER_IMAGE} AS builder
ARG UV_VERSION=0.13.9
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/akua
# uv in a throwaway venv of its own (Debian's python3 has no pip outside a venv).
RUN python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
WORKDIR /src
# The locked dependencies, in a layer that is reused while uv.lock is unchanged. The build's
# download cache is a cache mount, never part of a layer.
# kubernetes.aio (a second, asyncio copy of the generated client, ~70 MB) is removed: the
# operator uses the synchronous client; the build fails if the package ever imports it.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-project --compile-bytecode \
 && rm -rf /opt/akua/lib/python3*/site-packages/kubernetes/aio
# The project itself, installed from its wheel (not editable; rebuilt every time: uv's cache only
# notices a change of pyproject.toml), and a passwd entry for the user; then everything the
# final stage takes is moved under /out.
COPY README.md ./
COPY operator ./operator
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable \
      --refresh-package akua-operator --reinstall-package akua-operator \
 && ! grep -rqE "kubernetes[.]aio|from kubernetes import aio" /opt/akua/lib/python3*/site-packages/akua_operator \
 && /opt/akua/bin/python -m compileall -q /opt/akua/lib/python3*/site-packages/akua_operator \
 && /opt/akua/bin/akua-operator --version \
 && rm -f /opt/akua/.lock \
 && mkdir -p /out/etc /out/opt \
 && mv /opt/akua /out/opt/akua \
 && cp /etc/passwd /etc/group /out/etc/ \
 && echo "akua:x:65532:65532:akua-operator:/tmp:/usr/sbin/nologin" >>/out/etc/passwd \
 && echo "akua:x:65532:" >>/out/etc/group

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
# Nothing is written outside /tmp: no bytecode, HOME and TMPDIR in /tmp.
ENV PATH=/opt/akua/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
LABEL org.opencontainers.image.title="akua-operator" \
      org.opencontainers.image.description="Kubernetes operator that runs Akua clusters (akua.dev) as AkuaCluster resources" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
USER 65532:65532
ENTRYPOINT ["akua-operator"]
CMD ["run"]
# Last, so that everything above stays cached: the virtual environment (owned by root, read-only
# for the user) and /etc/passwd and /etc/group with the user's entry.
COPY --from=builder /out/ /
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/akua-dev/akua-operator
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}"
