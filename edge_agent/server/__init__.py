"""`edge-agent serve`: an OpenAI-compatible HTTP server over the retrieval-guided agent.

Importing this package needs the `server` extra (FastAPI, uvicorn); `import edge_agent` alone
never pulls it in.
"""

from .app import build_agent, create_app
from .config import ServeConfig, is_loopback, load_serve_config
from .context import fit_history, trim_history
from .schemas import ApiError
from .worker import GenerationWorker, Job, QueueFull

__all__ = [
    "ApiError",
    "GenerationWorker",
    "Job",
    "QueueFull",
    "ServeConfig",
    "build_agent",
    "create_app",
    "fit_history",
    "is_loopback",
    "load_serve_config",
    "trim_history",
]
