"""`make demo` as a newcomer runs it: what it prints, that it deletes the cluster step by step, and
that nothing is left running or on disk afterwards, also when interrupted with Ctrl-C (SIGINT to
its process group, as a terminal sends it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CREATE_STEPS = [
    "validate_request",
    "provision_network",
    "provision_control_plane",
    "provision_workers",
]
DELETE_STEPS = ["drain_workloads", "delete_workers", "delete_control_plane", "release_network"]
PHASES = [
    "[1/7] Setting up",
    "[2/7] Starting a local Kubernetes control plane",
    "[3/7] Starting the Akua API simulator",
    "[4/7] Starting the operator: akua-operator run --namespace akua-demo",
    "[5/7] Creating an AkuaCluster: the operator creates the Akua cluster",
    "[6/7] Deleting it",
    "[7/7] Done in",
    "==> cleaning up",
]


class Demo:
    """The demo as a subprocess in its own session; its output collected line by line."""

    def __init__(self, argv: list[str], testbin: Path) -> None:
        env = dict(os.environ)
        env["AKUA_TESTBIN"] = str(testbin)
        env.pop("KUBECONFIG", None)
        env.pop("DEMO_KEEP", None)
        # Steps long enough that a loaded CI machine still shows each one in the live watch
        # (the test asserts every step appears, in order): the operation tracker reads an
        # operation at most once per 5 s, so a step must last longer than that.
        env["DEMO_STEP_SECONDS"] = "7"
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(re.search(pattern, line) for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"the demo never printed /{pattern}/:\n{self.output[-6000:]}")

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"the demo hung:\n{self.output[-6000:]}") from None
        self._thread.join(10)
        return code

    def started(self) -> dict[str, int]:
        """The processes the demo says it started: name -> pid (also its process group)."""
        return {
            m.group(1): int(m.group(2))
            for line in self.lines
            if (m := re.search(r"started (\S+): pid (\d+)", line))
        }

    def workdir(self) -> Path:
        for line in self.lines:
            if m := re.search(r"work directory \(logs, kubeconfig\): (\S+)", line):
                return Path(m.group(1))
        raise AssertionError(f"no work directory printed:\n{self.output}")


def _processes() -> dict[int, tuple[int, str]]:
    """Live (non-zombie) processes: pid -> (process group, command line)."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        found[int(entry.name)] = (int(fields[2]), cmdline)
    return found


def assert_nothing_left(demo: Demo) -> None:
    started = demo.started()
    assert {"controlplane", "akua-sim", "akua-operator"} <= set(started), demo.output
    workdir = demo.workdir()
    leftovers: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leftovers = [
            f"pid {pid} (group {pgid}): {cmd}"
            for pid, (pgid, cmd) in _processes().items()
            if pid in started.values() or pgid in started.values() or str(workdir) in cmd
        ]
        if not leftovers:
            break
        time.sleep(0.2)
    assert not leftovers, "processes left behind:\n" + "\n".join(leftovers)
    assert not workdir.exists(), f"{workdir} was not removed"


def test_make_demo_shows_the_lifecycle_and_cleans_up(testbin: Path) -> None:
    demo = Demo(["make", "demo"], testbin)
    code = demo.wait(timeout=300)
    out = demo.output
    assert code == 0, out

    # Every phase heading, in order.
    positions = [out.find(phase) for phase in PHASES]
    assert -1 not in positions, f"missing phase headings {PHASES}:\n{out}"
    assert positions == sorted(positions), out

    # The operator created the Akua cluster; the watch showed the create operation's steps.
    creating = out[out.index("[5/7] Creating an AkuaCluster") : out.index("[6/7] Deleting it")]
    created = list(dict.fromkeys(re.findall(r"create \d/4 (\w+)", creating)))
    assert created[: len(CREATE_STEPS)] == CREATE_STEPS, creating
    for step in CREATE_STEPS:
        assert re.search(rf"^ +{step} completed$", creating, re.M), creating

    # The AkuaCluster became Ready and its cluster id is shown.
    cluster_id = re.search(r"Ready: the AkuaCluster manages Akua cluster (clu_\w+)", out)
    assert cluster_id, out

    # While `kubectl delete` waits, the watch shows each delete step in the progress column,
    # in the operation's order, then SUCCEEDED; the STATE column says deleting meanwhile.
    deleting = out[out.index("[6/7] Deleting it") : out.index("[7/7] Done in")]
    watched = re.findall(r"delete (\d)/4 (\w+)", deleting)
    names = list(dict.fromkeys(name for _, name in watched))
    assert names[: len(DELETE_STEPS)] == DELETE_STEPS, deleting
    assert "delete 4/4 SUCCEEDED" in deleting, deleting
    for step in DELETE_STEPS:
        assert re.search(rf" deleting +delete \d/4 {step} ", deleting), deleting
    # One watch line per change: a step's line is not printed again while nothing changed
    # (one kopf re-run per 20 s at most, and these steps last 7 s).
    step_lines = [
        line
        for line in deleting.splitlines()
        if any(re.search(rf"delete \d/4 {step} ", line) for step in DELETE_STEPS)
    ]
    assert len(step_lines) == len(set(step_lines)), deleting
    assert re.search(r'akuacluster.akua.dev "demo" deleted', deleting), deleting
    assert "kubectl delete returned after" in deleting, deleting
    # The Events mark the start and the end (the steps are in status; --step-events adds them).
    assert re.search(r"DeleteStarted +Started delete of Akua cluster", deleting), deleting
    assert re.search(r"Deleted +Akua cluster " + cluster_id.group(1), deleting), deleting
    assert "OperationStep" not in deleting, deleting
    # And the Akua side agrees.
    assert f"GET /clusters/{cluster_id.group(1)} answers 404" in deleting, deleting
    # The simulator validated every answer against the contract (--validate-responses).
    assert "akua-sim: every answer matched the Akua contract (0 violations)" in deleting, deleting

    assert re.search(r"stopped akua-operator \(pid \d+\)", out), out
    assert "removed " + str(demo.workdir()) in out, out
    assert_nothing_left(demo)


def test_demo_interrupted_mid_deletion_still_cleans_up(testbin: Path) -> None:
    demo = Demo([str(REPO / "hack" / "demo.sh")], testbin)
    try:
        # Interrupt while the delete operation is running and `kubectl delete` is waiting.
        demo.wait_for_line(r"delete 1/4 drain_workloads", timeout=240)
    finally:
        os.killpg(demo.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    code = demo.wait(timeout=120)
    out = demo.output
    assert code == 130, out
    assert "demo: interrupted (SIGINT)" in out, out
    assert "[7/7]" not in out, out
    for name in ("akua-operator", "akua-sim", "controlplane"):
        assert re.search(rf"stopped {name} \(pid \d+\)", out), out
    assert_nothing_left(demo)
