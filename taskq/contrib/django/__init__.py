"""taskq as a Django 6 ``django.tasks`` backend (see docs/django.md).

    TASKS = {"default": {"BACKEND": "taskq.contrib.django.TaskqBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"redis_url": "redis://localhost:6379/0", "namespace": "shop"}}}

``OPTIONS`` are taskq app settings (any of ``taskq.options.AppSettings``,
case-insensitive). Add ``"taskq.contrib.django"`` to ``INSTALLED_APPS`` for
``manage.py taskq_worker``.
"""

from .backend import TaskqBackend
from .commit import enqueue_on_commit

__all__ = ["TaskqBackend", "enqueue_on_commit"]
