"""State stores: which one a run uses, and opening it by URL scheme.

Precedence (SPEC §4): `--state`, then `MFLOW_STATE`, then config `state`, then the datasources'
connection named `mflow` (the seed's rule), then `sqlite:///$MFLOW_HOME/state.db`
(`MFLOW_HOME` defaults to `~/.mflow`).

Backends are found through a registry of lazy import strings, so a run on SQLite never imports
kazoo and a missing driver is reported as the extra to install.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from mflow.connections import DRIVERS
from mflow.errors import BackendUnavailable, ConfigError
from mflow.secrets import mask_url

if TYPE_CHECKING:
    from mflow.config import Datasource, Datasources
    from mflow.state.base import StateStore

# URL scheme (the part before "+driver") -> "module:class"
BACKENDS: dict[str, str] = {
    "sqlite": "mflow.state.sql:SqlStore",
    "postgresql": "mflow.state.sql:SqlStore",
    "oracle": "mflow.state.sql:SqlStore",
    "zk": "mflow.state.zookeeper:ZooKeeperStore",
}


@dataclass(frozen=True)
class StoreLocation:
    """Where the state lives: a URL, or the seed's Oracle connection named `mflow`."""

    url: str
    datasource: Datasource | None = None
    origin: str = "default"  # which rule chose it, for messages

    @property
    def display(self) -> str:
        if self.datasource is not None and "url" not in self.datasource.fields:
            dsn = self.datasource.get("connection_string", "")
            return f"oracle+oracledb://{self.datasource.get('user', '')}:***@{dsn}"
        return mask_url(self.url)

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].split("+", 1)[0].lower()


def default_url() -> str:
    home = Path(os.environ.get("MFLOW_HOME") or Path.home() / ".mflow").expanduser()
    return f"sqlite:///{home / 'state.db'}"


def locate(
    cli: str | None, config_state: str | None, datasources: Datasources | None
) -> StoreLocation:
    """Apply the precedence rules of SPEC §4."""
    if cli:
        return StoreLocation(cli, origin="--state")
    if os.environ.get("MFLOW_STATE"):
        return StoreLocation(os.environ["MFLOW_STATE"], origin="MFLOW_STATE")
    if config_state:
        return StoreLocation(config_state, origin="config state")
    if datasources is not None and "mflow" in datasources:
        conn = datasources["mflow"]
        if conn.kind == "sql":
            return StoreLocation(conn.fields["url"], conn, origin="datasources 'mflow'")
        if conn.kind == "oracle":
            return StoreLocation("oracle+oracledb://", conn, origin="datasources 'mflow'")
    return StoreLocation(default_url())


def open_store(location: StoreLocation) -> StateStore:
    """Connect to the store (not yet creating anything). Raises BackendUnavailable."""
    target = BACKENDS.get(location.scheme)
    if target is None:
        raise ConfigError(
            f"unknown state store URL '{location.display}' (from {location.origin})",
            json_path="",
            hint="use sqlite:///path, postgresql+psycopg://..., oracle+oracledb://... "
            "or zk://host:port/root",
        )
    module_name, _, cls_name = target.partition(":")
    try:
        cls = getattr(import_module(module_name), cls_name)
        return cls(location)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        fix = DRIVERS.get(missing, f"pip install {missing}")
        raise BackendUnavailable(
            f"state store {location.display}: driver '{missing}' is not installed ({fix})"
        ) from None
