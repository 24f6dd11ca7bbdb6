"""Shared helpers of the benchmark scripts: DAG generation, timed runs, checks and tables.

The scripts compare mflow with GNU make on the same DAG, so everything here writes one DAG in
both forms (an mflow taskfile and a Makefile of phony targets whose recipe is exactly `true`,
which make executes without a shell), runs a command while measuring its wall time
(`time.perf_counter`), CPU time and peak RSS (`os.wait4`, through a tiny launcher so that the
figure is the command's own, needing nothing installed), and checks afterwards, untimed, that
every task really ran.

Only the standard library is used, so the scripts run with any Python that can start mflow.
An optional throw-away ZooKeeper server (Debian's `zookeeper` package, started the way the test
suite's `zookeeper_server` fixture does) lets `throughput.py --start-zookeeper` measure the
ZooKeeper store without any setup.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# A DAG is a list of (task id, ids it depends on), in an order where dependencies come first.
Dag = list[tuple[str, list[str]]]

RUN_SUMMARY = re.compile(r"^run (\S+) ", re.MULTILINE | re.IGNORECASE)


# ------------------------------------------------------------------------------- DAGs


def layered_dag(tasks: int, width: int, fanin: int, seed: int = 1) -> Dag:
    """Layers of `width` tasks; each task of a layer > 0 depends on `fanin` random distinct
    tasks of the layer before (all of them when that layer is smaller)."""
    rng = random.Random(seed)
    dag: Dag = []
    previous: list[str] = []
    for start in range(0, tasks, width):
        layer = [f"t{i}" for i in range(start, min(start + width, tasks))]
        for task in layer:
            deps = rng.sample(previous, min(fanin, len(previous))) if previous else []
            dag.append((task, deps))
        previous = layer
    return dag


def add_dag_options(parser: argparse.ArgumentParser, tasks: int) -> None:
    """--tasks, --width, --fanin, --seed: the arguments of `layered_dag`."""
    parser.add_argument("--tasks", type=int, default=tasks, help=f"tasks in the DAG ({tasks})")
    parser.add_argument("--width", type=int, default=100, help="tasks per layer (100)")
    parser.add_argument("--fanin", type=int, default=2, help="dependencies per task (2)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the edges (1)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--state and --keep, which every script that runs mflow takes."""
    parser.add_argument("--state", help="mflow state store URL (default: fresh SQLite per run)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")


def chain_dag(tasks: int) -> Dag:
    """t0 <- t1 <- ... : each task depends on the one before."""
    return [(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(tasks)]


def edge_count(dag: Dag) -> int:
    return sum(len(deps) for _, deps in dag)


def write_taskfile(path: Path, dag: Dag, command: str = "true") -> Path:
    """The DAG as an mflow taskfile of bash tasks running `command`."""
    tasks: list[dict[str, object]] = []
    for task, deps in dag:
        entry: dict[str, object] = {"id": task, "type": "bash", "command": command}
        if deps:
            entry["depends"] = deps
        tasks.append(entry)
    path.write_text(json.dumps({"tasks": tasks}, indent=1) + "\n")
    return path


def write_makefile(path: Path, dag: Dag, command: str = "true") -> Path:
    """The DAG as a Makefile: phony targets, the same edges, `all` depending on every sink.

    The recipe line is exactly the command; with no shell syntax in it, make runs it without
    a shell, as mflow does for a plain-words bash command.
    """
    has_dependents = {dep for _, deps in dag for dep in deps}
    sinks = [task for task, _ in dag if task not in has_dependents]
    names = [task for task, _ in dag]
    lines = [".PHONY: all"]
    lines += [".PHONY: " + " ".join(names[i : i + 50]) for i in range(0, len(names), 50)]
    lines += ["", "all: " + " ".join(sinks), ""]
    for task, deps in dag:
        lines.append(f"{task}: {' '.join(deps)}".rstrip())
        lines.append(f"\t{command}")
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------ running tools


def mflow_command() -> list[str]:
    """How to start mflow: the console script next to this Python, else `python -m mflow`."""
    script = Path(sys.executable).with_name("mflow")
    if script.exists():
        return [str(script)]
    found = shutil.which("mflow")
    return [found] if found else [sys.executable, "-m", "mflow"]


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without mflow settings that would redirect the store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFLOW_")}
    env.update(overrides)
    return env


@dataclass(frozen=True)
class Measured:
    """One timed process: wall seconds, CPU seconds (user + system, its reaped children
    included), peak RSS in MiB, exit code and its stdout."""

    seconds: float
    cpu_seconds: float
    max_rss_mib: float
    returncode: int
    stdout: str


# The measured command is started by this small launcher, not by the benchmark script itself:
# a child's ru_maxrss counts the memory of the process it was forked (or vforked) from up to
# its exec, so a command started from a script holding a 100,000-task DAG would inherit that
# script's size as its peak. The launcher (`python -S`, nothing imported) is ~8 MiB, and it
# also takes the two clock readings, right around posix_spawn and wait4.
_LAUNCHER = """
import os, sys, time
argv = sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as out:
    out.write(repr((seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                    os.waitstatus_to_exitcode(status))))
"""


def timed_run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
) -> Measured:
    """Run argv and measure it: wall time around spawn and reap, CPU and peak RSS from wait4.

    Output goes to a temporary file, not a pipe, so nothing has to be read while the command
    runs. Peak RSS includes a floor of about 8 MiB, the launcher's own (see `rss_floor`).
    """
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryFile() as out:
        result = Path(scratch) / "result"
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(result), *argv]
        code = subprocess.run(
            launcher,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out if capture else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
            check=False,
        ).returncode
        out.seek(0)
        text = out.read().decode(errors="replace")
        if code != 0 or not result.exists():
            sys.exit(f"could not run {' '.join(argv)}:\n{text[-2000:]}")
        seconds, cpu, max_rss_kib, returncode = ast.literal_eval(result.read_text())
    return Measured(seconds, cpu, max_rss_kib / 1024, returncode, text)


