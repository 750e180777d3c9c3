"""The project's tasks, defined with Django's own decorator."""

from django.tasks import TaskContext, task

from .models import Order


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(priority=5)
def fail(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def whoami(context: TaskContext) -> dict:
    return {"id": context.task_result.id, "attempt": context.attempt}


@task()
async def double(x: int) -> int:
    return 2 * x


@task()
def mark_paid(order_id: int) -> bool:
    """Reads the row its transaction wrote: it must have committed."""
    return Order.objects.filter(pk=order_id).update(paid=True) == 1
