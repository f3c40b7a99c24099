"""The container image, built for real and run.

`hack/image/build.sh` builds the Dockerfile with buildah (Debian's package, chroot isolation,
no daemon) on a Debian base that `hack/image/make-base.sh` makes locally with debootstrap
(cached by the script's content). The image's entrypoint then runs the way a hardened Pod runs
it: as the image's configured user, on a read-only root filesystem with only an empty, writable
/tmp (the emptyDir of docs/image.md). The last test runs `akua-operator run` from the image
against the session's real kube-apiserver and the Akua simulator, and takes an AkuaCluster
through adoption and deletion.

Needs root (debootstrap, mounts, chroot) and `make system-deps` (buildah, debootstrap): a
missing tool fails the build with that message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import tarfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from akua_operator.sim.config import SimConfig
from akua_operator.sim.server import SimServer
from controlplane import free_port as _free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "hack" / "image" / "build.sh"
BAH = REPO / "hack" / "image" / "bah.sh"
RELEASE = REPO / "hack" / "release.sh"
PACKAGE = REPO / "operator" / "akua_operator"
CRD = REPO / "charts" / "akua-operator" / "files" / "crds" / "akuaclusters.akua.dev.yaml"
IMAGE = "localhost/akua-operator:test"
PROJECT_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# Put in the build's environment: it must not end up anywhere in the image.
CANARY = f"sk_akua_canary_{uuid.uuid4().hex}"
TOKEN = "sk_akua_test"  # the simulator's default token
MAX_IMAGE_MB = 300
# Paths a Pod gets from its runtime or its emptyDir, not from the image's files.
RUNTIME_DIRS = ("tmp", "var/tmp", "dev", "proc", "sys", "run/lock")

# Runs "$@" in a mount namespace of its own: the image's root filesystem bind-mounted read-only,
# a fresh tmpfs on /tmp (the emptyDir), /proc and /dev, then chroot as the image's user.
# Nothing stays mounted after the process exits (the namespace goes with it).
_RO_RUN = r"""
set -eu
rootfs=$1 root=$2 user=$3 kubeconfig=$4
shift 4
mount --make-rprivate /
mount --bind "$rootfs" "$root"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$root/tmp"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
if [ -n "$kubeconfig" ]; then
  install -m 0644 "$kubeconfig" "$root/tmp/kubeconfig"
fi
exec chroot --userspec="$user" --groups="${user#*:}" "$root" "$@"
"""


def report(config: pytest.Config, line: str) -> None:
    """Show a line in the test run's output (past the capture): build times, the image size."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"[image] {line}")