@functools.cache
def rss_floor() -> float:
    """Peak RSS in MiB that timed_run reports for `true`: the least any figure can be."""
    return timed_run(["true"], cwd=Path.cwd(), capture=False).max_rss_mib


def check_ok(measured: Measured, what: str) -> None:
    """Stop the benchmark when a timed run failed: its figures would mean nothing."""
    if measured.returncode != 0:
        sys.exit(f"{what} exited {measured.returncode}:\n{measured.stdout[-2000:]}")


def make_argv(makefile: Path, jobs: int) -> list[str]:
    return ["make", "-s", f"-j{jobs}", "-f", str(makefile), "all"]


def count_make_recipes(makefile: Path, jobs: int, cwd: Path) -> int:
    """Untimed: how many recipes make executes (`--trace` echoes each `true` line)."""
    argv = ["make", "--trace", f"-j{jobs}", "-f", str(makefile), "all"]
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True)
    return sum(1 for line in result.stdout.splitlines() if line.strip() == "true")


def check_make_recipes(makefile: Path, jobs: int, cwd: Path, expected: int) -> None:
    """Untimed: stop the benchmark unless make executes `expected` recipes."""
    recipes = count_make_recipes(makefile, jobs, cwd)
    if recipes != expected:
        sys.exit(f"make --trace ran {recipes} recipes of {makefile.name}, expected {expected}")


def time_make(makefile: Path, jobs: int, cwd: Path) -> Measured:
    """One timed `make -s -jJ` of the Makefile; a failure stops the benchmark."""
    measured = timed_run(make_argv(makefile, jobs), cwd=cwd)
    check_ok(measured, "make")
    return measured


def time_mflow(
    taskfile: Path, jobs: int, tmp: Path, name: str, tasks: int, state: str | None
) -> Measured:
    """One timed mflow run of the taskfile, a new run: with the default store in a fresh
    MFLOW_HOME (`tmp/home-NAME`), logs in `tmp/logs-NAME`. Checked afterwards, untimed: the
    run recorded `tasks` tasks, all SUCCESS."""
    env = clean_env(MFLOW_HOME=str(tmp / f"home-{name}"))
    argv = mflow_run_argv(taskfile, jobs, tmp / f"logs-{name}", state)
    measured = timed_run(argv, cwd=tmp, env=env)
    verify_mflow_run(measured, tasks, cwd=tmp, env=env, state=state)
    return measured


def mflow_run_argv(taskfile: Path, jobs: int, log_dir: Path, state: str | None) -> list[str]:
    argv = [*mflow_command(), "--quiet", "-j", str(jobs), "-f", str(taskfile)]
    if state:
        argv += ["--state", state]
    return [*argv, "--log-dir", str(log_dir)]


def run_id_of(measured: Measured, *, cwd: Path, env: Mapping[str, str], state: str | None) -> str:
    """The run id from mflow's summary line (`Run 7 SUCCESS ...`), else the latest run."""
    match = RUN_SUMMARY.search(measured.stdout)
    if match:
        return match.group(1)
    argv = [*mflow_command(), "runs", "--json", "-n", "1", *(["--state", state] if state else [])]
    out = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, text=True, check=True)
    return str(json.loads(out.stdout)[0]["id"])


def mflow_states(
    run_id: str, *, cwd: Path, env: Mapping[str, str], state: str | None
) -> dict[str, int]:
    """Untimed: the count of each task state in `mflow status RUN --json`."""
    argv = [*mflow_command(), "status", run_id, "--json"]
    if state:
        argv += ["--state", state]
    out = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, text=True, check=True)
    counts: dict[str, int] = {}
    for task in json.loads(out.stdout)["tasks"]:
        counts[task["state"]] = counts.get(task["state"], 0) + 1
    return counts


