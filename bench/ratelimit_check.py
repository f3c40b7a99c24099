"""Does the client's rate limit hold at the server, with many long polls in flight?

    uv run --frozen --no-sync python bench/ratelimit_check.py [--ops 200] [--seconds 25]

Starts the simulator (operations of 60 s), starts `--ops` delete operations, then follows all of
them at once with `:wait` long polls (5 s) through one AkuaClient with the operator's defaults
(20 requests/s, burst 40), for two connection-pool sizes. The client's budget
(akua/budget.py, PriorityBudget) grants a connection slot and a token together and keeps half the
burst as headroom, and long polls may hold at most `pool - 50` slots. Prints the most calls the
simulator received in any 1, 5 and 10 s window against the client's bound
`burst // 2 + rate * w` and the server's `burst + rate * w` (the counts are taken when the
simulator handles the calls, so arrival jitter may add a call or two to the client's bound; the
headroom up to the server's is there for it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # bench/, put on the path just above
from akua_operator.akua.client import AkuaClient, ClientConfig, Credentials

TOKEN = "sk_akua_ratelimit_check"
RATE, BURST = 20.0, 40


def max_in_window(times: list[float], window: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] < t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def run(ops: int, seconds: float, max_connections: int) -> None:
    sim = harness.SimProcess(Path(tempfile.mkdtemp()), token=TOKEN, step_seconds=15)
    sim.start()
    try:
        ids = sim.seed_clusters([f"c{i}" for i in range(ops)])
        creds = Credentials(token=TOKEN)  # type: ignore[arg-type]
        setup = ClientConfig(base_url=sim.url, rate=0, max_connections=200)
        async with AkuaClient(setup) as client:
            op_ids = []
            for cid in ids:
                cluster = await client.get_cluster(cid, creds=creds)
                op = await client.delete_cluster(
                    cid, creds=creds, if_match=cluster.etag, idempotency_key=f"k-{cid}"
                )
                op_ids.append(op.id)
        seq = sim.journal_seq()
        config = ClientConfig(
            base_url=sim.url, rate=RATE, burst=BURST, max_connections=max_connections
        )
        async with AkuaClient(config) as client:

            async def follow(op_id: str) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    await client.wait_operation(op_id, creds=creds, timeout=5)

            await asyncio.gather(*(follow(o) for o in op_ids))
        times = sorted(e["time"] for e in sim.journal(seq))
        windows = ", ".join(
            f"{w:g} s: {max_in_window(times, w)} "
            f"(client {BURST // 2 + RATE * w:g}, server {BURST + RATE * w:g})"
            for w in (1, 5, 10)
        )
        print(
            f"pool {max_connections}: {len(times)} calls in {times[-1] - times[0]:.1f} s; "
            f"most in any {windows}"
        )
    finally:
        sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=25.0)
    args = parser.parse_args()
    if not 1 <= args.ops <= 2000:
        parser.error("--ops must be between 1 and 2000")
    for pool in (100, 200):  # 50 and 150 long-poll slots
        asyncio.run(run(args.ops, min(args.seconds, 120.0), pool))
    return 0


if __name__ == "__main__":
    sys.exit(main())
