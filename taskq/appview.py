"""What the parts of the producer API need of an app, as a protocol:
job handles, job control, stats, events and metrics take an ``AppView``,
which ``TaskQ`` satisfies, so none of them imports ``taskq.app`` (which
imports them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .cron import Periodic
from .options import AppSettings, TaskOptions
from .storage.backend import Backend

if TYPE_CHECKING:
    from .slots import Slots


class AppView(Protocol):
    """An app's name, settings, storage and effective task options."""

    name: str
    settings: AppSettings
    periodics: dict[str, Periodic]

    @property
    def backend(self) -> Backend: ...

    @property
    def slots(self) -> Slots: ...

    def options_for(self, name: str) -> TaskOptions: ...
