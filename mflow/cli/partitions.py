"""Partition-aware jobs: `mflow datasets ...`, `mflow data ...`, `mflow runjob`.

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
    store = store_for(ctx, state, config, datasources)
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

    store = store_for(ctx, state, config, datasources)
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

    outer = given(ctx)
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

    store = store_for(ctx, state, config, datasources)
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
    store = store_for(ctx, state, config, datasources)
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
    store = store_for(ctx, state, config, datasources)
    try:
        found = store.partitions(dataset, wanted)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps([partitions.partition_dict(p) for p in found], indent=2))
    else:
        render.print_partitions(found, tty=stdout_tty())


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

    store = store_for(ctx, state, config, datasources)
    try:
        done = partitions.reset(store, dataset, dataids)
    finally:
        store.close()
    if json_output:
        typer.echo(json.dumps([partitions.partition_dict(p) for p in done]))
    else:
        typer.echo(f"{dataset}: {', '.join(dataids)} RESUBMIT")