def bah(*args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(BAH), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"buildah {' '.join(args)}: {result.stderr.strip()}"
    return result.stdout


def package_sources(root: Path) -> dict[str, str]:
    """sha256 of every .py file of the akua_operator package under root, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


@dataclass
class Image:
    ref: str
    sources: dict[str, str]  # the work tree's package sources when the build ran
    config: dict[str, Any]  # OCI image config: User, Env, Entrypoint, Cmd, Labels
    history: list[dict[str, Any]]
    rootfs: Path  # the image's files, mounted read-write from a working container: only read

    @property
    def env(self) -> list[str]:
        return list(self.config.get("Env") or [])

    @property
    def user(self) -> str:
        return str(self.config.get("User") or "")

    def argv(self, *args: str) -> list[str]:
        return [*self.config["Entrypoint"], *args]

    def ro_command(
        self, tmp: Path, argv: list[str], env: dict[str, str] | None = None, kubeconfig: str = ""
    ) -> list[str]:
        """The command that runs argv in the image like a hardened Pod does (read-only root)."""
        root = tmp / f"root-{uuid.uuid4().hex[:8]}"
        root.mkdir()
        full_env = [*self.env, *(f"{k}={v}" for k, v in (env or {}).items())]
        return [
            "unshare",
            "--mount",
            "bash",
            "-c",
            _RO_RUN,
            "ro-run",
            str(self.rootfs),
            str(root),
            self.user,
            kubeconfig,
            "/usr/bin/env",
            "-i",
            *full_env,
            *argv,
        ]

    def run(
        self, tmp: Path, argv: list[str], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.ro_command(tmp, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def image(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Image]:
    env = {k: v for k, v in os.environ.items() if k != "BASE_IMAGE"}  # the local Debian base
    env.update(IMAGE=IMAGE, AKUA_TOKEN=CANARY, AKUA_BUILD_SECRET=CANARY)
    before = package_sources(PACKAGE)
    started = time.monotonic()
    result = subprocess.run(
        [str(BUILD)], capture_output=True, text=True, env=env, timeout=1700, check=False
    )
    seconds = time.monotonic() - started
    after = package_sources(PACKAGE)
    assert result.returncode == 0, (
        f"hack/image/build.sh exited with {result.returncode}:\n{result.stderr[-6000:]}"
    )
    assert result.stdout.strip().splitlines()[-1] == IMAGE
    for line in result.stderr.splitlines():
        if line.startswith(("base:", "image:")):
            report(request.config, line)
    report(request.config, f"base + image build took {seconds:.0f}s")

    inspected = json.loads(bah("inspect", "--type", "image", IMAGE))
    container = bah("from", "--pull=false", "--name", f"akua-image-test-{os.getpid()}", IMAGE)
    container = container.strip().splitlines()[-1]
    try:
        rootfs = Path(bah("mount", container).strip())
        yield Image(
            ref=IMAGE,
            # Files edited while the build ran may be in either version: left out.
            sources={k: v for k, v in before.items() if after.get(k) == v},
            config=inspected["OCIv1"]["config"],
            history=inspected["OCIv1"].get("history") or [],
            rootfs=rootfs,
        )
    finally:
        subprocess.run([str(BAH), "rm", container], capture_output=True, check=False)


def test_image_is_configured_to_run_the_operator_as_a_non_root_user(image: Image) -> None:
    uid, _, gid = image.user.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER must be numeric (runAsNonRoot): {image.user!r}"
    assert int(uid) != 0 and int(gid) != 0
    assert image.config["Entrypoint"] == ["akua-operator"]
    assert image.config["Cmd"] == ["run"]
    env = dict(e.split("=", 1) for e in image.env)
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    labels = image.config["Labels"]
    assert labels["org.opencontainers.image.title"] == "akua-operator"
    assert labels["org.opencontainers.image.version"] == PROJECT_VERSION
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.base.name"] == "localhost/akua-base:bookworm"
    assert labels["org.opencontainers.image.source"] == "https://github.com/akua-dev/akua-operator"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.description"].startswith("Kubernetes operator")
    created = labels["org.opencontainers.image.created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created), created


def test_entrypoint_runs_as_that_user_on_a_read_only_root(image: Image, tmp_path: Path) -> None:
    version = image.run(tmp_path, image.argv("--version"))
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == PROJECT_VERSION

    helped = image.run(tmp_path, image.argv("--help"))
    assert helped.returncode == 0, helped.stderr
    assert "usage: akua-operator" in helped.stdout
    for command in ("run", "crd", "settings"):
        assert command in helped.stdout

    # A real command through the installed dependencies (pydantic, PyYAML).
    crd = image.run(tmp_path, image.argv("crd"))
    assert crd.returncode == 0, crd.stderr
    generated = yaml.safe_load(crd.stdout)
    assert generated["kind"] == "CustomResourceDefinition"
    assert generated["metadata"]["name"] == "akuaclusters.akua.dev"

    # Who runs, and what it may write: only /tmp.
    probe = image.run(
        tmp_path,
        [
            "python3",
            "-c",
            "import os, sys\n"
            "print(os.getuid(), os.getgid(), os.environ['HOME'])\n"
            "for path in ('/tmp/probe', '/opt/akua/probe', '/etc/probe', '/probe'):\n"
            "    try:\n"
            "        open(path, 'w').close()\n"
            "        print(path, 'written')\n"
            "    except OSError as err:\n"
            "        print(path, err.strerror)\n",
        ],
    )
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    uid, gid = image.user.split(":")
    assert lines[0] == f"{uid} {gid} /tmp"
    assert lines[1] == "/tmp/probe written"
    for line in lines[2:]:
        assert line.endswith(("Read-only file system", "Permission denied")), line


def test_image_holds_the_current_package_installed_from_its_wheel(image: Image) -> None:
    site = next((image.rootfs / "opt/akua/lib").glob("python3*/site-packages"))
    installed = package_sources(site / "akua_operator")
    assert len(image.sources) > 5
    stale = sorted(k for k, v in image.sources.items() if installed.get(k) != v)
    assert stale == [], f"the image's package differs from the work tree in {stale}"
    extra = sorted(set(installed) - set(package_sources(PACKAGE)))
    assert extra == [], f"files in the image that the work tree no longer has: {extra}"
    # A wheel install (not editable): no link back to a source tree.
    assert not list(site.glob("*akua_operator*.pth"))
    assert not list(site.glob("__editable__*"))
    dist = next(site.glob("akua_operator-*.dist-info"))
    assert dist.name == f"akua_operator-{PROJECT_VERSION}.dist-info"


def _writable_by(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def test_no_file_of_the_image_is_writable_by_its_user(image: Image) -> None:
    uid, gid = (int(x) for x in image.user.split(":"))
    skip = {image.rootfs / d for d in RUNTIME_DIRS}
    writable: list[str] = []
    checked = 0
    for dirpath, dirnames, filenames in os.walk(image.rootfs):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in [*dirnames, *filenames]:
            path = here / name
            st = path.lstat()
            checked += 1
            if not stat.S_ISLNK(st.st_mode) and _writable_by(st, uid, gid):
                writable.append(f"/{path.relative_to(image.rootfs)} ({stat.filemode(st.st_mode)})")
    assert checked > 1000
    assert (image.rootfs / "opt/akua/bin/akua-operator").is_file()
    assert writable == [], f"writable by {image.user}: {writable[:20]}"


def test_no_secrets_and_no_build_leftovers_in_the_image(image: Image) -> None:
    # Environment and labels: no credentials.
    names = [e.split("=", 1)[0] for e in image.env]
    assert not [n for n in names if re.search(r"TOKEN|SECRET|PASSWORD|KEY|CREDENTIAL", n)], names
    metadata = json.dumps([image.config, image.history])
    assert CANARY not in metadata
    assert "sk_akua" not in metadata

    # Files: the build's secret canary nowhere (binaries included); the only Akua-token-like
    # strings in text files are public fixtures committed in the package's own source (the
    # simulator's default test token).
    found = subprocess.run(
        ["grep", "-rIoh", "--exclude-dir=proc", "--exclude-dir=dev", r"sk_akua_[A-Za-z0-9_]*"],
        cwd=image.rootfs,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode in (0, 1), found.stderr
    tokens = set(found.stdout.split())
    assert CANARY not in tokens
    source = "\n".join(p.read_text() for p in (REPO / "operator").rglob("*.py"))
    assert {t for t in tokens if t not in source} == set()
    canary = subprocess.run(
        ["grep", "-rlaF", "--exclude-dir=proc", "--exclude-dir=dev", CANARY, "."],
        cwd=image.rootfs,
        capture_output=True,
        text=True,
        check=False,
    )
    assert canary.returncode == 1, f"build secret found in {canary.stdout}"

    # Only the installed result: no build context, caches, compilers, tests or repository.
    root = image.rootfs
    for leftover in ("src", "root/.cache", "tmp/uv", "opt/uv", "out", "usr/bin/gcc", "usr/bin/cc"):
        assert not (root / leftover).exists(), leftover
    site = next((root / "opt/akua/lib").glob("python3*/site-packages"))
    assert (site / "akua_operator" / "cli.py").is_file()
    assert not (site / "kubernetes" / "aio").exists()
    for dev_only in ("pytest", "mypy", "ruff", "hypothesis", "pip"):
        assert not list(site.glob(f"{dev_only}-*.dist-info")), dev_only
    assert not [p for p in root.rglob(".git") if p.is_dir()]
    assert not (root / "opt/akua/tests").exists()


def _dist_names(site: Path) -> set[str]:
    """The normalized names of the distributions installed in site (from their *.dist-info)."""
    names = set()
    for dist in site.glob("*.dist-info"):
        meta = (dist / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: *(.+)$", meta, flags=re.MULTILINE)
        assert name, dist
        names.add(re.sub(r"[-_.]+", "-", name.group(1).strip()).lower())
    return names


def test_image_carries_no_simulator_web_stack(image: Image, tmp_path: Path) -> None:
    site = next((image.rootfs / "opt/akua/lib").glob("python3*/site-packages"))
    installed = _dist_names(site)
    assert {"kopf", "httpx", "kubernetes", "aiohttp", "akua-operator"} <= installed
    assert not installed & {"starlette", "uvicorn"}, sorted(installed)
    assert not (site / "starlette").exists()
    assert not (site / "uvicorn").exists()
    # The simulator's command says what is missing.
    sim = image.run(tmp_path, ["akua-sim", "--help"])
    assert sim.returncode != 0
    last = sim.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: the Akua API simulator needs its web stack"), last
    assert last.endswith("install akua-operator[sim]"), last


def test_image_is_small(image: Image, request: pytest.FixtureRequest) -> None:
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(image.rootfs):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in {image.rootfs / "proc"}]
        for name in filenames:
            st = (here / name).lstat()
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    venv = sum(p.lstat().st_size for p in (image.rootfs / "opt/akua").rglob("*") if p.is_file())
    mb, venv_mb = total / 1e6, venv / 1e6
    report(
        request.config,
        f"{image.ref}: {mb:.0f} MB of files (of which /opt/akua {venv_mb:.0f} MB); "
        f"buildah reports {bah('images', '--format', '{{.Size}}', image.ref).strip()}",
    )
    assert mb < MAX_IMAGE_MB, f"image has {mb:.0f} MB of files (limit {MAX_IMAGE_MB} MB)"


# --------------------------------------------------------------------------- make release


@dataclass
class Release:
    out: Path
    version: str

    def path(self, suffix: str) -> Path:
        return self.out / f"akua-operator-{self.version}{suffix}"


@pytest.fixture(scope="module")
def released(image: Image, testbin: Path, tmp_path_factory: pytest.TempPathFactory) -> Release:
    """hack/release.sh (what `make release` runs) on the image the tests built: no second build."""
    out = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, HELM=str(testbin / "helm"))
    result = subprocess.run(
        [str(RELEASE), "--image", image.ref, "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"hack/release.sh: {result.stderr[-4000:]}"
    assert result.stdout.strip().splitlines()[-1] == str(out)
    return Release(out=out, version=PROJECT_VERSION)


def test_release_artefacts_are_listed_in_checksums_that_verify(released: Release) -> None:
    names = sorted(p.name for p in released.out.iterdir())
    v = released.version
    expected = [f"akua-operator-{v}.cdx.json", f"akua-operator-{v}.oci.tar"]
    assert names == ["SHA256SUMS", *expected, f"akua-operator-{v}.tgz"]
    sums = {}
    for line in (released.out / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    assert sorted(sums) == sorted(n for n in names if n != "SHA256SUMS")
    for name, digest in sums.items():
        assert hashlib.sha256((released.out / name).read_bytes()).hexdigest() == digest, name
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"],
        cwd=released.out,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_release_sbom_lists_exactly_the_python_packages_of_the_image(
    released: Release, image: Image
) -> None:
    bom = json.loads(released.path(".cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["specVersion"] == "1.6"
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("akua-operator", released.version)
    components = {re.sub(r"[-_.]+", "-", c["name"]).lower(): c for c in bom["components"]}
    site = next((image.rootfs / "opt/akua/lib").glob("python3*/site-packages"))
    assert set(components) == _dist_names(site) - {"akua-operator"}
    for name in ("kopf", "httpx", "kubernetes", "pydantic"):
        assert components[name]["purl"].startswith(f"pkg:pypi/{name}@"), components[name]
    assert "starlette" not in components
    assert "uvicorn" not in components
    # The versions are those of uv.lock.
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in lock["package"]}
    assert {n: c["version"] for n, c in components.items()} == {n: locked[n] for n in components}


def test_release_oci_archive_holds_the_image_tagged_with_the_version(
    released: Release, image: Image
) -> None:
    with tarfile.open(released.path(".oci.tar")) as archive:

        def blob(digest: str) -> bytes:
            data = archive.extractfile(f"blobs/{digest.replace(':', '/')}")
            assert data is not None, digest
            content = data.read()
            assert f"sha256:{hashlib.sha256(content).hexdigest()}" == digest
            return content

        layout = archive.extractfile("oci-layout")
        assert layout is not None
        assert json.loads(layout.read())["imageLayoutVersion"] == "1.0.0"
        index_file = archive.extractfile("index.json")
        assert index_file is not None
        (entry,) = json.loads(index_file.read())["manifests"]
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == released.version
        manifest = json.loads(blob(entry["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        for layer in manifest["layers"]:
            blob(layer["digest"])
    image_id = bah("images", "--no-trunc", "--format", "{{.ID}}", image.ref).split()[0]
    assert manifest["config"]["digest"] == image_id
    assert config["config"]["Labels"] == image.config["Labels"]
    assert config["config"]["Entrypoint"] == ["akua-operator"]


def test_packaged_chart_installs_on_the_control_plane(
    released: Release, helm: Any, kubectl: Any, namespace: str
) -> None:
    chart = released.path(".tgz")
    with tarfile.open(chart) as packaged:
        files = {m.name for m in packaged.getmembers() if m.isfile()}
        crd = packaged.extractfile("akua-operator/files/crds/akuaclusters.akua.dev.yaml")
        assert crd is not None
        assert crd.read().decode() == CRD.read_text()
    assert {"akua-operator/Chart.yaml", "akua-operator/values.schema.json"} <= files
    repository = "registry.example.com/platform/akua-operator"
    name = f"rel{uuid.uuid4().hex[:6]}"
    # --take-ownership: the shared test control plane already has the CRD (from other tests),
    # which the chart renders as a template (crds.enabled, docs/helm.md)
    helm(
        "install",
        name,
        chart,
        "-n",
        namespace,
        "--take-ownership",
        "--set",
        f"image.repository={repository}",
    )
    try:
        (listed,) = json.loads(helm("list", "-n", namespace, "-o", "json").stdout)
        assert listed["chart"] == f"akua-operator-{released.version}"
        assert listed["status"] == "deployed"
        (deployment,) = kubectl.json(
            "get", "deployments", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}"
        )["items"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{repository}:{released.version}"
        kubectl("get", "crd", "akuaclusters.akua.dev")
    finally:
        helm("uninstall", name, "-n", namespace, "--wait=false", check=False)


# --------------------------------------------------------------------------- the operator, for real


def _wait_for(
    what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen[str]
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the operator exited ({proc.returncode}) waiting for {what}")
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_operator_from_the_image_adopts_and_deletes_a_cluster_on_a_read_only_root(
    image: Image, kubectl: Any, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "crd/akuaclusters.akua.dev", "--timeout=60s")
    health, metrics = _free_port(), _free_port()
    log_path = tmp_path / "operator.log"
    with SimServer(SimConfig(step_seconds=0.2)) as sim, log_path.open("w") as log:
        cluster = httpx.post(f"{sim.admin_url}/clusters", json={"name": f"img-{namespace}"})
        assert cluster.status_code < 300, cluster.text
        cluster_id = cluster.json()["id"]
        env = {
            "KUBECONFIG": "/tmp/kubeconfig",
            "AKUA_API_URL": sim.url,
            "AKUA_TOKEN": TOKEN,
            "AKUA_HEALTH_PORT": str(health),
            "AKUA_METRICS_PORT": str(metrics),
            "AKUA_WAIT_TIMEOUT": "1",
            "AKUA_BACKOFF_BASE": "0.5",
            "AKUA_BACKOFF_CAP": "5",
        }
        proc = subprocess.Popen(
            image.ro_command(
                tmp_path,
                image.argv(*image.config["Cmd"], "--namespace", namespace),
                env=env,
                kubeconfig=str(kubeconfig),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait_for(
                "/healthz", lambda: _get(f"http://127.0.0.1:{health}/healthz") == 200, 90, proc
            )
            kubectl.apply(
                {
                    "apiVersion": "akua.dev/v1alpha1",
                    "kind": "AkuaCluster",
                    "metadata": {"name": "adopted", "namespace": namespace},
                    "spec": {"clusterId": cluster_id},
                }
            )

            def observed() -> dict[str, Any] | None:
                obj: dict[str, Any] = kubectl.json("get", "akc", "adopted", "-n", namespace)
                status = obj.get("status") or {}
                finalizers = obj["metadata"].get("finalizers") or []
                ok = status.get("state") == "active" and "akua.dev/finalizer" in finalizers
                return obj if ok else None

            obj = _wait_for("the AkuaCluster to be observed active", observed, 90, proc)
            assert obj["status"]["clusterId"] == cluster_id
            assert _get(f"http://127.0.0.1:{metrics}/metrics") == 200

            kubectl("delete", "akc", "adopted", "-n", namespace, "--wait=false")

            def gone() -> bool:
                result = kubectl("get", "akc", "adopted", "-n", namespace, check=False)
                return result.returncode != 0 and "NotFound" in result.stderr

            _wait_for("the AkuaCluster to be deleted", gone, 120, proc)
            assert proc.poll() is None, "the operator exited"
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    logs = log_path.read_text()
    for sign in ("Read-only file system", "Permission denied"):
        assert sign not in logs, f"{sign!r} in the operator's log:\n{logs[-4000:]}"
    assert TOKEN not in logs
