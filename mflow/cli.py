"""The `mflow` command: Typer parses, the core does the work, errors become exit codes.

`mflow [--config F] [--taskfile F] [--datasources F] [options]` runs the DAG, exactly as
`mflow run ...` does (the seed tool's form). Modules beyond typer are imported inside the
command that needs them: mflow is started thousands of times a night by cron and by parent
DAGs, and `mflow --help` must stay fast. For the same reason this module does not use
`from __future__ import annotations`: Typer reads every command's annotations each time it
builds the CLI, and string annotations would be evaluated again and again (20 ms per start);
written plainly they are evaluated once, at import. The apps are `MflowTyper`s, which keep
pydantic out of the process (see mflow.cli_values).
"""

import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from mflow.cli_values import MflowTyper
from mflow.errors import ExitCode, MflowError

app = MflowTyper(
    name="mflow",
    help="Run a DAG of tasks described in files (default: ./tasks.json).",
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="config.json (default: ./config.json if present).", show_default=False
    ),
]
TaskfileOpt = Annotated[
    Path | None,
    typer.Option("--taskfile", "-f", help="The DAG (default: ./tasks.json).", show_default=False),
]
DatasourcesOpt = Annotated[
    Path | None,
    typer.Option(
        "--datasources", help="Connections (default: ./oracle.json if present).", show_default=False
    ),
]
StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state", help="State store URL (overrides MFLOW_STATE and the files).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


@dataclass
class FileOptions:
    """File options given before a subcommand (`mflow --taskfile x validate`)."""

    config: Path | None = None
    taskfile: Path | None = None
    datasources: Path | None = None
    state: str | None = None


def _files(
    ctx: typer.Context, config: Path | None, taskfile: Path | None, datasources: Path | None
) -> tuple[Path | None, Path | None, Path | None]:
    outer = ctx.obj if isinstance(ctx.obj, FileOptions) else FileOptions()
    return (config or outer.config, taskfile or outer.taskfile, datasources or outer.datasources)


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

    project = load_project(*_files(ctx, config, taskfile, datasources))
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

    project = load_project(*_files(ctx, config, taskfile, datasources))
    if fmt is GraphFormat.tree:
        render.print_tree(project)
    elif fmt is GraphFormat.dot:
        typer.echo(render.dot(project), nl=False)
    else:
        typer.echo(render.graph_json(project))


def main() -> None:
    """Console entry point: run the app, map MflowError to its exit code without a traceback."""
    import logging

    # kazoo logs each failed connection attempt, the store a stale run it released: only
    # mflow's own one-line messages reach stderr (during a run these records go to the
    # master log: mflow.logs.MasterLog).
    for name in ("kazoo", "mflow"):
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False
    try:
        app(prog_name="mflow")
    except MflowError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.SIGINT))
    except BrokenPipeError:  # `mflow graph | head`
        sys.stderr.close()
        sys.exit(int(ExitCode.OK))


# --------------------------------------------------------------------------- store queries


def _store(ctx: typer.Context, state: str | None, config: Path | None, datasources: Path | None):
    from mflow.project import open_store_from_files

    outer = ctx.obj if isinstance(ctx.obj, FileOptions) else FileOptions()
    return open_store_from_files(
        state or outer.state, config or outer.config, datasources or outer.datasources
    )


def _tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


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
    store = _store(ctx, state, config, datasources)
    try:
        found = queries.list_runs(store, dag=dag, status=wanted, limit=limit)
    finally:
        store.close()
    render.print_runs(found, json_output=json_output, tty=_tty())


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
    store = _store(ctx, state, config, datasources)
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
    elif _tty():
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
    store = _store(ctx, state, config, datasources)
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


