"""Talking to ZooKeeper for the store: connecting, losing the connection, multi-node writes.

The kazoo primitives `zookeeper.py` and `zookeeper_lock.py` build on: a client with the store's
session timeout and retry policy, a lost connection reported as BackendUnavailable (like an
unreachable database), and many node writes sent in transactions that each fit one request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    RolledBackError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import RetryFailedError

from mflow.errors import BackendUnavailable

if TYPE_CHECKING:
    from kazoo.interfaces import IAsyncResult

SESSION_TIMEOUT = 10.0  # seconds; also how long a killed owner's lock outlives it at most
RETRY = {"max_tries": 5, "delay": 0.2, "backoff": 2, "max_delay": 5, "deadline": 30}
MAX_TRANSACTION_BYTES = 512 * 1024  # a multi() request must stay under jute.maxbuffer (1 MB)
ANSWER_TIMEOUT = 30.0  # seconds an asynchronous request may wait (a request queued while
# the connection is down waits for the next connection, for ever if no server comes back)

T = TypeVar("T")


class _Store(Protocol):
    display_url: str
    hosts: str


def connect(
    hosts: str, display_url: str, timeout: float, credentials: str | None = None
) -> KazooClient:
    """A started client; BackendUnavailable when no server answers within `timeout` seconds.
    `credentials` (`user:password`) authenticate with ZooKeeper's digest scheme."""
    auth = [("digest", credentials)] if credentials else None
    client = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT, command_retry=RETRY, auth_data=auth)
    try:
        client.start(timeout=timeout)
    except KazooTimeoutError:
        raise BackendUnavailable(
            f"state store {display_url} cannot be reached: no ZooKeeper server "
            f"answered at {hosts} within {timeout:g} s"
        ) from None
    return client


def zk_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Lost connections become BackendUnavailable, like an unreachable database."""

    @functools.wraps(method)
    def wrapper(self: _Store, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (
            ConnectionLoss,
            SessionExpiredError,
            ConnectionClosedError,
            RetryFailedError,
            KazooTimeoutError,
        ) as exc:
            raise BackendUnavailable(
                f"state store {self.display_url} cannot be reached: lost the ZooKeeper "
                f"session with {self.hosts} ({type(exc).__name__})"
            ) from None

    return wrapper


def answer(result: IAsyncResult) -> Any:
    """The value of an asynchronous request (`get_async` and the like), or its error;
    KazooTimeoutError after ANSWER_TIMEOUT seconds."""
    return result.get(timeout=ANSWER_TIMEOUT)


def committed(results: list[Any]) -> bool:
    """A kazoo transaction's results hold exceptions, not raise them."""
    return not any(isinstance(result, Exception) for result in results)


def commit_writes(client: KazooClient, ops: list[tuple[str, bytes, bool]]) -> None:
    """Create or set nodes, `(path, data, exists)`, in as few transactions as the request
    size allows; raises the error of the op that failed."""
    start, size = 0, 0
    for index, (path, data, _) in enumerate(ops):
        size += len(path) + len(data) + 32
        if size > MAX_TRANSACTION_BYTES and index > start:
            _commit(client, ops[start:index])
            start, size = index, len(path) + len(data) + 32
    if start < len(ops):
        _commit(client, ops[start:])


def _commit(client: KazooClient, ops: list[tuple[str, bytes, bool]]) -> None:
    """One transaction of node writes; raises the error of the op that failed."""

    def commit() -> list[Any]:
        txn = client.transaction()
        for path, data, exists in ops:
            if exists:
                txn.set_data(path, data)
            else:
                txn.create(path, data)
        return txn.commit()

    for result in client.retry(commit):
        if isinstance(result, Exception) and not isinstance(result, RolledBackError):
            raise result
