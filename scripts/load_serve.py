#!/usr/bin/env python3
"""Bounded load test for `edge-agent serve`, on loopback only; stops by itself.

Starts the server (or uses --url with --pid), runs N concurrent clients for a fixed time (a mix of
streaming, non-streaming and deliberately abandoned streams), then prints throughput, latency
percentiles, errors by kind and the server's RSS over time. Exits 1 when any error other than an
intended 429 occurs, when the server dies, or when RSS grows after warm-up.

  .venv/bin/python scripts/load_serve.py                       # 32 clients, 60 s, demo pack
  .venv/bin/python scripts/load_serve.py --clients 8 --duration 20 --pack ./mypack
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

REPO = Path(__file__).resolve().parents[1]
OPENERS = [
    "My internet has been dead since last night. What's going on?",
    "I pay for the fastest plan but I get a fraction of the speed.",
    "Why is my bill higher than usual this month?",
    "I want to cancel my contract.",
    "I'm moving house next month, can I take my internet with me?",
    "The router light keeps flashing orange.",
    "I want a refund for this month, the service was useless.",
    "Get me a supervisor, now.",
]
FOLLOW = [("assistant", "I'm sorry to hear that. Could you give me your full name and postcode?"),
          ("user", "Sam Carter, AB1 2CD. Please hurry.")]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "edge_agent.cli", "serve", "--port", str(port), "--queue-size",
           str(args.queue_size), "--request-timeout", str(args.request_timeout), "--log-level", "warning"]
    if args.pack:
        cmd += ["--pack", str(args.pack)]
    if args.model:
        cmd += ["--model", args.model]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(args.server_log, "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


async def wait_healthy(http: httpx.AsyncClient, base: str, proc: subprocess.Popen[bytes] | None) -> None:
    for _ in range(600):
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited during start-up ({proc.returncode}); see the server log")
        try:
            if (await http.get(base + "/health", timeout=1)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("server did not become healthy in 120 s")


class Stats:
    def __init__(self) -> None:
        self.latency: list[float] = []
        self.ttft: list[float] = []
        self.tokens = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.intended: dict[str, int] = {}

    def error(self, kind: str, intended: bool = False) -> None:
        box = self.intended if intended else self.errors
        box[kind] = box.get(kind, 0) + 1


async def one_request(http: httpx.AsyncClient, base: str, rng: random.Random, stats: Stats, max_tokens: int,
                      stop_at: float) -> None:
    messages = [{"role": "user", "content": rng.choice(OPENERS)}]
    if rng.random() < 0.3:
        messages += [{"role": r, "content": c} for r, c in FOLLOW]
    roll = rng.random()
    kind = "stream" if roll < 0.5 else ("abandon" if roll < 0.6 else "plain")
    body = {"model": "load", "messages": messages, "max_tokens": max_tokens, "stream": kind != "plain"}
    start = time.monotonic()
    if kind == "plain":
        resp = await http.post(base + "/v1/chat/completions", json=body)
        return await finish(resp, resp.content, start, stats, stop_at)
    async with http.stream("POST", base + "/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            return await finish(resp, await resp.aread(), start, stats, stop_at)
        lines = 0
        last = ""
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            lines += 1
            if lines == 2:
                stats.ttft.append(time.monotonic() - start)
            if kind == "abandon" and lines == 3:
                stats.error("abandoned stream", intended=True)
                return  # leaving the block closes the connection mid-stream
            if line != "data: [DONE]":
                last = line[6:]
        final = json.loads(last) if last else {}
        if "error" in final or not final.get("usage"):
            stats.error(f"stream error {final.get('error', {}).get('code', 'truncated')}")
            return
        stats.ok += 1
        stats.tokens += final["usage"]["completion_tokens"]
        stats.latency.append(time.monotonic() - start)


async def finish(resp: httpx.Response, content: bytes, start: float, stats: Stats, stop_at: float) -> None:
    if resp.status_code == 200:
        stats.ok += 1
        stats.tokens += json.loads(content)["usage"]["completion_tokens"]
        stats.latency.append(time.monotonic() - start)
    elif resp.status_code == 429:
        stats.error("429 queue full", intended=True)
        wait = float(resp.headers.get("retry-after", "1"))
        await asyncio.sleep(max(0.0, min(wait, stop_at - time.monotonic())))
    else:
        stats.error(f"http {resp.status_code}")


async def client_loop(i: int, http: httpx.AsyncClient, base: str, stats: Stats, args: argparse.Namespace,
                      stop_at: float) -> None:
    rng = random.Random(args.seed * 1000 + i)
    while time.monotonic() < stop_at:
        try:
            await one_request(http, base, rng, stats, args.max_tokens, stop_at)
        except httpx.HTTPError as exc:
            stats.error(type(exc).__name__)


async def sample_rss(pid: int | None, samples: list[tuple[float, float]], t0: float, stop_at: float) -> None:
    while pid is not None and time.monotonic() < stop_at:
        value = rss_mib(pid)
        if value is not None:
            samples.append((time.monotonic() - t0, value))
        await asyncio.sleep(2.0)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


async def run(args: argparse.Namespace) -> int:
    proc = None
    if args.url:
        base, pid = args.url.rstrip("/"), args.pid
    else:
        proc, base = start_server(args)
        pid = proc.pid
    host = urlparse(base).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load-test {host}: loopback only")
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    stats = Stats()
    samples: list[tuple[float, float]] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(120, connect=5), limits=limits) as http:
        try:
            await wait_healthy(http, base, proc)
            t0 = time.monotonic()
            stop_at = t0 + args.duration
            tasks = [asyncio.create_task(client_loop(i, http, base, stats, args, stop_at)) for i in range(args.clients)]
            sampler = asyncio.create_task(sample_rss(pid, samples, t0, stop_at + 2))
            # bounded: the server ends every request within request_timeout (504), so anything still
            # running after that (plus slack) is a hang and counts as an error
            _done, pending = await asyncio.wait(tasks, timeout=args.duration + args.request_timeout + 15)
            for task in pending:
                task.cancel()
                stats.error("client still running at the hard stop")
            await sampler
            elapsed = time.monotonic() - t0
            health = (await http.get(base + "/health")).json()
        finally:
            crashed = proc is not None and proc.poll() is not None
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    stats.error("server ignored SIGTERM")
    return report(args, stats, samples, elapsed, health, crashed, proc)


def report(args: argparse.Namespace, stats: Stats, samples: list[tuple[float, float]], elapsed: float,
           health: dict[str, object], crashed: bool, proc: subprocess.Popen[bytes] | None) -> int:
    print(f"\nload_serve: {args.clients} clients, {args.duration:.0f} s, max_tokens {args.max_tokens}, "
          f"queue_size {args.queue_size}")
    print(f"  completed        {stats.ok} requests in {elapsed:.1f} s = {stats.ok / elapsed:.2f} req/s, "
          f"{stats.tokens / elapsed:.1f} completion tok/s")
    print(f"  latency (s)      p50 {pct(stats.latency, 50):.2f}   p95 {pct(stats.latency, 95):.2f}   "
          f"max {max(stats.latency, default=float('nan')):.2f}")
    print(f"  stream TTFT (s)  p50 {pct(stats.ttft, 50):.2f}   p95 {pct(stats.ttft, 95):.2f}  (queueing included)")
    print(f"  intended         {stats.intended or '{}'}")
    print(f"  errors           {stats.errors or 'none'}")
    print(f"  server counts    {health.get('counts')}")
    warm = [v for t, v in samples if t >= args.warmup]
    growth = 0.0
    if samples:
        line = "  ".join(f"{t:.0f}s:{v:.0f}" for t, v in samples[:: max(1, len(samples) // 12)])
        print(f"  RSS MiB          {line}  (last {samples[-1][1]:.0f})")
    if len(warm) >= 4:
        quarter = max(1, len(warm) // 4)
        growth = statistics.median(warm[-quarter:]) - statistics.median(warm[:quarter])
        print(f"  RSS after warm-up ({args.warmup:.0f} s): first quarter median {statistics.median(warm[:quarter]):.1f}, "
              f"last quarter median {statistics.median(warm[-quarter:]):.1f}, growth {growth:+.1f} MiB "
              f"(limit {args.rss_growth_mib:.0f})")
    failures = []
    if stats.errors:
        failures.append(f"{sum(stats.errors.values())} unintended errors")
    if crashed:
        failures.append("the server died")
    # uvicorn re-raises the SIGTERM it handled after a clean shutdown, hence -15
    if proc is not None and proc.returncode not in (0, None, -signal.SIGTERM):
        failures.append(f"server exit code {proc.returncode} after SIGTERM")
    if growth > args.rss_growth_mib:
        failures.append(f"RSS grew {growth:.1f} MiB after warm-up")
    if stats.ok == 0:
        failures.append("no request completed")
    print("  verdict          " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return 1 if failures else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds before RSS must stop growing")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--queue-size", type=int, default=8)
    p.add_argument("--request-timeout", type=float, default=120.0, help="the started server's request_timeout")
    p.add_argument("--rss-growth-mib", type=float, default=24.0)
    p.add_argument("--pack", type=Path, default=None, help="pack for the started server (default: the demo pack)")
    p.add_argument("--model", default=None, help="model for the started server (default: the registry's)")
    p.add_argument("--url", default=None, help="use a running server on loopback instead of starting one")
    p.add_argument("--pid", type=int, default=None, help="with --url: the server's pid, for RSS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server-log", type=Path, default=Path(tempfile.gettempdir()) / "load_serve.log")
    args = p.parse_args()
    if not 1 <= args.clients <= 256 or not 1 <= args.duration <= 3600:
        raise SystemExit("--clients must be 1..256 and --duration 1..3600 s")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
