"""How many threads llama.cpp decodes with and how its idle threads wait, chosen for the CPU as it is.

`choose_threads` is a pure function of a `CpuObservation` (allowed cores, physical cores, CPU time
other processes used lately) and the decode rates this process measured; `CpuMonitor` reads those
from /proc and `os.times`; `ThreadController` ties them together between turns. The OpenMP wait
policy is read once, when llama.cpp's OpenMP runtime starts: `apply_wait_policy` sets it before that.
Nothing here loads a model or reads the environment (see `edge_agent.runtime`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "WAIT_POLICIES",
    "CpuMonitor",
    "CpuObservation",
    "ThreadChoice",
    "ThreadController",
    "apply_wait_policy",
    "choose_threads",
    "parse_threads",
    "parse_wait_policy",
]

log = logging.getLogger(__name__)

# auto: spin briefly (about 3 ms) after each step, then sleep; with one thread nobody waits at all.
# spin: the same, pinned. passive: sleep at once. active: spin forever (a dedicated device).
WAIT_POLICIES = ("auto", "spin", "passive", "active")
USER_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SPIN_COUNT = "300000"  # libgomp's own default when no policy is set: ~3 ms of spinning
# A core counts as ours when at least this share of it was free: one thread losing its slice
# stalls every other thread at the next barrier, so a half-busy core is worth less than half.
FREE_SHARE = 0.65
RATE_MARGIN = 1.05  # a measured rate must beat the load-based pick by 5 % to overrule it
MIN_WINDOW_S = 0.2  # shorter windows hold too few clock ticks to say anything


def parse_threads(value: str | int | None) -> int | None:
    """A thread count setting ("auto", "0", "", None: automatic) as an int, or None for automatic."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "0", "auto"):
        return None
    if not text.isdigit() or not 1 <= int(text) <= 512:
        raise ConfigError(f"EDGE_AGENT_THREADS={value!r} is not a thread count; use a whole number from 1 to "
                          "512 (e.g. EDGE_AGENT_THREADS=2) or 'auto'")
    return int(text)


def parse_wait_policy(value: str | None) -> str:
    text = (value or "auto").strip().lower()
    if text not in WAIT_POLICIES:
        raise ConfigError(f"EDGE_AGENT_WAIT_POLICY={value!r} is not a wait policy; use one of "
                          f"{', '.join(WAIT_POLICIES)} (e.g. EDGE_AGENT_WAIT_POLICY=passive)")
    return text


def apply_wait_policy(policy: str, env: MutableMapping[str, str]) -> str:
    """Set OpenMP's wait variables in `env` for `policy` (one of WAIT_POLICIES); returns what now applies.

    Must run before llama.cpp's library loads. Variables the user set (OMP_WAIT_POLICY,
    GOMP_SPINCOUNT, KMP_BLOCKTIME) are left alone and win.
    """
    policy = parse_wait_policy(policy)
    if any(k in env for k in USER_WAIT_VARS):
        return "user: " + " ".join(f"{k}={env[k]}" for k in USER_WAIT_VARS if k in env)
    if policy in ("auto", "spin"):
        env["GOMP_SPINCOUNT"] = SPIN_COUNT  # libgomp (GCC builds)
        env["KMP_BLOCKTIME"] = "3"  # LLVM's libomp: milliseconds
    else:
        env["OMP_WAIT_POLICY"] = policy.upper()
    return policy


@dataclass(frozen=True)
class CpuObservation:
    """What the process can see of the CPU: `allowed` cores (affinity and cgroup quota), `physical`
    cores among them, and `others_busy`, the cores' worth of CPU time other processes used over the
    last `window_s` seconds (0 when unknown)."""

    allowed: int
    physical: int
    others_busy: float = 0.0
    window_s: float = 0.0


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def choose_threads(obs: CpuObservation, rates: Mapping[int, float] | None = None,
                   max_threads: int | None = None) -> ThreadChoice:
    """Threads for the next reply: one per core that is mostly free, at most one per physical core
    (decode is memory-bound; hyper-threads add barrier waits, not bandwidth), then corrected by the
    decode rates measured at neighbouring counts under the same load (`rates`: threads -> tok/s)."""
    cap = max(1, min(obs.allowed, obs.physical or obs.allowed, max_threads or obs.allowed))
    free = max(0.0, obs.allowed - obs.others_busy)
    pick = max(1, min(cap, math.floor(free + 1 - FREE_SHARE + 1e-9)))
    reason = f"{free:.2f} of {obs.allowed} cores free"
    if pick < cap and free + 1e-9 >= cap:
        reason += f", capped at {cap} physical"
    rates = rates or {}
    mine = rates.get(pick)
    if mine:
        for other in (pick - 1, pick + 1):
            if 1 <= other <= cap and rates.get(other, 0.0) > RATE_MARGIN * mine:
                return ThreadChoice(other, f"{reason}; measured {rates[other]:.0f} tok/s at {other} vs "
                                           f"{mine:.0f} at {pick}")
    return ThreadChoice(pick, reason)


