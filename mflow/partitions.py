"""Datasets and partitions (SPEC §6): what `mflow datasets` and `mflow data` do, as data.

A dataset is a name and fields that may use `${dataid}`; a partition is (dataset, dataid) with
a status. These functions check their input (one line naming the argument or file and the JSON
path, exit 2) and go through the store; the CLI prints what they return.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mflow.errors import ConfigError
from mflow.states import PartitionStatus

if TYPE_CHECKING:
    from mflow.state.base import Dataset, Partition, StateStore

NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}\Z")
DATAID = re.compile(r"[A-Za-z0-9_.:+-]{1,200}\Z")


def read_dataset(name: str, text: str | None, file: Path | None) -> Dataset:
    """A dataset from `JSON` or `-f FILE`: an object of fields (strings, `${dataid}` allowed),
    or `{"fields": {...}}`."""
    from mflow.config import read_document
    from mflow.state.base import Dataset

    check_name(name, "dataset")
    if (text is None) == (file is None):
        raise ConfigError("give the dataset as JSON or with -f FILE (one of them)", json_path="")
    where = str(file) if file is not None else "argument JSON"
    if file is not None:
        doc = read_document(file)
    else:
        try:
            doc = json.loads(text or "")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON: {exc.msg}", file=where, json_path="") from None
    if isinstance(doc, Mapping) and set(doc) == {"fields"}:
        doc, path = doc["fields"], "$.fields"
    else:
        path = "$"
    if not isinstance(doc, Mapping) or not doc:
        raise ConfigError(
            "a dataset is an object of fields", file=where, json_path=path,
            hint='like {"path": "/data/sales/${dataid}", "table": "sales_${dataid}"}',
        )  # fmt: skip
    fields: dict[str, str] = {}
    for key, value in doc.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(
                f"field name '{key}' is not a variable name", file=where, json_path=f"{path}.{key}"
            )
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError("expected a string", file=where, json_path=f"{path}.{key}")
        fields[key] = str(value)
    return Dataset(name, fields)


def check_name(name: str, what: str) -> None:
    if not NAME.match(name):
        raise ConfigError(
            f"{what} name '{name}' may hold letters, digits and _ . - (200 at most)", json_path=""
        )


def check_dataid(dataid: str) -> None:
    if not DATAID.match(dataid):
        raise ConfigError(
            f"dataid '{dataid}' may hold letters, digits and _ . : + - (200 at most)",
            json_path="",
            hint="like 2026-11-22",
        )


def parse_status(value: str, option: str = "STATUS") -> PartitionStatus:
    try:
        return PartitionStatus(value.upper())
    except ValueError:
        raise ConfigError(
            f"{option}: unknown partition status '{value}'",
            json_path="",
            hint="one of: " + ", ".join(s.value for s in PartitionStatus),
        ) from None


def known_dataset(store: StateStore, name: str) -> Dataset:
    found = {d.name: d for d in store.datasets()}
    if name not in found:
        known = ", ".join(found) or "none yet (mflow datasets add NAME JSON)"
        raise ConfigError(f"unknown dataset '{name}'", json_path="", hint=f"known: {known}")
    return found[name]


def set_status(
    store: StateStore, dataset: str, dataid: str, status: PartitionStatus, job: str | None = None
) -> Partition:
    """`mflow data set`: a partition's status, as an operator sets it."""
    from mflow.state.base import Partition, this_host

    known_dataset(store, dataset)
    check_dataid(dataid)
    partition = Partition(dataset, dataid, status, job, None, this_host(), os.getpid())
    store.set_partition(partition)
    return partition


def reset(store: StateStore, dataset: str, dataids: list[str]) -> list[Partition]:
    """`mflow data reset`: the partitions become RESUBMIT, to be produced again."""
    return [set_status(store, dataset, d, PartitionStatus.RESUBMIT) for d in dataids]


def partition_dict(partition: Partition) -> dict[str, Any]:
    """The JSON of `mflow data list`: dataset, dataid, status, job, run_id, host, updated."""
    data = asdict(partition)
    return {
        "dataset": data["dataset"],
        "dataid": data["dataid"],
        "status": partition.status.value,
        "job": data["job"],
        "run_id": data["run_id"],
        "host": data["host"],
        "updated": data["updated_at"],
    }


def expand(fields: Mapping[str, str], dataid: str) -> dict[str, str]:
    """A dataset's fields for one dataid (`${dataid}` filled in)."""
    return {key: value.replace("${dataid}", dataid) for key, value in fields.items()}


def variables(datasets: Mapping[str, Dataset], dataid: str) -> dict[str, str]:
    """What a partition-aware job's task sees: MFLOW_DATAID and <DATASET>_<FIELD> for each of
    its datasets (upper-cased; characters a variable name cannot hold become _)."""
    env = {"MFLOW_DATAID": dataid}
    for dataset in datasets.values():
        for key, value in expand(dataset.fields, dataid).items():
            name = re.sub(r"[^A-Z0-9_]", "_", f"{dataset.name}_{key}".upper())
            env[name] = value
    return env
