"""Hypothesis strategies for mflow's input files (importable as `strategies`: pyproject sets
pythonpath to tests/).

- `json_values`: any JSON document (`st.recursive`), no NaN or infinity.
- `task_documents()`: tasks files that are valid, nearly valid or broken in the ways people
  break them: random ids and dependencies (unknown ones, self-dependencies, cycles), known and
  unknown types, type fields in and out of place, typos, wrong value types.
- `config_documents()`, `datasources_documents()`: the same for the other two files.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def one_in(n: int, draw: st.DrawFn) -> bool:
    """True once in about n draws (st.integers favours its bounds, so it would be too often)."""
    return draw(st.sampled_from([True] + [False] * (n - 1)))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

# Ids: mostly a small pool (so dependencies hit and duplicates happen), sometimes anything.
valid_ids = st.sampled_from(["a", "b", "c", "d", "task-1", "t.2", "x_3"])
ids = st.one_of(*[valid_ids] * 6, st.text(max_size=6))
task_types = st.sampled_from(
    ["bash", "command", "sql", "oracle", "spark", "mflow", "gsql_batch", "gsql_stream"]
) | st.sampled_from(["", "bsh", "nope", "BASH"])

# A plausible value of each field, used both where it belongs and where it does not.
field_values: dict[str, st.SearchStrategy[Any]] = {
    "command": st.sampled_from(["echo hi", "true", ""]),
    "args": st.sampled_from([["-l", 1], [], "x", [None]]),
    "file": st.sampled_from(["a.sql", ""]),
    "db": st.sampled_from(["main", "missing", ""]),
    "retries": st.sampled_from([0, 2, -1, 1.5, True, "3"]),
    "retry_delay": st.sampled_from([0, 10, 2.5, "30s", "2h", "1d", "abc", "5x", -1, None]),
    "timeout": st.sampled_from([1, "30m", "2h", "", "1 h", -3, [1]]),
    "env": st.sampled_from(
        [
            {"A": "1"},
            {"A": 1, "B": True},
            [{"key": "A", "value": "x"}],
            [{"key": "A"}],
            [{"key": "1A", "value": "x"}],
            {"bad name": "x"},
            {"A": None},
            "A=1",
        ]
    ),
    "cwd": st.sampled_from([".", "sub", "", 5]),
    "description": st.sampled_from(["a task", 7]),
    "master": st.sampled_from(["local[2]", "yarn", 3]),
    "deploy-mode": st.sampled_from(["client", "cluster"]),
    "driver-memory": st.sampled_from(["1g", 2, None]),
    "class": st.sampled_from(["org.Main"]),
    "verbose": st.sampled_from(["yes", "no", True, "maybe"]),
    "supervise": st.sampled_from(["yes", 1]),
    "confs": st.sampled_from(
        [
            [{"key": "spark.x", "value": "4g"}],
            {"spark.x": 4},
            [{"key": "", "value": "1"}],
            [{"k": "v"}],
            "spark.x=4",
        ]
    ),
    "ingestor-file": st.sampled_from(["job.py", "", 3]),
    "parameters": st.sampled_from(
        [[{"parameter": "--date"}, {"parameter": 2026}], ["p", 1], [{"param": "x"}], "p"]
    ),
    "taskfile": st.sampled_from(["child.json", "missing.json", ""]),
    "config": st.sampled_from(["config.json", 1]),
    "datasources": st.sampled_from(["missing.json"]),
    "graph": st.sampled_from(["g", ""]),
    "job_name": st.sampled_from(["load_job"]),
    "files": st.sampled_from([{"f1": "/data/x.csv"}, {"f1": 1}, []]),
    "gsql": st.sampled_from(["gsql"]),
}
typos = st.sampled_from(["depend", "dependencies", "comand", "ingestor_file", "timout", "x"])

# A valid task of each type, before any mutation.
TEMPLATES: dict[str, dict[str, Any]] = {
    "bash": {"command": "echo hi"},
    "command": {"command": "ls", "args": ["-l", 1]},
    "sql": {"command": "select 1", "db": "main"},
    "oracle": {"file": "a.sql", "db": "main"},
    "spark": {"ingestor-file": "job.py", "master": "local[2]", "confs": {"spark.x": "1"}},
    "mflow": {"taskfile": "child.json"},
    "gsql_batch": {"graph": "g", "job_name": "load_job"},
    "gsql_stream": {"graph": "g", "job_name": "load_job", "db": "tg"},
}


@st.composite
def tasks(draw: st.DrawFn, pool: list[str], clean: bool = False) -> Any:
    """One task: a valid template of a random type, then (unless `clean`) a few random
    mutations."""
    if not clean and one_in(31, draw):
        return draw(json_values)  # not even an object
    kind = draw(task_types)
    task: dict[str, Any] = {"id": draw(st.sampled_from(pool)), "type": kind}
    task.update(TEMPLATES.get(kind, {"command": "x"}))
    if draw(st.booleans()):
        task["depends"] = draw(st.lists(st.sampled_from([*pool, *pool, "zz"]), max_size=3))
    for _ in range(0 if clean else draw(st.sampled_from([0, 1, 1, 2, 3]))):
        action = draw(st.sampled_from(range(11)))
        if action <= 4:  # a field, maybe one of another type
            name = draw(st.sampled_from(sorted(field_values)))
            task[name] = draw(field_values[name])
        elif action == 5 and task:  # drop a field
            del task[draw(st.sampled_from(sorted(task)))]
        elif action == 6:
            task[draw(typos)] = draw(json_scalars)
        elif action == 7:
            task["type"] = draw(st.sampled_from([5, None, ["bash"], "x y"]))
        elif action == 8:
            task["id"] = draw(st.sampled_from([7, "", "a b", None, True]) | st.text(max_size=6))
        elif action == 9:
            task["depends"] = draw(st.sampled_from(["a", [1], [["a"]], None]))
        else:
            task["depends"] = [task["id"]] if "id" in task else []
    return task


@st.composite
def task_documents(draw: st.DrawFn) -> Any:
    """A tasks document: a third of them valid as far as the schema goes (their ids,
    dependencies and types can still be wrong), most of the rest nearly valid, a few
    anything at all."""
    clean = one_in(3, draw)
    if not clean and one_in(16, draw):
        return draw(json_values)
    pool = draw(st.lists(valid_ids, min_size=1, max_size=6))
    doc: dict[str, Any] = {"tasks": draw(st.lists(tasks(pool, clean), max_size=6))}
    if draw(st.booleans()):
        doc["name"] = draw(st.sampled_from(["nightly", "night-2"]))
    if draw(st.booleans()):
        doc["defaults"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "retries": st.sampled_from([0, 2]),
                    "retry_delay": st.sampled_from([1, "30s"]),
                    "timeout": st.sampled_from(["1h", 90]),
                    "env": st.sampled_from([{"A": "1"}, [{"key": "B", "value": 2}]]),
                    "cwd": st.just("."),
                },
            )
        )
    if clean:
        return doc
    if one_in(4, draw):
        doc["name"] = draw(st.sampled_from(["bad name", 3, ""]))
    if one_in(4, draw):
        doc.setdefault("defaults", {})[draw(typos)] = draw(json_scalars)
    if one_in(7, draw):
        doc[draw(typos)] = draw(json_values)
    if one_in(11, draw):
        doc["tasks"] = draw(json_values)
    return doc


@st.composite
def config_documents(draw: st.DrawFn) -> Any:
    if one_in(11, draw):
        return draw(json_values)
    values = {
        "max_process_concurrency": st.sampled_from([1, 3, 0, -1, 2.5, "3", 10**20]),
        "check_new_config_interval": st.sampled_from([1, 0.5, 0, -1, "1", 10**6]),
        "log_directory": st.sampled_from(["./logs/", "logs", "", 5]),
        "env": field_values["env"],
        "state": st.sampled_from(["sqlite:///state.db", "", 1]),
        "retries": field_values["retries"],
        "retry_delay": field_values["retry_delay"],
        "timeout": field_values["timeout"],
        "max_concurrency": st.just(3),  # a typo
    }
    names = draw(st.lists(st.sampled_from(sorted(values)), max_size=5, unique=True))
    return {name: draw(values[name]) for name in names}


SECRET = "s3cr3t-Pa55"  # never to appear in a message


@st.composite
def connections(draw: st.DrawFn) -> Any:
    conn: dict[str, Any] = {"name": draw(st.sampled_from(["main", "tg", "bad name", "", 4]))}
    form = draw(st.sampled_from(range(4)))
    if form == 0:
        conn.update(connection_string="db:1521/svc", user="u", password=SECRET)
    elif form == 1:
        conn["url"] = f"postgresql+psycopg://u:{SECRET}@db/x"
    elif form == 2:
        conn.update(kind="tigergraph", host="tg", port=9000, secret=SECRET)
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["password", "secret", "token", "encrypted_password"]))
        conn[name] = draw(st.sampled_from([SECRET, [SECRET], {"v": SECRET}, 1234, "", None]))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["url", "connection_string", "kind", "port", "passwd"]))
        conn[name] = draw(st.sampled_from([[1], 1234, "", "mysql", None, "db:1521/svc"]))
    return conn


@st.composite
def datasources_documents(draw: st.DrawFn) -> Any:
    if one_in(11, draw):
        return draw(json_values)
    return {"connections": draw(st.lists(connections(), max_size=3))}
