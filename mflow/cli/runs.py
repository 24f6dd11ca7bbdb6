"""Runs in the store: `mflow runs`, `status`, `logs`, `stop`, `dags`, `prune`.

(No `from __future__ import annotations`: see mflow/cli/__init__.py.)
"""

import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from mflow.cli.app import (
    ConfigOpt,
    DatasourcesOpt,
    JsonOpt,
    StateOpt,
    app,
    stdout_tty,
    store_for,
)


@app.command()
def runs(
    ctx: typer.Context,
    dag: Annotated[str | None, typer.Option("--dag", help="Only runs of this DAG.")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="RUNNING, SUCCESS, FAILED or CANCELLED."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many.")] = 20,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Recent runs, most recent first."""
    from mflow import queries, render

    wanted = queries.parse_run_state(status)
    store = store_for(ctx, state, config, datasources)
    try:
        found = queries.list_runs(store, dag=dag, status=wanted, limit=limit)
    finally:
        store.close()
    render.print_runs(found, json_output=json_output, tty=stdout_tty())


@app.command()
def status(
    ctx: typer.Context,
    run_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[RUN_ID|last]", help="A run id (default: the latest run that is not a child)."
        ),
    ] = None,
    dag: Annotated[str | None, typer.Option("--dag", help="The latest run of this DAG.")] = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The tasks of a run: state, attempt, duration, exit code, log; child runs nested."""
    import json

    from mflow import queries, render
    from mflow.errors import RunNotFound

    wanted = queries.parse_run_id(run_id)
    store = store_for(ctx, state, config, datasources)
    try:
        tree = queries.status(store, wanted, dag)
    except RunNotFound as exc:
        if wanted is not None:
            raise
        # Nothing has run yet is an answer, as for `mflow runs`, not an error.
        typer.echo("null" if json_output else str(exc))
        return
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps(queries.tree_dict(tree), indent=2))
    elif stdout_tty():
        render.print_tree_rich(tree)
    else:
        render.print_tree_plain(tree)


@app.command()
def logs(
    ctx: typer.Context,
    run_id: Annotated[
        str,
        typer.Argument(metavar="RUN_ID|last", help="A run id, or last (the latest run)."),
    ],
    task: Annotated[str, typer.Argument(help="The task id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing until the task ends.")
    ] = False,
    dag: Annotated[
        str | None, typer.Option("--dag", help="With last: the latest run of this DAG.")
    ] = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Print a task's log (the output of every attempt)."""
    import json

    from mflow import queries
    from mflow.errors import ConfigError
    from mflow.state.base import OWNER_GONE, STALE_AFTER, is_stale
    from mflow.states import RunState

    if follow and json_output:
        raise ConfigError(
            "--follow prints the log as it grows: it cannot be used with --json",
            json_path="",
            hint="without --follow, --json prints the task and its log so far",
        )
    store = store_for(ctx, state, config, datasources)
    try:
        run_id = queries.find_run(store, queries.parse_run_id(run_id), dag).id
        if follow:
            run = _follow(queries.follow_log(store, run_id, queries.find_task(store, run_id, task)))
            gone = run.note == OWNER_GONE or (run.status is RunState.RUNNING and is_stale(run))
            if gone:  # nothing more will come
                typer.echo(
                    f"mflow: stopped following: run {run_id} is {run.status} (owner gone): its "
                    f"mflow (pid {run.pid} on {run.host}) is gone or has not written a "
                    f"heartbeat for {STALE_AFTER:.0f} s; `mflow --resume {run_id}` with the "
                    "same files continues it",
                    err=True,
                )
            return
        found = queries.task_log(store, run_id, task)
    finally:
        store.close()
    row = found.task
    if json_output:
        typer.echo(json.dumps({**queries.record_dict(row), "text": found.text or ""}, indent=2))
    elif row.log_path is None:
        typer.echo(
            f"task {task} of run {run_id} has not started (state {row.state.value})", err=True
        )
    else:
        sys.stdout.write(found.text or "")


@app.command()
def stop(
    ctx: typer.Context,
    run_id: Annotated[
        str, typer.Argument(metavar="RUN_ID|last", help="A run id, or last (the latest run).")
    ],
    dag: Annotated[
        str | None, typer.Option("--dag", help="With last: the latest run of this DAG.")
    ] = None,
    wait: Annotated[
        float,
        typer.Option("--wait", min=0, help="Seconds to wait for the run to end (0: do not wait)."),
    ] = 60.0,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Stop a running run wherever it runs: its tasks and child runs are CANCELLED."""
    import json

    from mflow import control, queries

    store = store_for(ctx, state, config, datasources)
    try:
        run = queries.find_run(store, queries.parse_run_id(run_id), dag)
        result = control.stop_run(store, run, wait=wait)
    finally:
        store.close()
    run = result.run
    if json_output:
        record = queries.record_dict(run)
        typer.echo(json.dumps({**record, "signalled": result.signalled, "ended": result.ended}))
    elif result.ended:
        typer.echo(f"run {run.id} {run.dag}: {run.status}")
    else:
        how = "sent SIGTERM" if result.signalled else f"asked its mflow on {run.host} to stop"
        typer.echo(
            f"run {run.id} {run.dag}: {how}; still {run.status} after {wait:g} s "
            f"(`mflow status {run.id}` shows when it ends)"
        )


@app.command()
def dags(
    ctx: typer.Context,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The DAGs this store knows: how many runs, the last one, its state and when."""
    from mflow import queries, render

    store = store_for(ctx, state, config, datasources)
    try:
        found = queries.dags(store)
    finally:
        store.close()
    render.print_dags(found, json_output=json_output, tty=stdout_tty())


@app.command()
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", metavar="AGE", help="Runs that ended longer ago: 30d, 12h, 2w."
        ),
    ],
    dag: Annotated[str | None, typer.Option("--dag", help="Only runs of this DAG.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; delete nothing.")
    ] = False,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Delete finished runs older than AGE, their task rows and task logs (never an active run)."""
    from mflow import control, render

    age = control.parse_age(older_than)
    store = store_for(ctx, state, config, datasources)
    try:
        result = control.prune(store, age, dag=dag, dry_run=dry_run)
    finally:
        store.close()
    render.print_prune(result, dry_run=dry_run, json_output=json_output)


def _follow(chunks: Iterator[str]) -> Any:
    """Write a log as it grows; return the generator's value (the run)."""
    while True:
        try:
            chunk = next(chunks)
        except StopIteration as stop:
            return stop.value
        sys.stdout.write(chunk)
        sys.stdout.flush()
