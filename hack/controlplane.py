#!/usr/bin/env python3
"""A real, local Kubernetes control plane (etcd + kube-apiserver), in the spirit of envtest.

Used by the test suite (tests/conftest.py imports this module), by `make demo` and by the bench:

    python hack/controlplane.py up --dir DIR

starts etcd and kube-apiserver on 127.0.0.1 random free ports, waits for /readyz, writes
DIR/kubeconfig (embedded certificates, admin user in group system:masters) and prints its path as
the only line on stdout. The kubeconfig file appears only once the API server is ready, so waiting
for the file to exist is a valid readiness check. It stays up until SIGINT or SIGTERM, then stops
both processes cleanly.

The binaries come from $AKUA_TESTBIN (a directory holding kube-apiserver, etcd, kubectl and helm),
which hack/testbin/build.sh builds from Go modules and prints as its last line:

    export AKUA_TESTBIN="$(hack/testbin/build.sh | tail -n1)"

What runs and what does not: etcd and kube-apiserver. With `--controller-manager` (or
`ControlPlane(..., controller_manager=True)`) also kube-controller-manager, running only the
controllers in CONTROLLERS (namespace deletion, garbage collection, ClusterRole aggregation);
without it namespaces never finish deleting and garbage collection does not run. Never a scheduler
or a kubelet: Deployments create no Pods, and no ServiceAccount "default" is created for new
namespaces.
Authentication: client certificates (the admin user) and ServiceAccount tokens (TokenRequest API
works, e.g. `kubectl create token`); authorization: RBAC.

Logs: WORKDIR/logs/{kube-apiserver,etcd,kube-controller-manager}.log (first line: the command).
AKUA_APISERVER_VERBOSITY sets the API server's --v (default 1; 3 logs every request with its
status). See docs/testing.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_HINT = 'export AKUA_TESTBIN="$(hack/testbin/build.sh | tail -n1)"'
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kubectl", "helm")
CONTROLLER_MANAGER = "kube-controller-manager"  # required only when asked for
# The controllers kube-controller-manager runs here: what makes `kubectl delete namespace` finish
# (the namespace controller deletes every object in it; the garbage collector follows
# ownerReferences) and ClusterRole aggregation. No ServiceAccount or token controllers: the API
# server serves the TokenRequest API itself.
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "clusterrole-aggregation-controller",
)
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CLUSTER_NAME = "akua-test"
ADMIN_USER = "akua-test-admin"


class ControlPlaneError(RuntimeError):
    """The control plane could not be located, started or reached."""


class TestbinMissingError(ControlPlaneError):
    """$AKUA_TESTBIN is unset or does not hold the binaries."""

    __test__ = False  # not a pytest test class, despite the name


def find_testbin(env: dict[str, str] | None = None) -> Path:
    """The directory of control-plane binaries named by $AKUA_TESTBIN, checked to be complete."""
    environ = os.environ if env is None else env
    value = environ.get("AKUA_TESTBIN", "").strip()
    if not value:
        raise TestbinMissingError(
            "AKUA_TESTBIN is not set. It must name the directory of the real control-plane "
            "binaries (kube-apiserver, etcd, kubectl, helm) that hack/testbin/build.sh builds from "
            f"Go modules. Build (or reuse the cached build) and export it:\n    {BUILD_HINT}\n"
            "or run the whole suite with `make test`, which does this for you."
        )
    testbin = Path(value)
    missing = [
        name
        for name in REQUIRED_BINARIES
        if not (testbin / name).is_file() or not os.access(testbin / name, os.X_OK)
    ]
    if missing:
        raise TestbinMissingError(
            f"AKUA_TESTBIN={value} does not hold executable {', '.join(missing)}. "
            f"Build them with hack/testbin/build.sh (it prints the directory as its last line):\n"
            f"    {BUILD_HINT}"
        )
    return testbin


def find_controller_manager(testbin: Path) -> Path:
    """The kube-controller-manager binary in `testbin`; a clear error when it is not there (a
    testbin directory built before build.sh built it)."""
    path = testbin / CONTROLLER_MANAGER
    if not path.is_file() or not os.access(path, os.X_OK):
        raise TestbinMissingError(
            f"{testbin} does not hold an executable {CONTROLLER_MANAGER}, which the control plane "
            f"with controllers needs. hack/testbin/build.sh builds it (cached by version); rebuild "
            f"and export the directory it prints:\n    {BUILD_HINT}"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- certificates


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
    )


class PKI:
    """A throw-away CA with an API-server serving certificate, an admin client certificate and a
    ServiceAccount signing key, written as PEM files under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = _new_key()
        ca_name = _name("akua-test-ca")
        ca_cert = (
            _builder(ca_name, ca_name, ca_key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_cert_pem = _cert_pem(ca_cert)

        def leaf(
            subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
        ) -> tuple[bytes, bytes]:
            key = _new_key()
            builder = (
                _builder(subject, ca_name, key)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                    critical=False,
                )
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            return _cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key)

        serving_sans: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address(SERVICE_IP)),
        ]
        self.serving_cert_pem, self.serving_key_pem = leaf(
            _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, serving_sans
        )
        self.admin_cert_pem, self.admin_key_pem = leaf(
            _name(ADMIN_USER, "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, []
        )
        # kube-controller-manager's own identity. In system:masters: the namespace controller
        # deletes objects of every kind (custom resources included) with these credentials.
        self.kcm_cert_pem, self.kcm_key_pem = leaf(
            _name(CONTROLLER_MANAGER_USER, "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, []
        )
        sa_key = _new_key()
        self.sa_key_pem = _key_pem(sa_key)
        self.sa_pub_pem = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

        self.ca_file = self._write("ca.crt", self.ca_cert_pem)
        self.serving_cert_file = self._write("apiserver.crt", self.serving_cert_pem)
        self.serving_key_file = self._write("apiserver.key", self.serving_key_pem)
        self.admin_cert_file = self._write("admin.crt", self.admin_cert_pem)
        self.admin_key_file = self._write("admin.key", self.admin_key_pem)
        self.kcm_cert_file = self._write("kcm.crt", self.kcm_cert_pem)
        self.kcm_key_file = self._write("kcm.key", self.kcm_key_pem)
        self.sa_key_file = self._write("sa.key", self.sa_key_pem)
        self.sa_pub_file = self._write("sa.pub", self.sa_pub_pem)

    def _write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path


# --------------------------------------------------------------------------- processes


def _load_prctl() -> Any:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved in the parent, so the child between fork and exec only calls a C function.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the thread that started it dies (e.g. a SIGKILLed
    pytest), so a crashed test run does not leave an API server and etcd behind."""
    _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class ManagedProcess:
    """One child process with its output going to its own log file."""

    def __init__(self, name: str, argv: Sequence[str], log_file: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_file = log_file
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        self._log.write(f"$ {' '.join(self.argv)}\n".encode())
        self._log.flush()
        on_main_thread = threading.current_thread() is threading.main_thread()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in the terminal reaches us, and we stop the children
            # in order (API server first, then etcd) instead of both dying at once.
            start_new_session=True,
            # Only from the main thread: the death signal follows the starting *thread*.
            preexec_fn=_set_parent_death_signal  # noqa: PLW1509 - only calls prctl(2)
            if on_main_thread and _PRCTL is not None
            else None,
        )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.terminate()
                try:
                    self.popen.wait(grace)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(10)
            self.popen = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int) -> str:
        if not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as fh:
            last = deque(fh, maxlen=lines)
        return b"".join(last).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- control plane


class ControlPlane:
    """etcd + kube-apiserver on 127.0.0.1 random ports, with a kubeconfig for an admin user, and
    with `controller_manager=True` a kube-controller-manager running CONTROLLERS.

    Usage: `with ControlPlane(workdir) as cp: ... cp.kubeconfig ...`, or start()/stop().
    Everything (certificates, etcd data, logs, kubeconfig) lives under `workdir`; on stop the etcd
    data directory is removed (the logs stay).
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        testbin: Path | str | None = None,
        start_timeout: float = 90.0,
        apiserver_args: Sequence[str] = (),
        keep_etcd_data: bool = False,
        controller_manager: bool = False,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="akua-controlplane-")).resolve()
        self.testbin = find_testbin(None if testbin is None else {"AKUA_TESTBIN": str(testbin)})
        self.start_timeout = start_timeout
        self.extra_apiserver_args = list(apiserver_args)
        self.keep_etcd_data = keep_etcd_data
        # Checked now: a missing binary fails before anything starts, naming the fix.
        self.controller_manager_binary = (
            find_controller_manager(self.testbin) if controller_manager else None
        )
        self.logs_dir = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.etcd_data_dir = self.workdir / "etcd-data"
        self.etcd_port = 0
        self.apiserver_port = 0
        self.pki: PKI | None = None
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.controller_manager: ManagedProcess | None = None
        self.controller_manager_port = 0
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ properties

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def ca_file(self) -> Path:
        assert self.pki is not None, "control plane not started"
        return self.pki.ca_file

    def binary(self, name: str) -> Path:
        return self.testbin / name

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for subprocesses: KUBECONFIG, PATH with the testbin first, and Helm's
        home directories inside the work directory (nothing written to the user's ~)."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = os.pathsep.join([str(self.testbin), env.get("PATH", "")])
        env["AKUA_TESTBIN"] = str(self.testbin)
        env["KUBECACHEDIR"] = str(self.workdir / "kube-cache")  # kubectl's discovery cache
        helm_home = self.workdir / "helm"
        env["HELM_CACHE_HOME"] = str(helm_home / "cache")
        env["HELM_CONFIG_HOME"] = str(helm_home / "config")
        env["HELM_DATA_HOME"] = str(helm_home / "data")
        return env

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.unlink(missing_ok=True)
        self.pki = PKI(self.workdir / "pki")
        try:
            # A port picked free can be taken before the process binds it; retry then.
            for attempt in range(3):
                try:
                    self._start_etcd()
                    self._start_apiserver()
                    self._wait_apiserver_ready(started + self.start_timeout)
                    break
                except _PortTakenError:
                    self._stop_processes()
                    if attempt == 2:
                        raise
            if self.controller_manager_binary is not None:
                self._start_controller_manager(started + self.start_timeout)
            self._write_admin_kubeconfig()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        self._stop_processes()
        if not self.keep_etcd_data:
            shutil.rmtree(self.etcd_data_dir, ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_processes(self) -> None:
        # The controller manager first (it would log the API server going away), then the API
        # server, so it does not log a storm of etcd connection errors.
        for proc in (self.controller_manager, self.apiserver, self.etcd):
            if proc is not None:
                proc.stop()

    # ------------------------------------------------------------------ etcd

    def _start_etcd(self) -> None:
        shutil.rmtree(self.etcd_data_dir, ignore_errors=True)
        self.etcd_port = free_port()
        peer_port = free_port()
        peer = f"http://127.0.0.1:{peer_port}"
        self.etcd = ManagedProcess(
            "etcd",
            [
                str(self.binary("etcd")),
                "--name=akua-test",
                f"--data-dir={self.etcd_data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=akua-test={peer}",
                "--initial-cluster-state=new",
                # Test data: durability across power loss does not matter, speed does.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.logs_dir / "etcd.log",
        )
        self.etcd.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._check_alive(self.etcd)
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.05)
        raise ControlPlaneError(f"etcd did not become healthy in 30s\n{self.log_tail(40)}")

    def stop_etcd(self, *, kill: bool = True) -> None:
        """Stop etcd alone, kube-apiserver left running: SIGKILL (a crash, the default) or
        SIGTERM (``kill=False``). The data directory stays; `start_etcd_again` brings it back.

        For tests of what survives the storage going away: while etcd is down the API server
        cannot serve quorum reads or writes, and its watches of etcd are cut.
        """
        assert self.etcd is not None, "control plane not started"
        popen = self.etcd.popen
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            popen.wait(30)
        self.etcd.stop()  # closes its log; the process is gone already

    def start_etcd_again(self) -> float:
        """Start etcd after `stop_etcd`: same command line (ports, data directory, so every
        object and revision is kept), then wait for etcd's /health and the API server's
        /readyz. Returns the seconds from the start of etcd until the API server was ready."""
        assert self.etcd is not None, "control plane not started"
        started = time.monotonic()
        self.etcd = ManagedProcess("etcd", self.etcd.argv, self.logs_dir / "etcd.log")
        self.etcd.start()
        deadline = started + 30
        healthy = False
        while not healthy and time.monotonic() < deadline:
            self._check_alive(self.etcd)
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp,
            ):
                healthy = resp.status == 200
            if not healthy:
                time.sleep(0.05)
        if not healthy:
            raise ControlPlaneError(f"etcd did not come back in 30s\n{self.log_tail(40)}")
        self._wait_apiserver_ready(time.monotonic() + self.start_timeout)
        return time.monotonic() - started

    def restart_etcd(self, downtime: float = 0.0, *, kill: bool = True) -> float:
        """`stop_etcd`, wait `downtime` seconds, `start_etcd_again` (see both)."""
        self.stop_etcd(kill=kill)
        if downtime > 0:
            time.sleep(downtime)
        return self.start_etcd_again()

    # ------------------------------------------------------------------ kube-apiserver

    def restart_apiserver(self, downtime: float = 0.0) -> None:
        """Stop kube-apiserver (SIGTERM) and start it again on the same port, etcd untouched.

        For tests of clients that must survive an API server restart: the kubeconfig stays
        valid, every object stays in etcd, and open watches are cut. Waits for /readyz.
        """
        assert self.apiserver is not None, "control plane not started"
        self.apiserver.stop()
        if downtime > 0:
            time.sleep(downtime)
        self._start_apiserver(port=self.apiserver_port)
        self._wait_apiserver_ready(time.monotonic() + self.start_timeout)

    def _start_apiserver(self, port: int | None = None) -> None:
        assert self.pki is not None
        self.apiserver_port = port or free_port()
        self.apiserver = ManagedProcess(
            "kube-apiserver",
            [
                str(self.binary("kube-apiserver")),
                f"--etcd-servers={self.etcd_url}",
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={self.pki.serving_cert_file}",
                f"--tls-private-key-file={self.pki.serving_key_file}",
                f"--client-ca-file={self.pki.ca_file}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={self.pki.sa_pub_file}",
                f"--service-account-signing-key-file={self.pki.sa_key_file}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                # No controller-manager runs, so nothing creates a namespace's "default"
                # ServiceAccount; this admission plugin would then reject every Pod.
                "--disable-admission-plugins=ServiceAccount",
                # The "kubernetes" Service's Endpoints cannot hold a loopback address; without
                # this the API server logs that error every few seconds. Nothing here needs them.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                f"--v={os.environ.get('AKUA_APISERVER_VERBOSITY', '1')}",
                *self.extra_apiserver_args,
            ],
            self.logs_dir / "kube-apiserver.log",
        )
        self.apiserver.start()

    # ------------------------------------------------------------------ kube-controller-manager

    def _start_controller_manager(self, deadline: float) -> None:
        """Start kube-controller-manager and wait until it works: its /healthz answers, then a
        probe namespace, deleted, disappears (the namespace controller runs)."""
        assert self.pki is not None and self.controller_manager_binary is not None
        kcm_kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        config = self.kubeconfig_dict()
        config["users"][0]["user"] = {
            "client-certificate-data": _b64(self.pki.kcm_cert_pem),
            "client-key-data": _b64(self.pki.kcm_key_pem),
        }
        kcm_kubeconfig.write_text(yaml.safe_dump(config))
        kcm_kubeconfig.chmod(0o600)
        self.controller_manager_port = free_port()
        self.controller_manager = ManagedProcess(
            CONTROLLER_MANAGER,
            [
                str(self.controller_manager_binary),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--cert-dir={self.workdir / 'kube-controller-manager-certs'}",
                # Its own health endpoints need no delegated authentication here.
                "--authentication-skip-lookup",
                "--profiling=false",
                f"--v={os.environ.get('AKUA_CONTROLLER_MANAGER_VERBOSITY', '1')}",
            ],
            self.logs_dir / "kube-controller-manager.log",
        )
        self.controller_manager.start()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # its self-signed serving certificate
        last = "no answer yet"
        while True:
            self._check_alive(self.controller_manager)
            try:
                url = f"https://127.0.0.1:{self.controller_manager_port}/healthz"
                with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        break
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read(2000).decode(errors='replace')}"
            except (OSError, urllib.error.URLError) as err:
                last = str(err)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-controller-manager was not healthy in time (last /healthz: {last})\n"
                    f"{self.log_tail(60)}"
                )
            time.sleep(0.2)
        self._probe_namespace_deletion(deadline)

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> int:
        """One request to the API server as the admin; returns the HTTP status."""
        import json

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.server}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, context=self._ssl_context(), timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    def _probe_namespace_deletion(self, deadline: float) -> None:
        name = f"kcm-probe-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
        status = self._api("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        if status not in (200, 201):
            raise ControlPlaneError(f"could not create the probe namespace {name}: HTTP {status}")
        self._api("DELETE", f"/api/v1/namespaces/{name}")
        while self._api("GET", f"/api/v1/namespaces/{name}") != 404:
            assert self.controller_manager is not None
            self._check_alive(self.controller_manager)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-controller-manager runs, but the probe namespace {name} was not "
                    f"deleted in time: the namespace controller does not work\n{self.log_tail(60)}"
                )
            time.sleep(0.2)

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_file))
        ctx.load_cert_chain(str(self.pki.admin_cert_file), str(self.pki.admin_key_file))
        return ctx

    def _wait_apiserver_ready(self, deadline: float) -> None:
        assert self.apiserver is not None and self.etcd is not None
        ctx = self._ssl_context()
        last = "no answer yet"
        while time.monotonic() < deadline:
            self._check_alive(self.etcd)
            self._check_alive(self.apiserver)
            try:
                with urllib.request.urlopen(
                    f"{self.server}/readyz", context=ctx, timeout=5
                ) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read(2000).decode(errors='replace')}"
            except (OSError, urllib.error.URLError) as err:
                last = str(err)
            time.sleep(0.1)
        raise ControlPlaneError(
            f"kube-apiserver at {self.server} was not ready within {self.start_timeout:.0f}s "
            f"(last /readyz: {last})\n{self.log_tail(60)}"
        )

    def _check_alive(self, proc: ManagedProcess) -> None:
        if proc.alive():
            return
        tail = proc.tail(60)
        if "address already in use" in tail:
            raise _PortTakenError(proc.name)
        raise ControlPlaneError(
            f"{proc.name} exited with code {proc.returncode()} during start-up; "
            f"log {proc.log_file}:\n{tail}"
        )

    # ------------------------------------------------------------------ kubeconfig

    def kubeconfig_dict(
        self, *, token: str | None = None, namespace: str = "default"
    ) -> dict[str, Any]:
        """A kubeconfig with embedded data: the admin client certificate, or a bearer token."""
        assert self.pki is not None, "control plane not started"
        b64 = _b64
        user: dict[str, str]
        if token is None:
            user = {
                "client-certificate-data": b64(self.pki.admin_cert_pem),
                "client-key-data": b64(self.pki.admin_key_pem),
            }
        else:
            user = {"token": token}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CLUSTER_NAME,
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.pki.ca_cert_pem),
                    },
                }
            ],
            "users": [{"name": "user", "user": user}],
            "contexts": [
                {
                    "name": CLUSTER_NAME,
                    "context": {"cluster": CLUSTER_NAME, "user": "user", "namespace": namespace},
                }
            ],
            "current-context": CLUSTER_NAME,
            "preferences": {},
        }

    def write_kubeconfig(
        self, path: Path | str, *, token: str | None = None, namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig (atomically, mode 0600). With `token`, it authenticates with that
        bearer token (e.g. a ServiceAccount token from `kubectl create token`)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump(self.kubeconfig_dict(token=token, namespace=namespace)))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path

    def _write_admin_kubeconfig(self) -> None:
        self.write_kubeconfig(self.kubeconfig)

    # ------------------------------------------------------------------ logs

    def log_files(self) -> dict[str, Path]:
        files = {
            "etcd": self.logs_dir / "etcd.log",
            "kube-apiserver": self.logs_dir / "kube-apiserver.log",
        }
        if self.controller_manager_binary is not None:
            files[CONTROLLER_MANAGER] = self.logs_dir / f"{CONTROLLER_MANAGER}.log"
        return files

    def log_tail(self, lines: int = 50) -> str:
        """The last `lines` lines of each process's log, each under a header with its path."""
        parts = []
        for proc in (self.controller_manager, self.apiserver, self.etcd):
            if proc is None:
                continue
            parts.append(f"----- {proc.name} (last {lines} lines of {proc.log_file}) -----")
            parts.append(proc.tail(lines).rstrip("\n") or "(empty)")
        return "\n".join(parts)


