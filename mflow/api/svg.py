"""Pictures of a run for the web view, as SVG text: the DAG in layers (left to right, each task
after the tasks it waits for), coloured by state, and a Gantt strip of the tasks' durations.

Plain functions of data (`dag_svg(edges, states, href)`, `gantt_svg(rows, start, end)`): no
drawing library, nothing for the browser to run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

BOX_W, BOX_H = 168, 30
GAP_X, GAP_Y = 56, 14
PAD = 12
MAX_DRAWN = 400  # a DAG with more tasks is listed, not drawn
CHARS = 22  # a label longer than this is cut (the full id is in the tooltip)


def layers(edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tasks by depth (the longest chain of dependencies before each), in each layer ordered
    by the mean position of their dependencies so edges cross less. A cycle (never in a valid
    DAG) is broken where it is met."""
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def depth_of(task: str) -> int:
        if task in depth:
            return depth[task]
        if task in visiting:
            return 0
        visiting.add(task)
        deps = [d for d in edges.get(task, ()) if d in edges]
        depth[task] = 1 + max((depth_of(d) for d in deps), default=-1)
        visiting.discard(task)
        return depth[task]

    for task in edges:
        depth_of(task)
    result: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for task in edges:
        result[depth[task]].append(task)
    position: dict[str, float] = {t: i for i, t in enumerate(result[0] if result else [])}
    for layer in result[1:]:

        def mean(task: str) -> float:
            deps = [position[d] for d in edges.get(task, ()) if d in position]
            return sum(deps) / len(deps) if deps else 0.0

        layer.sort(key=mean)
        position.update({t: i for i, t in enumerate(layer)})
    return result


@dataclass(frozen=True)
class Box:
    x: float
    y: float


def dag_svg(
    edges: Mapping[str, Sequence[str]],
    states: Mapping[str, str],
    href: Callable[[str], str],
    titles: Mapping[str, str] | None = None,
) -> str | None:
    """The DAG as an SVG element; None when it has more than MAX_DRAWN tasks."""
    if not edges or len(edges) > MAX_DRAWN:
        return None
    columns = layers(edges)
    tallest = max(len(c) for c in columns)
    width = PAD * 2 + len(columns) * BOX_W + (len(columns) - 1) * GAP_X
    height = PAD * 2 + tallest * BOX_H + (tallest - 1) * GAP_Y
    boxes: dict[str, Box] = {}
    for col, tasks in enumerate(columns):
        offset = (tallest - len(tasks)) * (BOX_H + GAP_Y) / 2  # centre short columns
        for row, task in enumerate(tasks):
            boxes[task] = Box(PAD + col * (BOX_W + GAP_X), PAD + offset + row * (BOX_H + GAP_Y))
    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}" role="img" '
        f'aria-label="the DAG of the run, {len(edges)} tasks">',
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" class="arrowhead"/>'
        "</marker></defs>",
    ]
    for task, deps in edges.items():
        to = boxes[task]
        for dep in deps:
            if dep not in boxes:
                continue
            fr = boxes[dep]
            x1, y1 = fr.x + BOX_W, fr.y + BOX_H / 2
            x2, y2 = to.x, to.y + BOX_H / 2
            bend = max(GAP_X / 2, (x2 - x1) / 2)
            parts.append(
                f'<path class="edge" d="M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} '
                f'{x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}" marker-end="url(#arrow)"/>'
            )
    for task, box in boxes.items():
        state = states.get(task, "NONE")
        label = task if len(task) <= CHARS else task[: CHARS - 1] + "…"
        title = (titles or {}).get(task, f"{task}: {state}")
        parts.append(
            f'<a href="{escape(href(task))}" class="node st-{escape(state)}">'
            f"<title>{escape(title)}</title>"
            f'<rect x="{box.x:.0f}" y="{box.y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{box.x + 10:.0f}" y="{box.y + BOX_H / 2 + 4:.0f}">{escape(label)}</text>'
            "</a>"
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Bar:
    task: str
    state: str
    start: float | None
    end: float | None  # None: still running (drawn up to `now`)
    href: str


GANTT_W = 900
BAR_H = 14
LABEL_W = 180


def gantt_svg(bars: Sequence[Bar], now: float) -> str | None:
    """Each started task as a bar from its start to its end on the run's time axis."""
    drawn = [b for b in bars if b.start is not None]
    if not drawn or len(drawn) > MAX_DRAWN:
        return None
    t0 = min(b.start for b in drawn if b.start is not None)
    t1 = max((b.end or now) for b in drawn)
    span = max(t1 - t0, 1e-3)
    scale = (GANTT_W - LABEL_W - PAD) / span
    height = PAD * 2 + len(drawn) * (BAR_H + 4)
    parts = [
        f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{GANTT_W}" '
        f'height="{height}" viewBox="0 0 {GANTT_W} {height}" role="img" '
        f'aria-label="task durations, {span:.1f} s in all">'
    ]
    for i, bar in enumerate(sorted(drawn, key=lambda b: (b.start, b.task))):
        assert bar.start is not None
        y = PAD + i * (BAR_H + 4)
        x = LABEL_W + (bar.start - t0) * scale
        w = max(((bar.end or now) - bar.start) * scale, 2)
        seconds = (bar.end or now) - bar.start
        label = bar.task if len(bar.task) <= CHARS else bar.task[: CHARS - 1] + "…"
        parts.append(
            f'<a href="{escape(bar.href)}" class="bar st-{escape(bar.state)}">'
            f"<title>{escape(bar.task)}: {escape(bar.state)}, {seconds:.2f} s</title>"
            f'<text x="{LABEL_W - 8}" y="{y + BAR_H - 3}" text-anchor="end">{escape(label)}'
            f'</text><rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" rx="3"/></a>'
        )
    parts.append(
        f'<text class="axis" x="{GANTT_W - PAD}" y="{height - 2}" text-anchor="end">'
        f"{span:.1f} s</text></svg>"
    )
    return "".join(parts)