def _follow(chunks):  # write a log as it grows; return the generator's value (the run)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration as stop:
            return stop.value
        sys.stdout.write(chunk)
        sys.stdout.flush()


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

    store = _store(ctx, state, config, datasources)
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

    store = _store(ctx, state, config, datasources)
    try:
        found = queries.dags(store)
    finally:
        store.close()
    render.print_dags(found, json_output=json_output, tty=_tty())


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
    store = _store(ctx, state, config, datasources)
    try:
        result = control.prune(store, age, dag=dag, dry_run=dry_run)
    finally:
        store.close()
    render.print_prune(result, dry_run=dry_run, json_output=json_output)


# --------------------------------------------------------------------------- jobs, cluster

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
    store = _store(ctx, state, config, datasources)
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
    store = _store(ctx, state, config, datasources)
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
    store = _store(ctx, state, config, datasources)
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

    store = _store(ctx, state, config, datasources)
    try:
        shown = [catalog.view(store, job) for job in store.list_jobs()]
    finally:
        store.close()
    if json_output:
        _jobs_echo(True, [_view_dict(v) for v in shown], "")
    else:
        render.print_jobs(shown, tty=_tty())


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

    store = _store(ctx, state, config, datasources)
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

    store = _store(ctx, state, config, datasources)
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

    outer = ctx.obj if isinstance(ctx.obj, FileOptions) else FileOptions()
    request = RunRequest(
        config=config or outer.config,
        datasources=datasources or outer.datasources,
        state=state or outer.state,
    )
    store = _store(ctx, state, config, datasources)
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

    store = _store(ctx, state, config, datasources)
    try:
        rows = catalog.history(store, name, limit)
    finally:
        store.close()
    if json_output:
        keys = ("slot", "outcome", "reason", "run_id", "state", "host")
        _jobs_echo(True, [{k: getattr(r, k) for k in keys} for r in rows], "")
    else:
        render.print_history(rows, tty=_tty())


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

    store = _store(ctx, state, config, datasources)
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

    store = _store(ctx, state, config, datasources)
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

    store = _store(ctx, state, config, datasources)
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

    outer = ctx.obj if isinstance(ctx.obj, FileOptions) else FileOptions()
    request = RunRequest(
        config=config or outer.config,
        datasources=datasources or outer.datasources,
        state=state or outer.state,
    )
    conf = load_config(request.config)
    from mflow.run import prepare_log_dir

    prepare_log_dir(conf.log_directory.resolve())
    log_to(True, str(conf.log_directory.resolve() / "scheduler.log"))
    store = _store(ctx, state, config, datasources)
    try:
        run_scheduler(SchedulerOptions(request, name), store)
    finally:
        store.close()


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on; another than 127.0.0.1 needs MFLOW_API_TOKEN."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8080,
    public_read: Annotated[
        bool, typer.Option("--public-read", help="Reads need no token (writes still do).")
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="POST /v1/runs starts task files under this directory (default: the current one).",
        ),
    ] = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Serve the REST API (/v1, OpenAPI at /docs) and the web view of this store."""
    import os

    from mflow.errors import ConfigError

    try:
        import uvicorn

        from mflow.api.app import create_app
        from mflow.api.common import ApiSettings
    except ImportError as exc:
        raise ConfigError(
            f"mflow serve needs the 'api' extra ({exc.name} is not installed)",
            json_path="",
            hint="pip install 'mflow[api]'",
        ) from None
    token = os.environ.get("MFLOW_API_TOKEN") or None
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"--host {host}: serving another address than 127.0.0.1 needs a token",
            json_path="",
            hint="export MFLOW_API_TOKEN=<a long random string>; clients send "
            "'Authorization: Bearer <it>'",
        )
    outer = ctx.obj if isinstance(ctx.obj, FileOptions) else FileOptions()
    root = (root or Path.cwd()).resolve()
    if not root.is_dir():
        raise ConfigError(f"--root {root}: not a directory", json_path="")
    settings = ApiSettings(
        state=state or outer.state,
        config=config or outer.config,
        datasources=datasources or outer.datasources,
        root=root,
        token=token,
        public_read=public_read,
    )
    application = create_app(settings)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    print(
        f"mflow serve: {where}/ (API {where}/v1, OpenAPI {where}/docs) on "
        f"{application.state.store.display_url}"
        + ("; reads are public" if public_read else "")
        + ("" if token else "; no token: local use only"),
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        raise ConfigError(
            f"mflow serve: could not listen on {host}:{port} (in use, or not an address here)",
            json_path="",
        ) from exc


@app.command()
def worker(
    ctx: typer.Context,
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="Queues to take attempts from, comma-separated.")
    ] = "mflow",
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, help="Attempts at once (default: CPUs)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="This worker's name (default: mflow@host-pid).")
    ] = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Run a Celery worker: it runs the attempts of runs whose config.json says
    "executor": "celery", with this machine's datasources (extra `celery`)."""
    import os

    from mflow.errors import ConfigError
    from mflow.project import load_config, load_datasources

    try:
        import celery  # noqa: F401

        from mflow.worker import WorkerFiles, run_worker
    except ImportError as exc:
        raise ConfigError(
            f"mflow worker needs the 'celery' extra ({exc.name} is not installed)",
            json_path="",
            hint="pip install 'mflow[celery]'",
        ) from None
    outer = ctx.obj if isinstance(ctx.obj, FileOptions) else FileOptions()
    files = WorkerFiles(
        load_config(config or outer.config), load_datasources(datasources or outer.datasources)
    )
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    if not wanted:
        raise ConfigError("--queues: give at least one queue name", json_path="")
    run_worker(files, wanted, concurrency or os.cpu_count() or 1, name)


