"""A small Django project on SQLite whose tasks run on taskq. The server,
namespace and database file come from the environment (the test sets them)."""

import os

SECRET_KEY = "test-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["taskq.contrib.django", "shop"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJANGO_DB"],
                         "OPTIONS": {"timeout": 20}}}
TASKS = {
    "default": {
        "BACKEND": "taskq.contrib.django.TaskqBackend",
        "QUEUES": ["default", "low"],
        "OPTIONS": {"REDIS_URL": os.environ["TASKQ_REDIS_URL"], "NAMESPACE": os.environ["TASKQ_NAMESPACE"]},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