class _PortTakenError(ControlPlaneError):
    pass


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def _stop_signals() -> Iterator[threading.Event]:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _cmd_up(args: argparse.Namespace) -> int:
    workdir = Path(args.dir) if args.dir else None
    with _stop_signals() as stop:
        try:
            cp = ControlPlane(
                workdir,
                testbin=args.testbin,
                start_timeout=args.timeout,
                controller_manager=args.controller_manager,
            )
            cp.start()
        except ControlPlaneError as err:
            print(f"controlplane: {err}", file=sys.stderr)
            return 1
        try:
            print(
                f"controlplane: ready in {cp.startup_seconds:.1f}s at {cp.server} "
                f"(logs in {cp.logs_dir}); stop with Ctrl-C or SIGTERM",
                file=sys.stderr,
                flush=True,
            )
            print(cp.kubeconfig, flush=True)
            while not stop.wait(1.0):
                for proc in (cp.etcd, cp.apiserver, cp.controller_manager):
                    if proc is not None and not proc.alive():
                        print(
                            f"controlplane: {proc.name} died (exit {proc.returncode()})\n"
                            f"{cp.log_tail(40)}",
                            file=sys.stderr,
                        )
                        return 1
        finally:
            cp.stop()
            print("controlplane: stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="controlplane.py",
        description="Run a local etcd + kube-apiserver (the test control plane).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up",
        help="start, print the kubeconfig path, stay up until SIGINT/SIGTERM",
    )
    up.add_argument(
        "--dir",
        help="work directory for certificates, etcd data, logs and the kubeconfig "
        "(default: a temporary directory, removed on exit)",
    )
    up.add_argument("--testbin", help="directory of the binaries (default: $AKUA_TESTBIN)")
    up.add_argument("--timeout", type=float, default=90.0, help="start-up timeout in seconds")
    up.add_argument(
        "--controller-manager",
        action="store_true",
        help="also run kube-controller-manager (namespace deletion, garbage collection, "
        "ClusterRole aggregation; no leader election, no cloud provider)",
    )
    args = parser.parse_args(argv)
    if args.command == "up":
        return _cmd_up(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
