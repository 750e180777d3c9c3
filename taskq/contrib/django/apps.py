"""The Django app that brings ``manage.py taskq_worker``."""

from __future__ import annotations

from django.apps import AppConfig


class TaskqConfig(AppConfig):
    name = "taskq.contrib.django"
    label = "taskq"
    verbose_name = "taskq"
