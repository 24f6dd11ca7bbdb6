"""The Celery application both sides use (SPEC §10): the coordinating run sends attempts with
it, `mflow worker` consumes them. Extra `celery` (celery with redis and amqp).

Delivery is Celery's and kombu's own, configured for tasks that must not be lost:
- `task_acks_late` + `task_reject_on_worker_lost`: a message is acknowledged when the attempt
  has ended, so a worker killed mid-task leaves it to be delivered again (RabbitMQ: as soon as
  the worker's connection drops; Redis: after the visibility timeout);
- the Redis visibility timeout is longer than any task's timeout (`visibility_timeout`), or
  a task still running would be handed to a second worker (celery #4766, kombu #337);
- Redis: the unacknowledged messages are looked at every quarter of the visibility timeout
  (at most a minute), so a dead worker's task is delivered again soon after it expires;
- one message prefetched per worker process (`worker_prefetch_multiplier = 1`): a long task
  does not hold back others queued behind it on the same worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

TASK_NAME = "mflow.run_attempt"
DEFAULT_QUEUE = "mflow"
DEFAULT_VISIBILITY = 3600.0  # seconds: Redis's "taken but not acknowledged" window
VISIBILITY_MARGIN = 300.0  # beyond the longest task timeout


def default_backend(broker: str) -> str:
    """Where outcomes go when config.json does not say: the Redis broker itself, or rpc://
    (replies as messages to the sender) with RabbitMQ."""
    return broker if broker.startswith(("redis://", "rediss://")) else "rpc://"


def visibility(configured: float | None, longest_timeout: float | None) -> float:
    """The visibility timeout to use: the configured one, or an hour, and always longer than
    the longest task timeout."""
    wanted = configured if configured is not None else DEFAULT_VISIBILITY
    if longest_timeout is not None:
        wanted = max(wanted, longest_timeout + VISIBILITY_MARGIN)
    return wanted


def make_app(
    broker: str, result_backend: str | None, visibility_timeout: float, **extra: Any
) -> Celery:
    from celery import Celery

    app = Celery("mflow", broker=broker, backend=result_backend or default_backend(broker))
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=False,  # the worker says RUNNING itself (mflow.worker)
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            # Look for messages of dead workers every few seconds, not every 100 s.
            "unacked_restore_interval": max(1.0, min(visibility_timeout / 4, 60.0)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        result_expires=86400,
        **extra,
    )
    return app
