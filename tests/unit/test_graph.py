"""The DAG checks (unknown and self dependencies, every cycle with its path) and the
selections the runner uses (run order, --target upstream, downstream)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mflow import graph
from mflow.config import Source, TaskSpec
from mflow.errors import CycleError, GraphError, MissingDependency


def dag(*tasks: tuple[str, ...]) -> dict[str, TaskSpec]:
    """Tasks from (id, dependency, ...) tuples, in file order."""
    return {
        tid: TaskSpec(id=tid, type="bash", depends=deps, source=Source("t.json", f"$.tasks[{i}]"))
        for i, (tid, *rest) in enumerate(tasks)
        for deps in [tuple(rest)]
    }


def messages(tasks: dict[str, TaskSpec]) -> list[str]:
    return [str(p) for p in graph.check(tasks)]


def test_acyclic_dag_with_known_dependencies_has_no_problem() -> None:
    assert graph.check(dag(("a",), ("b", "a"), ("c", "a"), ("d", "b", "c"))) == []


def test_every_unknown_dependency_is_reported_not_only_the_first() -> None:
    tasks = dag(("a", "x"), ("b", "a", "y", "z"))
    assert messages(tasks) == [
        "t.json $.tasks[0].depends[0]: unknown task 'x' in task 'a' (known: a, b)",
        "t.json $.tasks[1].depends[1]: unknown task 'y' in task 'b' (known: a, b)",
        "t.json $.tasks[1].depends[2]: unknown task 'z' in task 'b' (known: a, b)",
    ]
    assert all(isinstance(p, MissingDependency) for p in graph.check(tasks))


def test_known_list_is_cut_after_ten_names() -> None:
    tasks = dag(*[(f"t{i}",) for i in range(12)], ("last", "nope"))
    assert messages(tasks) == [
        "t.json $.tasks[12].depends[0]: unknown task 'nope' in task 'last' "
        "(known: t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, …)"
    ]


def test_self_dependency_is_reported_once_and_not_as_a_cycle() -> None:
    problems = graph.check(dag(("a",), ("b", "a", "b")))
    assert [str(p) for p in problems] == [
        "t.json $.tasks[1].depends[1]: task depends on itself in task 'b'"
    ]
    assert type(problems[0]) is GraphError


def test_two_task_cycle_is_printed_as_a_path() -> None:
    assert messages(dag(("a", "b"), ("b", "a"))) == [
        "t.json $.tasks[0].depends[0]: dependency cycle a -> b -> a (each task depends on the next)"
    ]


def test_cycle_error_lists_cycle_members_in_dependency_order() -> None:
    (error,) = graph.check(dag(("start",), ("a", "c", "start"), ("b", "a"), ("c", "b")))
    assert isinstance(error, CycleError)
    assert error.cycle == ["a", "c", "b"]
    assert str(error) == (
        "t.json $.tasks[1].depends[0]: dependency cycle a -> c -> b -> a "
        "(each task depends on the next)"
    )


def test_two_separate_cycles_are_both_reported_in_file_order() -> None:
    tasks = dag(("ok",), ("p", "q"), ("q", "p"), ("x", "z", "ok"), ("y", "x"), ("z", "y"))
    assert messages(tasks) == [
        "t.json $.tasks[1].depends[0]: dependency cycle p -> q -> p "
        "(each task depends on the next)",
        "t.json $.tasks[3].depends[0]: dependency cycle x -> z -> y -> x "
        "(each task depends on the next)",
    ]


def test_tasks_downstream_of_a_cycle_are_not_reported_as_cycles() -> None:
    tasks = dag(("a", "b"), ("b", "a"), ("after", "a"), ("later", "after"))
    assert len(graph.check(tasks)) == 1


def test_tangled_cycles_name_one_path_and_count_the_rest() -> None:
    # a <-> b and b <-> c: one strongly connected group of three.
    (error,) = graph.check(dag(("a", "b"), ("b", "a", "c"), ("c", "b")))
    assert error.cycle == ["a", "b"]
    assert error.hint == "1 more task is in cycles with these"


def test_unknown_dependencies_and_cycles_are_reported_together() -> None:
    found = messages(dag(("a", "b", "ghost"), ("b", "a")))
    assert found == [
        "t.json $.tasks[0].depends[1]: unknown task 'ghost' in task 'a' (known: a, b)",
        "t.json $.tasks[0].depends[0]: dependency cycle a -> b -> a "
        "(each task depends on the next)",
    ]


def test_check_accepts_an_existing_networkx_graph() -> None:
    tasks = dag(("a", "b"), ("b", "a"))
    assert [str(p) for p in graph.check(tasks, graph.build(tasks))] == messages(tasks)


def test_build_leaves_out_unknown_and_self_edges() -> None:
    built = graph.build(dag(("a", "a"), ("b", "a", "ghost"), ("c", "b", "a", "a")))
    assert sorted(built.nodes) == ["a", "b", "c"]
    assert sorted(built.edges) == [("a", "b"), ("a", "c"), ("b", "c")]


def test_topological_order_keeps_file_order_where_dependencies_allow() -> None:
    tasks = dag(("late", "early"), ("x",), ("early",), ("y", "x"))
    assert graph.topological_order(tasks, graph.build(tasks)) == ["x", "early", "late", "y"]
    assert graph.topological_order(tasks) == ["x", "early", "late", "y"]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_topological_order_is_networkx_lexicographical_order_by_file_position(
    data: st.DataObject,
) -> None:
    import networkx as nx

    size = data.draw(st.integers(0, 25))
    names = data.draw(st.permutations([f"t{i}" for i in range(size)]))  # the file order
    # Each task depends only on tasks before it in another random order: always a DAG.
    rank = {name: i for i, name in enumerate(data.draw(st.permutations(names)))}
    rows = []
    for name in names:
        earlier = [n for n in names if rank[n] < rank[name]]
        deps = data.draw(st.lists(st.sampled_from(earlier), max_size=3)) if earlier else []
        rows.append((name, *deps))
    tasks = dag(*rows)
    position = {name: i for i, name in enumerate(tasks)}
    expected = list(nx.lexicographical_topological_sort(graph.build(tasks), key=position.get))
    assert graph.topological_order(tasks) == expected


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_file_listing_tasks_after_their_dependencies_is_its_own_run_order(
    data: st.DataObject,
) -> None:
    import networkx as nx

    names = [f"t{i}" for i in range(data.draw(st.integers(0, 25)))]
    rows = []
    for i, name in enumerate(names):
        # Earlier tasks, the task itself and unknown ones: the last two are not edges.
        choices = st.sampled_from([*names[: i + 1], "ghost"])
        rows.append((name, *data.draw(st.lists(choices, max_size=3))))
    tasks = dag(*rows)
    assert graph.topological_order(tasks) == names
    position = {name: i for i, name in enumerate(tasks)}
    assert names == list(nx.lexicographical_topological_sort(graph.build(tasks), key=position.get))


def test_topological_order_refuses_a_cycle() -> None:
    with pytest.raises(ValueError):
        graph.topological_order(dag(("a", "b"), ("b", "a")))


@pytest.fixture
def diamond() -> dict[str, TaskSpec]:
    return dag(("a",), ("b", "a"), ("c", "a"), ("d", "b", "c"), ("e", "d"), ("other",))


def test_upstream_is_the_target_and_everything_it_needs(diamond: dict[str, TaskSpec]) -> None:
    assert graph.upstream(diamond, ["d"]) == {"a", "b", "c", "d"}
    assert graph.upstream(diamond, ["b", "other"]) == {"a", "b", "other"}


def test_downstream_is_the_sources_and_everything_that_depends_on_them(
    diamond: dict[str, TaskSpec],
) -> None:
    assert graph.downstream(diamond, ["b"]) == {"b", "d", "e"}
    assert graph.downstream(diamond, ["a"]) == {"a", "b", "c", "d", "e"}
    assert graph.downstream(diamond, ["e", "other"]) == {"e", "other"}
    assert graph.downstream(diamond, ["ghost"]) == set()


def test_a_long_chain_is_checked_without_recursion() -> None:
    tasks = dag(("t0",), *[(f"t{i}", f"t{i - 1}") for i in range(1, 20_000)])
    assert graph.check(tasks) == []
