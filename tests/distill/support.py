"""Helpers shared by the builder's tests."""

from __future__ import annotations

import asyncio
from typing import Any

from distill.builder.loop import run_build
from distill.builder.rundir import Build


def finish_build(b: Build) -> dict[str, Any]:
    """Run a build to its end (or its stop), close its backends, and return the report."""
    async def go() -> dict[str, Any]:
        try:
            return await run_build(b)
        finally:
            b.close()
    return asyncio.run(go())
