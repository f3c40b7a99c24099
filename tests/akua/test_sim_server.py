"""The simulator as a real HTTP server on loopback: the ``akua-sim`` command and ``SimServer``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from akua_testkit import TOKEN
from pydantic import SecretStr

from akua_operator.akua import (
    AkuaClient,
    AkuaNotFound,
    AkuaTransportError,
    AkuaUnauthorized,
    ClientConfig,
    Credentials,
)
from akua_operator.akua.models import CreateClusterRequest, OperationState
from akua_operator.sim import SimConfig
from akua_operator.sim.server import SimServer
from controlplane import free_port as _free_port

REPO = Path(__file__).resolve().parents[2]


def _akua_sim() -> str:
    """The installed ``akua-sim`` console script of the environment running the tests."""
    found = Path(sys.executable).parent / "akua-sim"
    if not found.exists():
        pytest.fail(f"{found} not found; run `make venv` first")
    return str(found)


@pytest.fixture(scope="module")
def sim_process() -> Iterator[str]:
    port = _free_port()
    cmd = [
        _akua_sim(),
        "--host", "127.0.0.1", "--port", str(port),
        "--token", TOKEN, "--step-seconds", "0.2", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"akua-sim exited with {proc.returncode}:\n{out}")
            try:
                if httpx.get(f"{base}/_sim/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("akua-sim did not answer within 60 s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def fresh(sim_process: str) -> str:
    httpx.post(f"{sim_process}/_sim/reset").raise_for_status()
    return sim_process


def _client(base: str, **config: object) -> AkuaClient:
    settings: dict[str, object] = {
        "base_url": f"{base}/v1",
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "retry_after_cap": 0.05,
    }
    settings.update(config)
    return AkuaClient(ClientConfig(**settings))  # type: ignore[arg-type]


CREDS = Credentials(SecretStr(TOKEN))


async def http(method: str, url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient() as c:
        return await c.request(method, url, **kwargs)  # type: ignore[arg-type]


async def test_create_and_delete_over_the_wire(fresh: str) -> None:
    async with _client(fresh) as client:
        op = await client.create_cluster(
            CreateClusterRequest(name="wire", region_id="reg_1"),
            creds=CREDS,
            idempotency_key="wire-create",
        )
        op = await client.wait_operation(op.id, creds=CREDS, timeout=30)
        assert op.state == OperationState.SUCCEEDED
        assert op.created_cluster_id is not None
        cluster = await client.get_cluster(op.created_cluster_id, creds=CREDS)
        delete = await client.delete_cluster(
            cluster.id, creds=CREDS, if_match=cluster.etag, idempotency_key="wire-delete"
        )
        done = await client.wait_operation(delete.id, creds=CREDS, timeout=30)
        assert done.state == OperationState.SUCCEEDED
        assert [s.name for s in done.steps] == [
            "drain_workloads",
            "delete_workers",
            "delete_control_plane",
            "release_network",
        ]
        with pytest.raises(AkuaNotFound):
            await client.get_cluster(cluster.id, creds=CREDS)


async def test_dropped_connections_on_a_real_socket_are_retried_once_done(fresh: str) -> None:
    r = await http(
        "POST", f"{fresh}/_sim/faults", json={"drop_rate": 1.0, "methods": ["POST"], "count": 2}
    )
    r.raise_for_status()
    async with _client(fresh) as client:
        op = await client.create_cluster(
            CreateClusterRequest(name="drop", region_id="reg_1"),
            creds=CREDS,
            idempotency_key="drop-create",
        )
        assert client.stats.count("POST /clusters", "transport_error") == 2
        clusters = await client.list_clusters(creds=CREDS)
        assert [c.name for c in clusters.data] == ["drop"]
        assert op.type == "cluster.create"
    journal = (await http("GET", f"{fresh}/_sim/journal")).json()["data"]
    posts = [e for e in journal if e["method"] == "POST"]
    assert [e["fault"] for e in posts] == ["drop_after", "drop_after", None]


async def test_wrong_token_and_percent_encoded_colon_over_the_wire(fresh: str) -> None:
    async with _client(fresh) as client:
        with pytest.raises(AkuaUnauthorized) as info:
            await client.list_clusters(creds=Credentials(SecretStr("sk_akua_nope_secret")))
        assert "sk_akua_nope_secret" not in str(info.value)
    seeded = (await http("POST", f"{fresh}/_sim/clusters", json={"name": "c"})).json()
    r = await http(
        "POST",
        f"{fresh}/v1/clusters/{seeded['id']}%3Asuspend",
        headers={"authorization": f"Bearer {TOKEN}", "if-match": seeded["etag"]},
    )
    assert r.status_code == 202 and r.json()["metadata"]["type"] == "cluster.suspend"


async def test_sim_server_in_a_thread() -> None:
    server = SimServer(SimConfig(tokens=[TOKEN], step_seconds=0.05))
    with server:
        assert server.port != 0
        assert server.url == f"http://127.0.0.1:{server.port}/v1"
        seeded = (await http("POST", f"{server.admin_url}/clusters", json={"name": "t"})).json()
        async with _client(server.base) as client:
            cluster = await client.get_cluster(seeded["id"], creds=CREDS)
            assert cluster.name == "t"
        assert server.sim.journal.read()[-1]["path"] == f"/clusters/{seeded['id']}"
    async with _client(server.base, max_retries=1) as client:
        with pytest.raises(AkuaTransportError):
            await client.list_clusters(creds=CREDS)


def test_cli_flags_override_the_config_file(tmp_path: Path) -> None:
    from akua_operator.sim.cli import build_parser, config_from_args

    path = tmp_path / "sim.json"
    path.write_text(
        '{"step_seconds": 9, "seed": 4, "tokens": ["sk_a"], "deleted_cluster_404": false}'
    )
    config = config_from_args(build_parser().parse_args(["--config", str(path)]))
    assert (config.step_seconds, config.seed, config.tokens) == (9, 4, ["sk_a"])
    assert config.deleted_cluster_404 is False
    config = config_from_args(
        build_parser().parse_args(["--config", str(path), "--step-seconds", "1", "--token", "t"])
    )
    assert (config.step_seconds, config.seed, config.tokens) == (1, 4, ["t"])
    assert config_from_args(build_parser().parse_args([])).step_seconds == 2.0


async def test_read_timeouts_are_typed_and_retried_for_reads(fresh: str) -> None:
    from akua_operator.akua import AkuaTimeout

    r = await http("POST", f"{fresh}/_sim/faults", json={"latency_ms": 1500, "methods": ["GET"]})
    r.raise_for_status()
    try:
        async with _client(fresh, timeout=0.2, max_retries=1) as client:
            with pytest.raises(AkuaTimeout) as info:
                await client.list_clusters(creds=CREDS)
            assert isinstance(info.value.__cause__, httpx.TimeoutException)
            assert client.stats.count("GET /clusters", "timeout") == 2
    finally:
        (await http("DELETE", f"{fresh}/_sim/faults")).raise_for_status()
