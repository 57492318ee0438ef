"""Benchmark: build-loop wall time at teacher concurrency 1, 2, 4, 8 against a loopback fake teacher.

The fake teacher (distill.testing.LoopbackTeacher, in its own process) answers every call after a
fixed latency. Target: speedup >= 0.8 x N at N = 8, and a rerun on the warm cache making 0 teacher
calls. Prints a table; exits 1 on a miss.

    .venv/bin/python scripts/bench_distill.py [--latency 0.2] [--personas 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distill.builder.loop import run_build
from distill.builder.rundir import init_run, open_build
from distill.testing import EchoStudent
from edge_agent.embedder import HashEmbedder

SERVER = """
import sys, time
sys.path.insert(0, {repo!r})
from distill.testing import LoopbackTeacher
with LoopbackTeacher({latency}) as t:
    print(t.base_url, flush=True)
    for line in sys.stdin:
        print(json.dumps({{"requests": t.requests, "paid": t.paid}}) if line.strip() == "count" else "", flush=True)
""".replace("import sys, time", "import sys, time, json")


def build_once(tmp: Path, name: str, url: str, concurrency: int, personas: int, cache: Path) -> float:
    run_dir = tmp / name
    init_run(run_dir, REPO / "distill" / "domains" / "airline.toml",
             teacher={"base_url": url, "model": "fake"},
             loop={"personas": personas, "stages": (1.0,), "rounds": 2, "max_customer_turns": 4,
                   "generate_per_stage": 0, "concurrency": concurrency},
             student="echo", embedder="hash", cache=cache, run_id=name)
    b = open_build(run_dir, student=EchoStudent(), embedder=HashEmbedder())

    async def go() -> float:
        start = time.perf_counter()
        try:
            report = await run_build(b)
        finally:
            b.close()
        if report["status"] != "finished":
            raise SystemExit(f"{name}: run did not finish: {report['reason']}")
        return time.perf_counter() - start
    return asyncio.run(go())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--personas", type=int, default=16)
    ap.add_argument("--levels", default="1,2,4,8")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        os.environ["EDGE_AGENT_HOME"] = str(tmp / "home")
        server = subprocess.Popen([sys.executable, "-c", SERVER.format(repo=str(REPO), latency=args.latency)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            url = server.stdout.readline().strip()  # type: ignore[union-attr]

            def count() -> dict[str, int]:
                server.stdin.write("count\n")  # type: ignore[union-attr]
                server.stdin.flush()  # type: ignore[union-attr]
                return json.loads(server.stdout.readline())  # type: ignore[union-attr]

            rows = []
            for n in levels:
                before = count()["paid"]
                wall = build_once(tmp, f"c{n}", url, n, args.personas, tmp / f"cache-{n}.sqlite")
                rows.append((n, wall, count()["paid"] - before))
            before = count()["requests"]
            warm_wall = build_once(tmp, "warm", url, levels[-1], args.personas, tmp / f"cache-{levels[-1]}.sqlite")
            warm_calls = count()["requests"] - before
        finally:
            server.kill()
    base = rows[0][1]
    ok = True
    print(f"latency {args.latency * 1000:.0f} ms per teacher call, {args.personas} personas, 1 stage, 2 rounds")
    print(f"{'concurrency':>11} {'teacher calls':>13} {'wall s':>8} {'speedup':>8} {'target':>7}  ok")
    for n, wall, calls in rows:
        speed = base / wall
        target = 0.8 * n if n > 1 else 1.0
        hit = n == 1 or n < 8 or speed >= target
        ok &= hit
        print(f"{n:>11} {calls:>13} {wall:>8.2f} {speed:>8.2f} {target:>7.1f}  {'yes' if hit else 'NO'}")
    warm_ok = warm_calls == 0
    ok &= warm_ok
    print(f"{'warm rerun':>11} {warm_calls:>13} {warm_wall:>8.2f} {'':>8} {'0 calls':>7}  {'yes' if warm_ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