# --- reading the machine ----------------------------------------------------------------------------


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup may use (cgroup v2 cpu.max), or None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(float(quota) / float(period), 0.01)
    except (ValueError, ZeroDivisionError):
        return None


def _physical_cores(cpus: list[int], root: Path = Path("/sys/devices/system/cpu")) -> int:
    cores = set()
    for cpu in cpus:
        topo = root / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return len(cores) or len(cpus)


def _busy_ticks(cpus: set[int], stat: Path = Path("/proc/stat")) -> int | None:
    """Non-idle clock ticks summed over `cpus` (steal counts as busy: the core was not ours)."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in rest.split()]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total += sum(values[:8]) - idle
    return total


@dataclass
class CpuMonitor:
    """Samples the machine: `observe()` returns what changed since the previous call."""

    cpus: list[int] = field(default_factory=_allowed_cpus)
    tick_s: float = field(default_factory=lambda: 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01)

    def __post_init__(self) -> None:
        quota = _cgroup_quota()
        self.allowed = max(1, min(len(self.cpus), math.ceil(quota) if quota else len(self.cpus)))
        self.physical = min(_physical_cores(self.cpus), self.allowed)
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, int | None]:
        t = os.times()
        return time.monotonic(), t.user + t.system, _busy_ticks(set(self.cpus))

    def observe(self) -> CpuObservation:
        now = self._sample()
        (t0, own0, busy0), (t1, own1, busy1) = self._last, now
        window = t1 - t0
        if window < MIN_WINDOW_S:
            return CpuObservation(self.allowed, self.physical, 0.0, 0.0)
        self._last = now
        if busy0 is not None and busy1 is not None:
            others = ((busy1 - busy0) * self.tick_s - (own1 - own0)) / window
        else:  # no /proc/stat (macOS): the load average, less what we ran ourselves
            try:
                others = os.getloadavg()[0] - (own1 - own0) / window
            except OSError:
                others = 0.0
        return CpuObservation(self.allowed, self.physical, max(0.0, others), window)


class ThreadController:
    """Decides the thread count between replies, or keeps a pinned one. Measured decode rates are
    remembered per thread count and load level, so a count that proved slower under this load is
    not chosen again on the load figure alone."""

    def __init__(self, pinned: int | None = None, monitor: CpuMonitor | None = None,
                 max_threads: int | None = None) -> None:
        self.pinned = pinned
        self.monitor = monitor if monitor is not None or pinned else CpuMonitor()
        self.max_threads = max_threads
        self.rates: dict[tuple[int, int], float] = {}
        self.last_observation: CpuObservation | None = None
        if pinned:
            self.current, self.reason = pinned, "pinned"
        else:
            physical = self.monitor.physical if self.monitor is not None else 1
            self.current, self.reason = max(1, min(physical, max_threads or physical)), "start"

    def _level(self, obs: CpuObservation) -> int:
        return round(obs.others_busy * 2)  # half-core load levels

    def decide(self) -> ThreadChoice:
        """The count for the next reply; keeps the current one when too little time has passed."""
        if self.pinned or self.monitor is None:
            return ThreadChoice(self.current, self.reason)
        obs = self.monitor.observe()
        if obs.window_s <= 0:
            return ThreadChoice(self.current, self.reason)
        self.last_observation = obs
        level = self._level(obs)
        rates = {n: r for (n, lv), r in self.rates.items() if lv == level}
        choice = choose_threads(obs, rates, self.max_threads)
        if choice.threads != self.current:
            log.info("llama.cpp threads %d -> %d (%s)", self.current, choice.threads, choice.reason)
        self.current, self.reason = choice.threads, choice.reason
        return choice

    def record(self, threads: int, decode_tps: float, tokens: int) -> None:
        """Remember a reply's decode rate (replies under 16 tokens are too short to time)."""
        if self.pinned or tokens < 16 or decode_tps <= 0 or self.last_observation is None:
            return
        key = (threads, self._level(self.last_observation))
        old = self.rates.get(key)
        self.rates[key] = decode_tps if old is None else 0.5 * old + 0.5 * decode_tps
