"""Recurring jobs and the schedulers: `mflow jobs ...`, `mflow cluster ...`, `mflow scheduler`.

(No `from __future__ import annotations`: see mflow/cli/__init__.py.)
"""

from pathlib import Path
from typing import Annotated

import typer

from mflow.cli.app import (
    ConfigOpt,
    DatasourcesOpt,
    JsonOpt,
    StateOpt,
    app,
    given,
    stdout_tty,
    store_for,
)
from mflow.cli.values import MflowTyper

jobs_app = MflowTyper(
    help="Recurring jobs (SPEC §5): add, list, trigger, history...", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")
cluster_app = MflowTyper(help="The schedulers: leader and members.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")

JobName = Annotated[str, typer.Argument(metavar="NAME", help="The job's name.")]
JobJson = Annotated[
    str | None, typer.Argument(metavar="[JSON]", help="The job document (or -f FILE).")
]
JobFile = Annotated[
    Path | None, typer.Option("--file", "-f", help="Read the job from a JSON/YAML file.")
]


def _jobs_echo(json_output: bool, data: object, text: str) -> None:
    import json

    typer.echo(json.dumps(data, indent=2) if json_output else text)


@jobs_app.command("add")
def jobs_add(
    ctx: typer.Context,
    name: JobName,
    document: JobJson = None,
    file: JobFile = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Add a job (exists: exit 2, use update)."""
    from mflow.jobs import read_job
    from mflow.scheduler import catalog

    doc, base = read_job(name, document, file)
    store = store_for(ctx, state, config, datasources)
    try:
        record = catalog.add(store, name, doc, base)
        shown = catalog.view(store, record)
    finally:
        store.close()
    _jobs_echo(json_output, _view_dict(shown), f"job {name} added: {_view_line(shown)}")


@jobs_app.command("update")
def jobs_update(
    ctx: typer.Context,
    name: JobName,
    document: JobJson = None,
    file: JobFile = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Replace a job's document."""
    from mflow.jobs import read_job
    from mflow.scheduler import catalog

    doc, base = read_job(name, document, file)
    store = store_for(ctx, state, config, datasources)
    try:
        record = catalog.update(store, name, doc, base)
        shown = catalog.view(store, record)
    finally:
        store.close()
    _jobs_echo(json_output, _view_dict(shown), f"job {name} updated: {_view_line(shown)}")


@jobs_app.command("apply")
def jobs_apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", help='{"jobs": {NAME: job, ...}}')],
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete the jobs the file does not name.")
    ] = False,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Create and update the jobs of a file (--prune: delete the others); say what changed."""
    from dataclasses import asdict

    from mflow.jobs import read_jobs_file
    from mflow.scheduler import catalog

    jobs, base = read_jobs_file(file)
    store = store_for(ctx, state, config, datasources)
    try:
        done = catalog.apply(store, jobs, base, prune)
    finally:
        store.close()
    lines = [f"{what}: {', '.join(names)}" for what, names in asdict(done).items() if names] or [
        "nothing to do"
    ]
    _jobs_echo(json_output, asdict(done), "\n".join(lines))


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The jobs: schedule, time zone, enabled, next fire, last run and its state."""
    from mflow import render
    from mflow.scheduler import catalog

    store = store_for(ctx, state, config, datasources)
    try:
        shown = [catalog.view(store, job) for job in store.list_jobs()]
    finally:
        store.close()
    if json_output:
        _jobs_echo(True, [_view_dict(v) for v in shown], "")
    else:
        render.print_jobs(shown, tty=stdout_tty())


@jobs_app.command("show")
def jobs_show(
    ctx: typer.Context,
    name: JobName,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """A job: its document and where it stands."""
    import json

    from mflow.scheduler import catalog

    store = store_for(ctx, state, config, datasources)
    try:
        record = catalog.known_job(store, name)
        shown = catalog.view(store, record)
    finally:
        store.close()
    data = {**_view_dict(shown), "document": dict(record.document), "base_dir": record.base_dir}
    _jobs_echo(
        json_output, data, f"{_view_line(shown)}\n{json.dumps(dict(record.document), indent=2)}"
    )


def _job_state_command(
    ctx: typer.Context,
    name: str,
    action: str,
    state: str | None,
    config,
    datasources,  # type: ignore[no-untyped-def]
) -> None:
    from mflow.scheduler import catalog

    store = store_for(ctx, state, config, datasources)
    try:
        if action == "delete":
            catalog.delete(store, name)
        else:
            catalog.set_enabled(store, name, action == "resume")
    finally:
        store.close()
    typer.echo(f"job {name} {action}d" if action != "pause" else f"job {name} paused")


@jobs_app.command("delete")
def jobs_delete(
    ctx: typer.Context,
    name: JobName,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Delete a job (its runs and slots' history stay)."""
    _job_state_command(ctx, name, "delete", state, config, datasources)


@jobs_app.command("pause")
def jobs_pause(
    ctx: typer.Context,
    name: JobName,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Pause a job: its slots are recorded SKIPPED (paused) until it is resumed."""
    _job_state_command(ctx, name, "pause", state, config, datasources)


@jobs_app.command("resume")
def jobs_resume(
    ctx: typer.Context,
    name: JobName,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Resume a paused job."""
    _job_state_command(ctx, name, "resume", state, config, datasources)


@jobs_app.command("trigger")
def jobs_trigger(
    ctx: typer.Context,
    name: JobName,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the run and exit as it would.")
    ] = False,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Start a run of the job now (a manual slot of its own); print the run id."""
    from mflow.plan import RunRequest
    from mflow.scheduler import catalog

    outer = given(ctx)
    request = RunRequest(
        config=config or outer.config,
        datasources=datasources or outer.datasources,
        state=state or outer.state,
    )
    store = store_for(ctx, state, config, datasources)
    try:
        fire, launched = catalog.trigger(store, name, request)
    finally:
        store.close()
    _jobs_echo(
        json_output,
        {"job": name, "run_id": launched.run_id, "slot": fire.slot},
        "no data ready" if launched.run_id is None else str(launched.run_id),
    )
    if wait and launched.process is not None:
        raise typer.Exit(launched.process.wait())


@jobs_app.command("history")
def jobs_history(
    ctx: typer.Context,
    name: JobName,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many slots.")] = 20,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """A job's slots, newest first: outcome, reason, run, its state, host."""
    from mflow import render
    from mflow.scheduler import catalog

    store = store_for(ctx, state, config, datasources)
    try:
        rows = catalog.history(store, name, limit)
    finally:
        store.close()
    if json_output:
        keys = ("slot", "outcome", "reason", "run_id", "state", "host")
        _jobs_echo(True, [{k: getattr(r, k) for k in keys} for r in rows], "")
    else:
        render.print_history(rows, tty=stdout_tty())


def _view_dict(shown) -> dict:  # type: ignore[no-untyped-def]
    from dataclasses import asdict

    return asdict(shown)


def _view_line(shown) -> str:  # type: ignore[no-untyped-def]
    from mflow.render import when

    state = "enabled" if shown.enabled else "paused"
    return f"{shown.schedule} ({shown.timezone}), {state}, next fire {when(shown.next_fire)}"


@cluster_app.command("status")
def cluster_status(
    ctx: typer.Context,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The leader (since when, epoch) and the members (last heartbeat)."""
    from mflow import render
    from mflow.scheduler.cluster import cluster

    store = store_for(ctx, state, config, datasources)
    try:
        found = cluster(store)
    finally:
        store.close()
    if json_output:
        _jobs_echo(True, found.as_dict(), "")
    else:
        render.print_cluster(found)


@cluster_app.command("show-leader")
def cluster_show_leader(
    ctx: typer.Context,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The leader, or none."""
    from mflow.scheduler.cluster import cluster

    store = store_for(ctx, state, config, datasources)
    try:
        found = cluster(store).as_dict()["leader"]
    finally:
        store.close()
    text = (
        "no leader"
        if found is None
        else f"{found['name']} on {found['hostname']} (epoch {found['epoch']})"
    )
    _jobs_echo(json_output, found, text)


@cluster_app.command("list-followers")
def cluster_list_followers(
    ctx: typer.Context,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The schedulers that run (the leader among them)."""
    from mflow.scheduler.cluster import cluster

    store = store_for(ctx, state, config, datasources)
    try:
        found = cluster(store).as_dict()["followers"]
    finally:
        store.close()
    _jobs_echo(
        json_output,
        found,
        "\n".join(f"{f['name']} on {f['hostname']}" for f in found) or "no schedulers",
    )


@app.command()
def scheduler(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option("--name", help="This member's name (default: <hostname>-<pid>)."),
    ] = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Run a scheduler: one leader among all of them on this store fires the jobs."""
    from mflow.plan import RunRequest
    from mflow.project import load_config
    from mflow.scheduler.daemon import SchedulerOptions, log_to, run_scheduler

    outer = given(ctx)
    request = RunRequest(
        config=config or outer.config,
        datasources=datasources or outer.datasources,
        state=state or outer.state,
    )
    conf = load_config(request.config)
    from mflow.run import prepare_log_dir

    prepare_log_dir(conf.log_directory.resolve())
    log_to(True, str(conf.log_directory.resolve() / "scheduler.log"))
    store = store_for(ctx, state, config, datasources)
    try:
        run_scheduler(SchedulerOptions(request, name), store)
    finally:
        store.close()


# TgFlow's names for the same commands.
app.command("add-job", help="Add a job (TgFlow's name for `jobs add`).")(jobs_add)
app.command("list-jobs", help="The jobs (TgFlow's name for `jobs list`).")(jobs_list)
app.command("delete-job", help="Delete a job (TgFlow's name for `jobs delete`).")(jobs_delete)
app.command("cluster-status", help="TgFlow's name for `cluster status`.")(cluster_status)
app.command("show-leader", help="TgFlow's name for `cluster show-leader`.")(cluster_show_leader)
app.command("list-followers", help="TgFlow's name for `cluster list-followers`.")(
    cluster_list_followers
)
