"""Executors: where a prepared task attempt runs, and how the runner learns that it ended.

The runner decides *what* runs and *when*; an executor decides *where*. `base.Executor` is the
seam: start a prepared attempt, report its end, terminate or kill it. Two run on this machine:
`local.ProcessExecutor` (a task that is a process: bash, command, spark, child runs) and
`local.ThreadExecutor` (a task that talks to a service from Python: SQL, TigerGraph's REST API).
A remote executor (Celery, SPEC §10) is a third implementation of the same interface.
"""
