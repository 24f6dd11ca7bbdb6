"""Recurring jobs (SPEC §5): reading and checking job documents, what the CLI's `mflow jobs`
and the API show of them, and a job as the one-task project its runs run.

A job is one task definition (any type) with schedule fields at the top level, so TgFlow's
job documents load unchanged: `{"type": "gsql_batch", "graph": "G", "job_name": "J", "db":
"tg", "frequency": "1h"}`. Its name is given with the command (`jobs add NAME`); it is the
task's id and the DAG name of its runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mflow.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from mflow.config import Config, Datasources, Project
    from mflow.scheduler.timing import Schedule
    from mflow.state.base import JobRecord, StateStore

SCHEDULE_FIELDS = (
    "frequency",
    "cron",
    "timezone",
    "start",
    "enabled",
    "catchup",
    "after_success_of",
    "conflicts_with",
    "max_active",
    "inputs",
    "output",
)


@dataclass(frozen=True)
class Job:
    """A stored job, read: its schedule and the task it runs."""

    name: str
    task: Mapping[str, Any]  # the task's fields (schedule fields left out), id = name
    base_dir: str
    enabled: bool
    schedule: Schedule | None  # None: runs only when triggered (or a gsql_stream)
    catchup: str = "latest"
    after_success_of: tuple[str, ...] = ()
    conflicts_with: tuple[str, ...] = ()
    max_active: int = 1
    inputs: tuple[str, ...] = ()
    output: str | None = None
    created_at: float = 0.0

    @property
    def stream(self) -> bool:
        return self.task.get("type") == "gsql_stream"

    @property
    def schedule_text(self) -> str:
        if self.stream:
            return "stream"
        if self.schedule is None:
            return "manual"
        if self.schedule.cron is not None:
            return f"cron {self.schedule.cron}"
        return f"every {_seconds_text(self.schedule.frequency or 0)}"


def job_from_record(record: JobRecord) -> Job:
    """A stored job (checked when it was stored) as a Job."""
    from mflow.scheduler.timing import Schedule, parse_frequency

    doc = dict(record.document)
    schedule = None
    timezone = doc.get("timezone", "UTC")
    start = _start(doc["start"]) if "start" in doc else 0.0
    if "frequency" in doc:
        schedule = Schedule(
            frequency=parse_frequency(doc["frequency"]), timezone=timezone, start=start
        )
    elif "cron" in doc:
        schedule = Schedule(cron=doc["cron"], timezone=timezone, start=start)
    task = {k: v for k, v in doc.items() if k not in SCHEDULE_FIELDS}
    task["id"] = record.name
    return Job(
        name=record.name,
        task=task,
        base_dir=record.base_dir,
        enabled=record.enabled,
        schedule=schedule,
        catchup=doc.get("catchup", "latest"),
        after_success_of=tuple(doc.get("after_success_of", ())),
        conflicts_with=tuple(doc.get("conflicts_with", ())),
        max_active=int(doc.get("max_active", 1)),
        inputs=tuple(doc.get("inputs", ())),
        output=doc.get("output"),
        created_at=record.created_at,
    )


# ---------------------------------------------------------------------- reading and checking


def read_job(name: str, text: str | None, file: Path | None) -> tuple[dict[str, Any], str]:
    """(document, base directory) from `JSON` or `-f FILE`, checked (raises InvalidInput)."""
    if (text is None) == (file is None):
        raise ConfigError("give the job as JSON or with -f FILE (one of them)", json_path="")
    where, base = _where(file)
    doc = _parse(text, file, where)
    check_job(name, doc, where)
    return doc, base


def read_jobs_file(file: Path) -> tuple[dict[str, dict[str, Any]], str]:
    """`{"jobs": {NAME: job, ...}}` from a file (`jobs apply`), every job checked."""
    where, base = _where(file)
    doc = _parse(None, file, where)
    jobs = doc.get("jobs") if isinstance(doc, Mapping) else None
    if not isinstance(jobs, Mapping) or set(doc) - {"jobs"}:
        raise ConfigError(
            'a jobs file is {"jobs": {"NAME": {job...}, ...}}', file=where, json_path="$"
        )
    problems: list[ConfigError] = []
    for name, job in jobs.items():
        try:
            check_job(str(name), job, where, f"$.jobs.{name}")
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)
    return {str(k): dict(v) for k, v in jobs.items()}, base


def _where(file: Path | None) -> tuple[str, str]:
    if file is None:
        return "argument JSON", str(Path.cwd())
    return str(file), str(file.resolve().parent)


def _parse(text: str | None, file: Path | None, where: str) -> Any:
    from mflow import config as cfg

    if file is not None:
        return cfg.read_document(file, where)
    try:
        return json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            file=where,
            json_path="",
        ) from None


def check_job(name: str, doc: Any, where: str, path: str = "$") -> None:
    """Every problem of a job document at once (InvalidInput): its name, its schedule fields
    (job.schema.json and what a schema cannot say) and its task (as tasks.schema.json)."""
    from mflow import schema
    from mflow.partitions import NAME

    problems: list[ConfigError] = []
    if not NAME.match(name):
        problems.append(
            ConfigError(
                f"job name '{name}' may hold letters, digits and _ . - (200 at most)", json_path=""
            )
        )
    for found in schema.validator("job").problems(doc, where):
        found.json_path = path + found.json_path[1:]
        found.task_id, found.subject = name, "job"
        problems.append(found)
    if not isinstance(doc, Mapping):
        raise InvalidInput(problems)
    flagged = {p.json_path for p in problems}
    problems.extend(p for p in _semantic(name, doc, where, path) if p.json_path not in flagged)
    for key in ("id", "depends"):
        if key in doc:
            what = "its name is the task's id" if key == "id" else "use after_success_of"
            problems.append(
                ConfigError(
                    f"a job has no '{key}': {what}",
                    file=where,
                    json_path=f"{path}.{key}",
                    task_id=name,
                    subject="job",
                )
            )
    task = {k: v for k, v in doc.items() if k not in SCHEDULE_FIELDS and k not in ("id", "depends")}
    task["id"] = name
    for found in schema.validator("tasks").problems({"tasks": [task]}, where):
        found.json_path = found.json_path.replace("$.tasks[0]", path, 1)
        found.subject = "job"
        problems.append(found)
    if problems:
        raise InvalidInput(problems)


def _semantic(name: str, doc: Mapping[str, Any], where: str, path: str) -> list[ConfigError]:
    from mflow.scheduler.timing import check_cron, check_timezone

    def problem(key: str, message: str) -> ConfigError:
        return ConfigError(
            message, file=where, json_path=f"{path}.{key}", task_id=name, subject="job"
        )

    found = []
    if "frequency" in doc and "cron" in doc:
        found.append(problem("cron", "a job has a frequency or a cron, not both"))
    if isinstance(doc.get("cron"), str) and (why := check_cron(doc["cron"])):
        found.append(problem("cron", why))
    if isinstance(doc.get("timezone"), str) and (why := check_timezone(doc["timezone"])):
        found.append(problem("timezone", why))
    if isinstance(doc.get("start"), str):
        try:
            _start(doc["start"])
        except ValueError:
            found.append(
                problem("start", f"'{doc['start']}' is not an ISO time (2026-01-01T00:00:00Z)")
            )
    if doc.get("type") == "gsql_stream":
        for key in ("frequency", "cron"):
            if key in doc:
                found.append(problem(key, "a gsql_stream job has no schedule: it is kept running"))
    if ("inputs" in doc) != ("output" in doc):
        found.append(
            problem(
                "output" if "inputs" in doc else "inputs",
                "a partition-aware job has inputs and an output",
            )
        )
    for key in ("after_success_of", "conflicts_with"):
        if isinstance(doc.get(key), list) and name in doc[key]:
            found.append(problem(key, f"a job cannot name itself in {key}"))
    return found


def _start(value: str) -> float:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # a start without an offset is UTC
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _seconds_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# ---------------------------------------------------------------------- a job as a project


def job_project(record: JobRecord, config: Config, datasources: Datasources) -> Project:
    """The one-task project a run of the job runs: its task (id = the job's name), with the
    run's config and datasources; relative paths resolve against the job's directory."""
    from types import MappingProxyType

    from mflow import config as cfg
    from mflow.project import check_task_types

    job = job_from_record(record)
    base = Path(job.base_dir or ".")
    display = f"job {job.name}"
    name, specs = cfg.build_tasks(
        {"name": job.name, "tasks": [dict(job.task)]}, base / job.name, display, config
    )
    tasks = {spec.id: spec for spec in specs}
    problems = check_task_types(tasks, datasources)
    if problems:
        raise InvalidInput(problems)
    return cfg.Project(
        config=config,
        dag=cfg.Dag(
            name=name,
            path=base / job.name,
            tasks=MappingProxyType(tasks),
            text=json.dumps(job.task),
        ),
        datasources=datasources,
        taskfile_display=display,
    )


def known_job(store: StateStore, name: str) -> JobRecord:
    """The stored job, or ConfigError naming the known ones (exit 2)."""
    record = store.get_job(name)
    if record is None:
        known = (
            ", ".join(j.name for j in store.list_jobs()) or "none yet (mflow jobs add NAME JSON)"
        )
        raise ConfigError(f"unknown job '{name}'", json_path="", hint=f"known: {known}")
    return record
