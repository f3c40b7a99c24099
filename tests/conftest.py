"""Shared fixtures: a real Kubernetes control plane (etcd + kube-apiserver) for the whole session.

The binaries come from $AKUA_TESTBIN (built by hack/testbin/build.sh; `make test` sets it). A test
that needs the control plane and finds no binaries fails the run with a clear message; nothing
skips. See docs/testing.md.

Fixtures:
  testbin        (session) Path of the directory with kube-apiserver, etcd, kubectl, helm
  control_plane  (session) hack/controlplane.py's ControlPlane, started once per session
  kubeconfig     (session) Path of the admin kubeconfig (embedded certificates)
  kube_env       (test)    env for subprocesses: KUBECONFIG, PATH with the testbin first, ...
  kubectl, helm  (session) run the real binaries: kubectl("get", "ns") -> CompletedProcess[str]
  kube_client    (session) a kubernetes.client.ApiClient built from the kubeconfig
  namespace      (test)    a fresh namespace for the test, deleted (best effort) afterwards
  kcm_control_plane (session) a SECOND control plane, with kube-controller-manager running
                 (namespace deletion, garbage collection): for the tests that need a namespace
                 or an owner to really go away. Started only when a test asks for it.
  kcm_kubectl, kcm_helm (session) kubectl / helm against that second control plane
  k8s_audit      (session) the API server's audit log of writes to AkuaClusters (AuditLog)

Tests using the control plane are marked `integration` automatically, and when one fails its
report carries the tail of the kube-apiserver and etcd logs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "hack"))

import controlplane  # noqa: E402  (lives in hack/, imported after the path is set)
from controlplane import (  # noqa: E402
    ControlPlane,
    ControlPlaneError,
    TestbinMissingError,
)

# Fixtures whose presence means "this test needs the real binaries".
_NEEDS_TESTBIN = {"testbin", "control_plane", "kubeconfig", "kube_env", "kubectl", "helm"}
_NEEDS_TESTBIN |= {"kube_client", "namespace", "k8s_audit"}
# ... and these also kube-controller-manager.
_NEEDS_KCM = {"kcm_control_plane", "kcm_kubectl", "kcm_helm"}
_NEEDS_TESTBIN |= _NEEDS_KCM

_CONTROL_PLANE = pytest.StashKey[ControlPlane]()
_KCM_CONTROL_PLANE = pytest.StashKey[ControlPlane]()
_TIMINGS = pytest.StashKey[dict[str, float]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cp-log-lines",
        type=int,
        default=40,
        help="lines of each control-plane log (kube-apiserver, etcd) added to a failed test's "
        "report (default 40)",
    )


def _needs_testbin(item: pytest.Item) -> bool:
    return bool(_NEEDS_TESTBIN.intersection(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Before `-m` selection runs, so `-m "not integration"` leaves these out.
    for item in items:
        if _needs_testbin(item) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


def pytest_collection_finish(session: pytest.Session) -> None:
    # After selection: if any test that will run needs the binaries, they must be there.
    if any(_needs_testbin(item) for item in session.items):
        try:
            testbin = controlplane.find_testbin()
            if any(_NEEDS_KCM.intersection(getattr(i, "fixturenames", ())) for i in session.items):
                controlplane.find_controller_manager(testbin)
        except TestbinMissingError as err:
            raise pytest.UsageError(f"integration tests selected, but {err}") from None


# --------------------------------------------------------------------------- control plane


@pytest.fixture(scope="session")
def testbin() -> Path:
    try:
        return controlplane.find_testbin()
    except TestbinMissingError as err:
        pytest.fail(str(err), pytrace=False)


#: Writes to AkuaClusters (metadata only): what the k8s_audit fixture reads.
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["create", "update", "patch", "delete"],
            "resources": [{"group": "akua.dev", "resources": ["akuaclusters", "akuaclusters/*"]}],
        },
        {"level": "None"},
    ],
}


def _audit_args(workdir: Path) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    policy = workdir / "audit-policy.json"
    policy.write_text(json.dumps(_AUDIT_POLICY))
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={workdir / 'audit.log'}",
        "--audit-log-format=json",
        "--audit-log-maxsize=0",
        "--audit-log-mode=blocking",  # written before the response: complete when a test reads
    ]


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, testbin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    workdir = tmp_path_factory.mktemp("controlplane")
    cp = ControlPlane(workdir, testbin=testbin, apiserver_args=_audit_args(workdir / "audit"))
    request.config.stash[_CONTROL_PLANE] = cp
    timings: dict[str, float] = {}
    request.config.stash[_TIMINGS] = timings
    try:
        cp.start()
    except ControlPlaneError as err:
        pytest.fail(f"the test control plane did not start: {err}", pytrace=False)
    timings["start"] = cp.startup_seconds or 0.0
    try:
        yield cp
    finally:
        started = time.monotonic()
        cp.stop()
        timings["stop"] = time.monotonic() - started


@pytest.fixture(scope="session")
def kcm_control_plane(
    request: pytest.FixtureRequest, testbin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """A second control plane (own etcd, API server, kubeconfig) with kube-controller-manager:
    deleted namespaces really go away there, and ownerReferences are garbage-collected. Separate
    from `control_plane`, whose tests rely on deleted namespaces staying (Terminating)."""
    try:
        cp = ControlPlane(
            tmp_path_factory.mktemp("controlplane-kcm"), testbin=testbin, controller_manager=True
        )
    except TestbinMissingError as err:
        pytest.fail(str(err), pytrace=False)
    request.config.stash[_KCM_CONTROL_PLANE] = cp
    try:
        cp.start()
    except ControlPlaneError as err:
        pytest.fail(f"the control plane with controllers did not start: {err}", pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kcm_kubectl(kcm_control_plane: ControlPlane) -> Tool:
    return Tool(kcm_control_plane.binary("kubectl"), kcm_control_plane)


@pytest.fixture(scope="session")
def kcm_helm(kcm_control_plane: ControlPlane) -> Tool:
    return Tool(kcm_control_plane.binary("helm"), kcm_control_plane)


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


class AuditLog:
    """The API server's audit log of writes to AkuaClusters (and their subresources)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def writes(self, namespace: str) -> list[dict[str, Any]]:
        """Completed writes in ``namespace``, oldest first: verb, resource (``akuaclusters`` or
        ``akuaclusters/status``), name, code (the HTTP status answered), user agent."""
        out: list[dict[str, Any]] = []
        if not self.path.exists():
            return out
        for line in self.path.read_text().splitlines():
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            ref = raw.get("objectRef") or {}
            if raw.get("stage") != "ResponseComplete" or ref.get("namespace") != namespace:
                continue
            sub = ref.get("subresource")
            out.append(
                {
                    "verb": raw.get("verb"),
                    "resource": ref.get("resource", "") + (f"/{sub}" if sub else ""),
                    "name": ref.get("name"),
                    "code": int((raw.get("responseStatus") or {}).get("code", 0)),
                    "user_agent": raw.get("userAgent", ""),
                }
            )
        return out