def verify_mflow_run(
    measured: Measured, expected: int, *, cwd: Path, env: Mapping[str, str], state: str | None
) -> str:
    """Untimed: the run recorded `expected` tasks, all SUCCESS; returns the run id."""
    check_ok(measured, "mflow")
    run_id = run_id_of(measured, cwd=cwd, env=env, state=state)
    counts = mflow_states(run_id, cwd=cwd, env=env, state=state)
    if counts != {"SUCCESS": expected}:
        sys.exit(f"mflow run {run_id}: expected {expected} SUCCESS tasks, status shows {counts}")
    return run_id


@contextmanager
def workdir(keep: bool, prefix: str) -> Iterator[Path]:
    """A scratch directory for the DAG files, stores and logs; removed unless keep.

    It is made in $BENCH_SCRATCH when set, else in the system's temporary directory. Its
    heading line gives the cost of creating a file there: mflow creates a log file per task,
    make none, and on some file systems that cost is anything but constant (ext4 without a
    journal, mounted with `discard`, skips recently deleted inodes one by one when it
    allocates a new one: 300-800 µs per file in a /tmp where test suites delete thousands of
    files, against 17 µs in a quiet directory of the same disk).
    """
    scratch = os.environ.get("BENCH_SCRATCH") or None
    if scratch:
        os.makedirs(scratch, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch))
    print(f"scratch {path}: {file_create_us(path):.0f} µs to create a file there")
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def file_create_us(directory: Path, files: int = 300) -> float:
    """Median microseconds to create (and close) an empty file in `directory`.

    The files stay (they go with the scratch directory): deleting them here would make the
    next files created nearby slower on the file systems described in `workdir`."""
    probe = directory / ".create-probe"
    probe.mkdir()
    times = []
    for i in range(files):
        start = time.perf_counter()
        os.close(os.open(probe / f"{i}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


# ---------------------------------------------------------------------------- figures


def shown_url(url: str | None, default: str = "SQLite (fresh per run)") -> str:
    """A store URL for printing, its password (if any) masked."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url) if url else default


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table: numbers right-aligned, text left-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) or (isinstance(value, str) and value[:1].isdigit())


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def when() -> str:
    """Date, CPUs and load average for the heading of every report (other work on the
    machine shows up in the figures; the load average says how much there was)."""
    stamp = time.strftime("%Y-%m-%d %H:%M %Z")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{stamp}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average {load}; peak RSS floor {rss_floor():.1f} MiB"
    )


# -------------------------------------------------------------------------- ZooKeeper

ZK_CONF_DIR = "/etc/zookeeper/conf"
ZK_JAR = "/usr/share/java/zookeeper.jar"
ZK_START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _zookeeper_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"ruok")
            return sock.recv(16) == b"imok"
    except OSError:
        return False


@contextmanager
def zookeeper_server(directory: Path) -> Iterator[str]:
    """A throw-away ZooKeeper server on a free port; yields a fresh `zk://` URL on it.

    Started like tests/conftest.py's `zookeeper_server` fixture (Debian's `zookeeper`
    package, `forceSync=no`), and stopped on exit.
    """
    java = shutil.which("java")
    if java is None or not os.path.exists(ZK_JAR):
        sys.exit(f"--start-zookeeper needs java and {ZK_JAR} (apt-get install zookeeper)")
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    (directory / "data").mkdir(exist_ok=True)
    config = directory / "zoo.cfg"
    config.write_text(
        "tickTime=2000\n"
        f"dataDir={directory / 'data'}\n"
        f"clientPort={port}\n"
        "clientPortAddress=127.0.0.1\n"
        "admin.enableServer=false\n"
        "4lw.commands.whitelist=*\n"
        "maxClientCnxns=0\n"
        "forceSync=no\n"
    )
    classpath = os.pathsep.join(p for p in (ZK_CONF_DIR, ZK_JAR) if os.path.exists(p))
    argv = [
        java,
        "-Xmx1g",  # bench/runjob.py keeps ~600,000 nodes: 256 MB ran out
        "-XX:+UseSerialGC",
        "-cp",
        classpath,
        f"-Dzookeeper.log.dir={directory}",
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        str(config),
    ]
    with (directory / "zookeeper.log").open("wb") as log:
        server = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=directory
        )
    try:
        deadline = time.monotonic() + ZK_START_TIMEOUT
        while not _zookeeper_answers(port):
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"ZooKeeper did not start; see {directory / 'zookeeper.log'}")
            time.sleep(0.1)
        yield f"zk://127.0.0.1:{port}/bench-{uuid.uuid4().hex[:8]}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