# TgFlow's names for the same commands.
app.command("add-job", help="Add a job (TgFlow's name for `jobs add`).")(jobs_add)
app.command("list-jobs", help="The jobs (TgFlow's name for `jobs list`).")(jobs_list)
app.command("delete-job", help="Delete a job (TgFlow's name for `jobs delete`).")(jobs_delete)
app.command("cluster-status", help="TgFlow's name for `cluster status`.")(cluster_status)
app.command("show-leader", help="TgFlow's name for `cluster show-leader`.")(cluster_show_leader)
app.command("list-followers", help="TgFlow's name for `cluster list-followers`.")(
    cluster_list_followers
)


# --------------------------------------------------------------------------- partitions

datasets_app = MflowTyper(help="Datasets of partition-aware jobs (SPEC §6).", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
data_app = MflowTyper(help="Partitions: (dataset, dataid) and their status.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@datasets_app.command("add")
def datasets_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset's name.")],
    document: Annotated[
        str | None,
        typer.Argument(metavar="[JSON]", help='Its fields: {"path": "/data/x/${dataid}", ...}.'),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the fields from a JSON/YAML file.")
    ] = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Create (or replace) a dataset: fields that may use ${dataid}."""
    import json

    from mflow import partitions

    dataset = partitions.read_dataset(name, document, file)
    store = _store(ctx, state, config, datasources)
    try:
        created = store.put_dataset(dataset)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps({"name": name, "fields": dict(dataset.fields), "created": created}))
    else:
        typer.echo(f"dataset {name} {'created' if created else 'replaced'}")


@datasets_app.command("list")
def datasets_list(
    ctx: typer.Context,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The datasets, with their fields."""
    import json

    store = _store(ctx, state, config, datasources)
    try:
        found = store.datasets()
    finally:
        store.close()
    if json_output:
        typer.echo(
            json.dumps([{"name": d.name, "fields": dict(d.fields)} for d in found], indent=2)
        )
    elif not found:
        typer.echo("no datasets")
    for d in found if not json_output else ():
        typer.echo(f"{d.name}  " + "  ".join(f"{k}={v}" for k, v in d.fields.items()))


@app.command()
def runjob(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(metavar="JOB", help="A partition-aware job.")],
    every: Annotated[
        bool, typer.Option("--all", help="Go on until nothing is ready (catch-up, oldest first).")
    ] = False,
    dataid: Annotated[
        str | None, typer.Option("--dataid", help="This dataid only (if it is ready).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary lines.")] = False,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
    announce_fd: Annotated[
        int | None, typer.Option("--announce-fd", hidden=True, help="(mflow.launch)")
    ] = None,
    parent: Annotated[
        str | None, typer.Option("--parent", hidden=True, help="RUN_ID:TASK_ID (a DAG task).")
    ] = None,
) -> None:
    """Claim the next ready partition of JOB's output, run JOB on it, mark it READY or FAILED."""
    import json

    from mflow import partitions
    from mflow.console import make_console
    from mflow.plan import RunRequest
    from mflow.runjob import runjob as produce

    outer = ctx.obj if isinstance(ctx.obj, FileOptions) else FileOptions()
    request = RunRequest(
        config=config or outer.config,
        datasources=datasources or outer.datasources,
        state=state or outer.state,
        parent=parent,
    )
    announced = []

    def on_claimed(partition, run_id) -> None:  # type: ignore[no-untyped-def]
        if announce_fd is not None and not announced:
            from mflow.launch import announce

            announce(announce_fd, run_id)
            announced.append(run_id)

    store = _store(ctx, state, config, datasources)
    try:
        done = produce(
            store,
            request,
            job,
            every=every,
            dataid=dataid,
            view=lambda: make_console(quiet=quiet or json_output, json_output=False),
            on_claimed=on_claimed,
        )
    finally:
        store.close()
        if announce_fd is not None and not announced:
            from mflow.launch import announce

            announce(announce_fd, None)
    if json_output:
        typer.echo(json.dumps([partitions.partition_dict(p.partition) for p in done], indent=2))
    elif not done:
        typer.echo("no data ready")
    for produced in done if not json_output else ():
        part = produced.partition
        typer.echo(f"{part.dataset} {part.dataid} {part.status} (run {part.run_id})")
    failed = any(p.partition.status.value != "READY" for p in done)
    raise typer.Exit(1 if failed else 0)


@data_app.command("set")
def data_set(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="The dataset.")],
    dataid: Annotated[str, typer.Argument(help="The partition's dataid (2026-11-22...).")],
    status: Annotated[str, typer.Argument(help="RUNNING, READY, FAILED or RESUBMIT.")],
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Set a partition's status (an input that arrived: READY)."""
    import json

    from mflow import partitions

    wanted = partitions.parse_status(status)
    store = _store(ctx, state, config, datasources)
    try:
        part = partitions.set_status(store, dataset, dataid, wanted)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps(partitions.partition_dict(part)))
    else:
        typer.echo(f"{dataset} {dataid} {wanted}")


