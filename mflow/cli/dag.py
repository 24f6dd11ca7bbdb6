"""`mflow [run]`, `mflow validate`, `mflow graph`: the DAG files.

(No `from __future__ import annotations`: see mflow/cli/__init__.py.)
"""

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from mflow.cli.app import (
    ConfigOpt,
    DatasourcesOpt,
    FileOptions,
    StateOpt,
    TaskfileOpt,
    app,
    files_for,
)


def _run(
    ctx: typer.Context,
    config: ConfigOpt = None,
    taskfile: TaskfileOpt = None,
    datasources: DatasourcesOpt = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-j",
            min=1,
            help="Most tasks at once (overrides config).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN_ID|last",
            help="Continue a run: SUCCESS tasks are kept, the others run again.",
            show_default=False,
        ),
    ] = None,
    rerun_from: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="TASK",
            help="With --resume: run TASK and everything after it again, even if SUCCESS.",
            show_default=False,
        ),
    ] = None,
    oneshot: Annotated[
        str | None,
        typer.Option(
            "--oneshot",
            metavar="TASK",
            help="Run only this task, ignoring its dependencies.",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="TASK",
            help="Run this task and everything it depends on.",
            show_default=False,
        ),
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="After a failure, start nothing new.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and the commands; run nothing.")
    ] = False,
    allow_concurrent: Annotated[
        bool, typer.Option("--allow-concurrent", help="Run even if this DAG is already running.")
    ] = False,
    state: StateOpt = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir", help="Log directory (overrides config log_directory).", show_default=False
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the final summary.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per event on stdout.")
    ] = False,
    parent: Annotated[
        str | None,
        typer.Option("--parent", hidden=True, help="RUN_ID:TASK_ID of the parent (child runs)."),
    ] = None,
    job: Annotated[
        str | None,
        typer.Option("--job", hidden=True, help="Run a stored job (what the scheduler starts)."),
    ] = None,
    announce_fd: Annotated[
        int | None,
        typer.Option("--announce-fd", hidden=True, help="Write the run id here (mflow.launch)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=lambda v: _version(v), help="Print the version."
        ),
    ] = False,
) -> None:
    """Run the DAG (the default command)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = FileOptions(config, taskfile, datasources, state)
        return
    from mflow.plan import RunRequest

    request = RunRequest(
        config=config,
        taskfile=taskfile,
        datasources=datasources,
        concurrency=concurrency,
        resume=resume,
        rerun_from=rerun_from,
        oneshot=oneshot,
        target=target,
        fail_fast=fail_fast,
        allow_concurrent=allow_concurrent,
        state=state,
        log_dir=log_dir,
        parent=parent,
        job=job,
    )
    import json

    if dry_run:
        from mflow import render
        from mflow.dryrun import planned_tasks
        from mflow.run import dry_run as plan_only

        plan = plan_only(request)
        render.print_plan(plan, planned_tasks(plan), json_output=json_output)
        return
    from mflow.console import make_console
    from mflow.run import execute

    view = make_console(quiet=quiet, json_output=json_output, resume=_resume_argv(request))
    on_taken = None
    if announce_fd is not None:
        from mflow.launch import announce

        def on_taken(run) -> None:  # type: ignore[no-untyped-def]
            announce(announce_fd, run.id)

    result = execute(request, view, on_taken)
    if announce_fd is not None and result.nothing_left:
        announce(announce_fd, result.run_id)
    if result.nothing_left:
        if json_output:
            event = {"event": "RunUnchanged", "run_id": result.run_id, "state": result.state.value}
            typer.echo(json.dumps(event))
        else:
            typer.echo(
                f"run {result.run_id}: nothing left to do, every task is SUCCESS; "
                f"the run is unchanged ({result.state.value})"
            )
    if result.store_error:
        print(
            f"mflow: {result.store_error} (the logs in {result.log_dir} have the full record)",
            file=sys.stderr,
        )
    raise typer.Exit(int(result.exit_code))


def _resume_argv(request) -> list:  # a RunRequest -> the command that continues its run
    from mflow.secrets import mask_url

    argv = ["mflow"]
    for flag, value in (
        ("--config", request.config),
        ("--taskfile", request.taskfile),
        ("--datasources", request.datasources),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if request.state:
        argv += ["--state", mask_url(request.state)]
    if request.log_dir:
        argv += ["--log-dir", str(request.log_dir)]
    return [*argv, "--resume"]


def _version(wanted: bool) -> None:
    if wanted:
        from mflow import __version__

        typer.echo(f"mflow {__version__}")
        raise typer.Exit(0)


def _run_with_positional(ctx: typer.Context, dag: Path | None = None, **options) -> None:
    """`mflow run [DAG] [options]`: the DAG file may also come as an argument."""
    if dag is not None:
        if options["taskfile"] is not None and options["taskfile"] != dag:
            from mflow.plan import usage

            raise usage(f"two DAG files: '{dag}' and --taskfile '{options['taskfile']}'")
        options["taskfile"] = dag
    _run(ctx, **options)


def _with_dag_argument() -> None:
    """Give `_run_with_positional` `_run`'s options plus the DAG argument, for typer to read."""
    import inspect

    sig = inspect.signature(_run)
    dag = inspect.Parameter(
        "dag",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Argument(metavar="DAG", help="The DAG (same as --taskfile).", show_default=False),
        ],
    )
    params = list(sig.parameters.values())
    _run_with_positional.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[params[0], dag, *params[1:]]
    )
    _run_with_positional.__annotations__ = {**_run.__annotations__, "dag": dag.annotation}


_with_dag_argument()
app.callback(invoke_without_command=True)(_run)
app.command("run", help="Run the DAG (same as plain `mflow`).")(_run_with_positional)


@app.command()
def validate(
    ctx: typer.Context,
    config: ConfigOpt = None,
    taskfile: TaskfileOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Check the files: schema, ids, types, connections, dependencies, cycles; with
    MFLOW_PASSKEY set, that every encrypted_password decrypts."""
    from mflow.errors import InvalidInput
    from mflow.logs import count
    from mflow.project import load_project, undecryptable_passwords

    project = load_project(*files_for(ctx, config, taskfile, datasources))
    problems = undecryptable_passwords(project.datasources)
    if problems:
        raise InvalidInput(problems)
    typer.echo(f"OK: {count(len(project.dag.tasks), 'task')}, {count(project.dag.edges, 'edge')}")


class GraphFormat(str, Enum):
    tree = "tree"
    dot = "dot"
    json = "json"


@app.command()
def graph(
    ctx: typer.Context,
    config: ConfigOpt = None,
    taskfile: TaskfileOpt = None,
    datasources: DatasourcesOpt = None,
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="tree, dot (Graphviz) or json.")
    ] = GraphFormat.tree,
) -> None:
    """Show the DAG: a tree on the terminal, Graphviz DOT, or JSON nodes and edges."""
    from mflow import render
    from mflow.project import load_project

    project = load_project(*files_for(ctx, config, taskfile, datasources))
    if fmt is GraphFormat.tree:
        render.print_tree(project)
    elif fmt is GraphFormat.dot:
        typer.echo(render.dot(project), nl=False)
    else:
        typer.echo(render.graph_json(project))
