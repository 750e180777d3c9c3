"""Worker processes: a supervisor, its children, and the scheduler."""

from .config import WorkerConfig
from .supervisor import Supervisor

__all__ = ["Supervisor", "WorkerConfig"]
