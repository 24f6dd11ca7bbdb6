"""The `mflow` command: Typer parses, the core does the work, errors become exit codes.

`mflow [--config F] [--taskfile F] [--datasources F] [options]` runs the DAG, exactly as
`mflow run ...` does (the seed tool's form). One module per group of commands:

    app.py         the app, the shared options, opening the store
    dag.py         mflow [run], validate, graph
    runs.py        runs, status, logs, stop, dags, prune
    jobs.py        jobs ..., cluster ..., scheduler
    serving.py     serve (HTTP API, web view), worker (Celery)
    partitions.py  datasets ..., data ..., runjob
    admin.py       db init, crypt ...
    values.py      option values without pydantic (MflowTyper)

Modules beyond typer are imported inside the command that needs them: mflow is started
thousands of times a night by cron and by parent DAGs, and `mflow --help` must stay fast. For
the same reason these modules do not use `from __future__ import annotations`: Typer reads
every command's annotations each time it builds the CLI, and string annotations would be
evaluated again and again (20 ms per start); written plainly they are evaluated once, at
import. The apps are `MflowTyper`s, which keep pydantic out of the process (see values.py).
"""

import sys

from mflow.cli.app import app

# The command modules register their commands on `app` as they are imported, in this order
# (the order of `mflow --help`).
# isort: off
from mflow.cli import dag, runs, jobs, serving, partitions, admin  # noqa: F401

# isort: on
from mflow.errors import ExitCode, MflowError

__all__ = ["app", "main"]


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
