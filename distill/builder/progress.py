"""Progress of a build for people: rich bars on a terminal, plain throttled lines in a log.

Fed by the build's events (`stage`, `rollout`, `scenarios`, `scenario`, `call`); counts of calls,
tokens, cost and cache hits are read from the run's meter. It only prints; it never steers the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Self

import click

__all__ = ["Progress"]


class Progress:
    """Progress fed by build events: rich bars on a terminal, plain lines otherwise.

    Line mode (stderr is a file or a pipe, e.g. a background run) prints when a stage starts, when
    its scenarios are known, when it ends, and otherwise at most once every `interval` seconds.
    """

    def __init__(self, enabled: bool, *, lines: bool = False, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 write: Callable[[str], None] = lambda text: click.echo(text, err=True)) -> None:
        self.enabled = enabled
        self.lines = lines and not enabled
        self.interval = interval
        self.clock = clock
        self.write = write
        self.build: Any = None
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.totals: dict[str, int | None] = {}
        self.stage: Any = None
        self._last = 0.0

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[info]}"), transient=False,
                                     console=Console(stderr=True))
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _info(self) -> str:
        if self.build is None:
            return ""
        t = self.build.caller.meter.total
        return (f"calls {t.calls}  tokens {t.prompt_tokens + t.completion_tokens}  ${t.cost:.4f}  "
                f"cache hits {t.cache_hits}  student {self.build.student.calls}")

    def _line(self, force: bool = False) -> None:
        now = self.clock()
        if not self.lines or (not force and now - self._last < self.interval):
            return
        self._last = now
        scen = self.totals.get("scenario")
        self.write(f"stage {self.stage}: rollouts {self.counts.get('rollout', 0)}/{self.totals.get('rollout')}, "
                   f"scenarios {self.counts.get('scenario', 0)}/{'?' if scen is None else scen}  {self._info()}")

    def __call__(self, name: str, data: Mapping[str, Any]) -> None:
        if self.progress is None and not self.lines:
            return
        stage = data.get("stage")
        if name == "stage":
            self.stage = stage
            self.counts = {"rollout": 0, "scenario": 0}
            self.totals = {"rollout": data["customers"], "scenario": None}
            if self.progress is not None:
                self.tasks["rollout"] = self.progress.add_task(f"stage {stage} rollouts", total=data["customers"],
                                                               info=f"p={data['p']}, library {data['library']}")
                self.tasks["scenario"] = self.progress.add_task(f"stage {stage} scenarios", total=None, info="")
            self._line(force=True)
        elif name in ("rollout", "scenario"):
            self.counts[name] = self.counts.get(name, 0) + 1
            if self.progress is not None:
                self.progress.update(self.tasks[name], completed=self.counts[name], info=self._info())
            done = name == "scenario" and self.counts[name] == self.totals.get("scenario")
            self._line(force=done)
        elif name == "call":
            self._line()
        elif name == "scenarios":
            self.totals["scenario"] = data["total"]
            if self.progress is not None:
                self.progress.update(self.tasks["scenario"], total=data["total"])
            self._line(force=True)
