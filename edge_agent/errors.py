"""The exception tree of edge-agent.

Every error a user can act on derives from EdgeAgentError and carries a one-line message that
names the fix. The CLI prints `str(err)`; unexpected exceptions propagate.
"""

from __future__ import annotations

__all__ = [
    "EdgeAgentError",
    "ConfigError",
    "PackError",
    "ModelError",
    "BackendError",
    "MissingExtraError",
]


class EdgeAgentError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ConfigError(EdgeAgentError):
    """A configuration file, flag or environment variable is wrong."""


class PackError(EdgeAgentError):
    """A pack on disk is missing, corrupt or incompatible."""


class ModelError(EdgeAgentError):
    """A model file is missing, corrupt, unregistered or unusable."""


class BackendError(EdgeAgentError):
    """A chat backend (teacher, judge, simulator or student) failed."""


class MissingExtraError(EdgeAgentError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this command needs the '{extra}' extra (module '{module}' is missing); "
            f"install it with: pip install 'edge-agent[{extra}]'"
        )
        self.extra = extra
        self.module = module