@data_app.command("list")
def data_list(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Argument(help="Only this dataset.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Partitions by dataset and dataid, with who set their status and when."""
    import json

    from mflow import partitions, render

    wanted = partitions.parse_status(status, "--status") if status else None
    store = _store(ctx, state, config, datasources)
    try:
        found = store.partitions(dataset, wanted)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps([partitions.partition_dict(p) for p in found], indent=2))
    else:
        render.print_partitions(found, tty=_tty())


@data_app.command("reset")
def data_reset(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="The dataset.")],
    dataids: Annotated[list[str], typer.Argument(help="Dataids to produce again.")],
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Mark partitions RESUBMIT: the next runjob produces them again."""
    import json

    from mflow import partitions

    store = _store(ctx, state, config, datasources)
    try:
        done = partitions.reset(store, dataset, dataids)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps([partitions.partition_dict(p) for p in done]))
    else:
        typer.echo(f"{dataset}: {', '.join(dataids)} RESUBMIT")


# --------------------------------------------------------------------------- db, crypt

db_app = MflowTyper(help="The state store's tables.", no_args_is_help=True)
app.add_typer(db_app, name="db")


class Dialect(str, Enum):
    oracle = "oracle"
    postgresql = "postgresql"
    sqlite = "sqlite"


@db_app.command("init")
def db_init(
    ctx: typer.Context,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the DDL instead of running it.")
    ] = False,
    dialect: Annotated[
        Dialect | None,
        typer.Option(
            "--dialect",
            help="With --sql: oracle, postgresql or sqlite (default: the store's own).",
        ),
    ] = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Create the store's tables (idempotent), or print the DDL for a DBA (--sql)."""
    from mflow.errors import ConfigError

    if dialect is not None and not sql:
        raise ConfigError("--dialect says which DDL --sql prints: give --sql too", json_path="")
    if sql:
        from mflow.state.ddl import ddl

        typer.echo(
            ddl(dialect.value if dialect else _store_dialect(ctx, state, config, datasources)),
            nl=False,
        )
        return
    store = _store(ctx, state, config, datasources)
    try:
        store.init()
    finally:
        store.close()
    typer.echo(f"initialised {store.display_url}")