@pytest.fixture(scope="session")
def k8s_audit(control_plane: ControlPlane) -> AuditLog:
    return AuditLog(control_plane.workdir / "audit" / "audit.log")


@pytest.fixture
def kube_env(control_plane: ControlPlane) -> dict[str, str]:
    """A fresh copy of the environment for subprocesses (e.g. `akua-operator run`)."""
    return control_plane.env()


class CommandFailedError(AssertionError):
    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"`{' '.join(map(str, result.args))}` exited with {result.returncode}\n"
            f"stderr:\n{result.stderr.strip()}\nstdout:\n{result.stdout.strip()[:4000]}"
        )


class Tool:
    """Runs one of the real binaries against the control plane."""

    def __init__(self, binary: Path, control_plane: ControlPlane) -> None:
        self.binary = binary
        self.control_plane = control_plane

    def __call__(
        self,
        *args: str | Path,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *map(str, args)],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env if env is not None else self.control_plane.env(),
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandFailedError(result)
        return result

    def json(self, *args: str | Path, **kwargs: Any) -> Any:
        """Run with `-o json` and parse the output."""
        return json.loads(self(*args, "-o", "json", **kwargs).stdout)

    def apply(self, manifest: str | dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
        """`kubectl apply -f -` of a YAML string or a dict."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self("apply", "-f", "-", *args, input=text)


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Tool:
    return Tool(control_plane.binary("kubectl"), control_plane)


@pytest.fixture(scope="session")
def helm(control_plane: ControlPlane) -> Tool:
    return Tool(control_plane.binary("helm"), control_plane)


@pytest.fixture(scope="session")
def kube_client(kubeconfig: Path) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield client
    finally:
        client.close()


def _namespace_name(test_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")
    base = base.removeprefix("test-")[:40].strip("-") or "t"
    return f"t-{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kubectl: Tool) -> Iterator[str]:
    """A namespace of its own for the test. Deleted afterwards, without waiting: no
    kube-controller-manager runs, so it stays Terminating (its objects stay too)."""
    name = _namespace_name(request.node.name)
    kubectl("create", "namespace", name)
    yield name
    _release_akuaclusters(kubectl, name)
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def _release_akuaclusters(kubectl: Tool, namespace: str) -> None:
    """Remove the test's AkuaClusters for good before its namespace is deleted.

    Without a kube-controller-manager a deleted namespace stays Terminating with its objects,
    and an operator watching all namespaces in a later test would find them (and fail to write
    Events into a terminating namespace). The test's own operator has stopped by now, so we
    delete them and drop their finalizers directly, leaving nothing behind.
    """
    found = kubectl("get", "akuaclusters.akua.dev", "-n", namespace, "-o", "name", check=False)
    names = found.stdout.split() if found.returncode == 0 else []
    if not names:
        return
    kubectl("delete", *names, "-n", namespace, "--wait=false", check=False)
    for obj in names:
        kubectl(
            "patch",
            obj,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


# --------------------------------------------------------------------------- reporting


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.failed:
        return report
    lines = item.config.getoption("--cp-log-lines")
    cp = item.config.stash.get(_CONTROL_PLANE, None)
    if cp is not None and "control_plane" in item.fixturenames:
        report.sections.append((f"control plane log tail ({report.when})", cp.log_tail(lines)))
    kcm = item.config.stash.get(_KCM_CONTROL_PLANE, None)
    if kcm is not None and "kcm_control_plane" in item.fixturenames:
        report.sections.append(
            (f"control plane (with controllers) log tail ({report.when})", kcm.log_tail(lines))
        )
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    cp = config.stash.get(_CONTROL_PLANE, None)
    if cp is None:
        return
    timings = config.stash.get(_TIMINGS, {})
    parts = [f"{key} {value:.1f}s" for key, value in timings.items()]
    terminalreporter.write_line(
        f"control plane ({cp.server}): {', '.join(parts) or 'did not start'}; logs in {cp.logs_dir}"
    )


# --- every simulator a test starts validates its responses ------------------------------------

# tests/akua checks responses with its own contract-checking transport, and some of its tests
# make the simulator break the contract on purpose (to test the validator); bench/ is exempt.
_OWN_VALIDATION = ("tests/akua/",)


@pytest.fixture(autouse=True)
def _simulators_validate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Any simulator (``SimApp``: in-process, ``SimServer``, or behind ``SimTransport``) made
    during a test runs with ``validate_responses`` on, and the test fails at teardown if it
    sent anything the contract does not allow (tests/simcheck.py). Simulators in another
    process (the chaos suite's) are checked by the fixture that starts them."""
    path = str(request.node.path).replace("\\", "/")
    if any(part in path for part in _OWN_VALIDATION):
        yield
        return
    from akua_operator.sim.app import SimApp
    from simcheck import assert_no_violations

    made: list[SimApp] = []
    original = SimApp.__init__

    def validating_init(self: SimApp, config: Any = None, **kwargs: Any) -> None:
        from akua_operator.sim.config import SimConfig

        config = (config or SimConfig()).model_copy(update={"validate_responses": True})
        original(self, config, **kwargs)
        made.append(self)

    mp = pytest.MonkeyPatch()
    mp.setattr(SimApp, "__init__", validating_init)
    try:
        yield
    finally:
        mp.undo()
    for app in made:
        assert_no_violations(app)