def _store_dialect(ctx: typer.Context, state, config, datasources) -> str:  # type: ignore[no-untyped-def]
    """The SQL dialect of the store these options name (nothing is connected to)."""
    from mflow.errors import ConfigError
    from mflow.project import load_config, load_datasources
    from mflow.state import locate

    outer = ctx.obj if isinstance(ctx.obj, FileOptions) else FileOptions()
    location = locate(
        state or outer.state,
        load_config(config or outer.config).state,
        load_datasources(datasources or outer.datasources),
    )
    if location.scheme not in {d.value for d in Dialect}:
        raise ConfigError(
            f"the state store {location.display} is not an SQL database: it has no DDL",
            json_path="",
            hint="give --dialect oracle, postgresql or sqlite",
        )
    return location.scheme


crypt_app = MflowTyper(
    help="Encrypt passwords for datasources (MFLOW_PASSKEY).", no_args_is_help=True
)
app.add_typer(crypt_app, name="crypt")


def _passkey(confirm: bool) -> str:
    import os

    from mflow.errors import ConfigError
    from mflow.secrets import PASSKEY_ENV

    if os.environ.get(PASSKEY_ENV):
        return os.environ[PASSKEY_ENV]
    key = _secret_input("passkey: ", "the passkey")
    if not key:
        raise ConfigError("the passkey is empty", json_path="", hint=f"or set {PASSKEY_ENV}")
    if confirm and _secret_input("passkey again: ", "the passkey, a second time") != key:
        raise ConfigError("the passkeys differ", json_path="")
    return key


def _secret_input(prompt: str, what: str) -> str:
    """A line typed at a prompt that does not echo it, or, when stdin is not a terminal (a
    pipe, cron), the next line of stdin, read without a prompt (getpass would read it too,
    warning that it may be echoed). Every secret of a command comes the same way, in order."""
    import getpass

    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        from mflow.errors import ConfigError

        raise ConfigError(
            f"stdin ended before {what}",
            json_path="",
            hint="without a terminal, each secret is a line of stdin, in the order asked",
        )
    return line.rstrip("\n")


class Kdf(str, Enum):
    scrypt = "scrypt"
    sha512 = "sha512"


@crypt_app.command("encrypt")
def crypt_encrypt(
    kdf: Annotated[
        Kdf,
        typer.Option(
            "--kdf",
            help="scrypt: salted, for new secrets; sha512: the seed's format, for tools that "
            "read OpenDataFlow's (both decrypt).",
        ),
    ] = Kdf.scrypt,
) -> None:
    """Read a password (hidden prompt, or one line of stdin) and print its encrypted_password."""
    from mflow.secrets import encrypt

    passkey = _passkey(confirm=True)
    typer.echo(encrypt(_secret_input("password: ", "the password"), passkey, kdf.value))


@crypt_app.command("decrypt")
def crypt_decrypt() -> None:
    """Read an encrypted_password (prompt, or one line of stdin) and print the password."""
    from mflow.errors import ConfigError
    from mflow.secrets import decrypt

    passkey = _passkey(confirm=False)
    sealed = _secret_input("encrypted_password: ", "the encrypted_password")
    try:
        typer.echo(decrypt(sealed, passkey))
    except ValueError as exc:
        raise ConfigError(f"cannot decrypt: {exc}", json_path="") from None
