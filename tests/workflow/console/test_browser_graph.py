"""The real pipeline's graph in a real browser, laid out by ELK (elkjs) in the page.

The pipeline definition (`render_definition(load_config(None, []))`) is registered in an
engine and run with an empty input, so it fails in its first state; its execution page
draws all 56 states. The test reads the drawn SVG back and checks what makes the graph
readable: no boxes overlapping, every edge orthogonal, no edge through a box that is not
its own end (or a group around one), Catch edges dashed, Choice edges labelled, the flow
top to bottom. A screenshot and the measured figures (size, crossings, layout time) go to
build/screenshots/.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workflow.config import load_config
from workflow.definition import render_definition
from workflow.local.services import local_engine

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = Path(__file__).resolve().parents[3] / "build" / "screenshots"
TOKEN = "test-token-0123456789"  # conftest.TOKEN

READ_DRAWING = """() => {
  const svg = document.querySelector("svg.graph");
  const number = (element, name) => parseFloat(element.getAttribute(name));
  const boxes = Array.from(svg.querySelectorAll("g.state")).map((g) => {
    const rect = g.querySelector(":scope > rect");
    return {id: g.dataset.id || g.dataset.state, name: g.dataset.state, group: g.classList.contains("group"),
            x: number(rect, "x"), y: number(rect, "y"), width: number(rect, "width"), height: number(rect, "height")};
  });
  const edges = Array.from(svg.querySelectorAll("g.edge")).map((g) => ({
    kind: Array.from(g.classList).find((name) => name.startsWith("edge-")).slice(5),
    source: g.dataset.source, target: g.dataset.target,
    d: g.querySelector("path").getAttribute("d"),
    dash: getComputedStyle(g.querySelector("path")).strokeDasharray,
    label: (g.querySelector(".edge-label") || {}).textContent || ""}));
  return {width: number(svg, "width"), height: number(svg, "height"), layoutMs: svg.dataset.layoutMs, boxes, edges};
}"""


RELAYOUT = """async (arn) => {
  const graph = await (await fetch(`/api/graph?arn=${arn}`)).json();
  const times = [];
  for (let run = 0; run < 3; run++) {
    const started = performance.now();
    await layoutEngine.layout(elkGraph(graph));
    times.push(Math.round(performance.now() - started));
  }
  return times;
}"""


def test_crossings_are_counted() -> None:
    cross = {"kind": "next", "d": "M 0 10 L 20 10"}, {"kind": "next", "d": "M 10 0 L 10 5 L 10 20"}
    touch = {"kind": "next", "d": "M 0 10 L 20 10"}, {"kind": "next", "d": "M 10 10 L 10 20"}
    assert _crossings(list(cross)) == 1 and _crossings(list(touch)) == 0


def _segments(path: str) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The straight pieces of an `M x y L x y ...` path (graph.js draws edges so)."""
    words = path.replace("M", " M ").replace("L", " L ").split()
    points: list[list[tuple[float, float]]] = []
    for index in range(0, len(words), 3):
        command, x, y = words[index], float(words[index + 1]), float(words[index + 2])
        if command == "M":
            points.append([])
        points[-1].append((x, y))
    return [(a, b) for run in points for a, b in zip(run, run[1:]) if a != b]


def _through(segment: tuple[tuple[float, float], tuple[float, float]], box: dict[str, Any], inset: float = 1.0) -> bool:
    """Whether an axis-parallel segment enters the inside of a box (its border shrunk by `inset`)."""
    (x0, y0), (x1, y1) = segment
    left, right = box["x"] + inset, box["x"] + box["width"] - inset
    top, bottom = box["y"] + inset, box["y"] + box["height"] - inset
    return min(x0, x1) < right and max(x0, x1) > left and min(y0, y1) < bottom and max(y0, y1) > top


def _crossings(edges: list[dict[str, Any]]) -> int:
    """Points where a horizontal piece of one edge crosses a vertical piece of another, inside both."""
    pieces = [(index, segment) for index, edge in enumerate(edges) for segment in _segments(edge["d"])]
    count = 0
    for first, ((ax0, ay0), (ax1, ay1)) in pieces:
        if abs(ay0 - ay1) > 0.01:
            continue  # not horizontal
        for second, ((bx0, by0), (bx1, by1)) in pieces:
            if first == second or abs(bx0 - bx1) > 0.01:
                continue
            if min(ax0, ax1) + 0.5 < bx0 < max(ax0, ax1) - 0.5 and min(by0, by1) + 0.5 < ay0 < max(by0, by1) - 0.5:
                count += 1
    return count


def _around(group: dict[str, Any], node_id: str) -> bool:
    return node_id == group["id"] or node_id.startswith(group["id"] + "/")


def _states(machine: dict[str, Any]) -> list[str]:
    """Every state name, nested ones (Map processors, Parallel branches) included."""
    names = []
    for name, state in machine["States"].items():
        names.append(name)
        for inner in [state.get("ItemProcessor") or state.get("Iterator") or {}] + list(state.get("Branches") or []):
            if inner:
                names += _states(inner)
    return names


def _check_drawing(drawing: dict[str, Any]) -> None:
    """No box overlaps another unless one is a group around the other; every edge orthogonal
    and clear of every box that is not its own end (or a group around one)."""
    boxes, edges = drawing["boxes"], drawing["edges"]
    for first in boxes:  # no box overlaps another, unless one is a group around the other
        for second in boxes:
            if first is not second and not _around(first, second["id"]) and not _around(second, first["id"]):
                overlap_x = min(first["x"] + first["width"], second["x"] + second["width"]) - max(first["x"], second["x"])
                overlap_y = min(first["y"] + first["height"], second["y"] + second["height"]) - max(first["y"], second["y"])
                assert overlap_x <= 0 or overlap_y <= 0, (first["id"], second["id"])
    through = []
    for edge in edges:
        segments = _segments(edge["d"])
        assert segments, edge
        assert all(abs(x0 - x1) < 0.01 or abs(y0 - y1) < 0.01 for (x0, y0), (x1, y1) in segments), edge  # orthogonal
        for box in boxes:
            if _around(box, edge["source"]) or _around(box, edge["target"]):
                continue
            through += [(edge["source"], edge["target"], box["id"]) for segment in segments if _through(segment, box)]
    assert through == [], through  # no edge runs through a box that is not its own end (or a group around one)


def test_the_pipeline_graph(setup: Any, console: str, page: Any) -> None:
    machine = render_definition(load_config(None, []))
    engine = local_engine()  # the same store as setup.engine's (DDCICD_HOME), with local SageMaker
    arn = engine.create_state_machine("pipeline", machine)
    run = engine.run_execution(arn, {}, name="no-input")  # Process finds no RawDataUri in the input
    assert run["status"] == "FAILED", run
    page.goto(f"{console}/?token={TOKEN}")
    page.click("tr[data-execution='no-input'] a")
    page.wait_for_selector("svg.graph g.state.status-failed[data-state='Process']")
    drawing = page.evaluate(READ_DRAWING)
    assert sorted(box["name"] for box in drawing["boxes"]) == sorted(_states(machine))
    boxes, edges = drawing["boxes"], drawing["edges"]
    _check_drawing(drawing)
    catch = [edge for edge in edges if edge["kind"] == "catch"]
    assert catch and all(edge["dash"] not in ("", "none") for edge in catch)  # Catch edges are dashed
    labelled = [edge for edge in edges if edge["kind"] in ("choice", "default")]
    assert labelled and all(edge["label"] for edge in labelled)
    place = {box["name"]: box for box in boxes}
    chain = ["Process", "Train", "CreateModel", "DescribeStagingEndpoint", "Evaluate", "LoadTest", "SloGate",
             "DescribeProductionEndpoint", "DeleteStagingEndpoint", "PipelineSucceeded"]  # fmt: skip
    assert [place[name]["y"] for name in chain] == sorted(place[name]["y"] for name in chain)  # top to bottom
    crossings = _crossings(edges)
    assert crossings <= 12, crossings
    page.evaluate("() => { const box = document.getElementById('graph'); box.style.maxHeight = 'none'; box.style.overflow = 'visible'; box.style.width = 'max-content';"
                  " box.parentElement.style.display = 'block'; document.getElementById('state-panel').style.display = 'none'; }")  # the whole graph, not its scroll box
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("svg.graph").screenshot(path=str(SCREENSHOTS / "console-pipeline-graph.png"))
    again = page.evaluate(RELAYOUT, page.url.split("#/execution/", 1)[1])  # ELK warmed up: the layout alone
    figures = {"width": drawing["width"], "height": drawing["height"], "layoutMs": float(drawing["layoutMs"]), "relayoutMs": again,
               "states": len(boxes), "edges": len(edges), "crossings": crossings}
    (SCREENSHOTS / "console-pipeline-graph.json").write_text(json.dumps(figures, indent=2))


def test_without_the_layout_library_the_page_says_what_to_do(setup: Any, console: str, fail: Any, page: Any) -> None:
    """A checkout where `make install` has not copied elkjs yet: a message, not a blank box."""
    fail("first-try")
    page.route("**/static/elk.bundled.js", lambda route: route.fulfill(status=404, body="no static file"))
    page.goto(f"{console}/?token={TOKEN}")
    page.click("tr[data-execution='first-try'] a")
    page.locator("#graph", has_text="/static/elk.bundled.js is missing: run `make install`").wait_for()
    page.wait_for_selector("#history-body >> text=ExecutionFailed")  # the rest of the page works


PARALLEL = {
    "StartAt": "Both",
    "States": {
        "Both": {"Type": "Parallel", "Next": "End", "Branches": [
            {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "Next": "Left2"}, "Left2": {"Type": "Pass", "End": True}}},
            {"StartAt": "Right", "States": {"Right": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": {
                "StartAt": "Inner", "States": {"Inner": {"Type": "Pass", "End": True}}}, "End": True}}},
        ]},
        "End": {"Type": "Succeed"},
    },
}  # fmt: skip


def test_parallel_branches_hold_their_states(setup: Any, console: str, page: Any) -> None:
    arn = setup.engine.create_state_machine("parallel", PARALLEL)
    assert setup.engine.run_execution(arn, {"items": [1, 2]}, name="both")["status"] == "SUCCEEDED"
    page.goto(f"{console}/?token={TOKEN}")
    page.click("tr[data-execution='both'] a")
    page.wait_for_selector("svg.graph g.group.status-succeeded[data-state='Both']")
    drawing = page.evaluate(READ_DRAWING)
    _check_drawing(drawing)
    place = {box["id"]: box for box in drawing["boxes"]}
    branches = page.evaluate("""() => Array.from(document.querySelectorAll("svg.graph rect.branch")).map((rect) =>
        ({id: rect.dataset.id, x: +rect.getAttribute("x"), y: +rect.getAttribute("y"),
          width: +rect.getAttribute("width"), height: +rect.getAttribute("height")}))""")
    assert [branch["id"] for branch in branches] == ["Both/0", "Both/1"]
    for outer, inner in [("Both", "Both/0/Left"), ("Both", "Both/1/Right/Inner"), ("Both/1/Right", "Both/1/Right/Inner")]:
        assert _contains(place[outer], place[inner]), (outer, inner)
    for branch in branches:
        assert _contains(place["Both"], branch)
        assert _contains(branch, place[branch["id"] + ("/Left" if branch["id"].endswith("0") else "/Right")])
    assert place["End"]["y"] >= place["Both"]["y"] + place["Both"]["height"]  # below the whole group
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("svg.graph").screenshot(path=str(SCREENSHOTS / "console-parallel-graph.png"))


def _contains(outer: dict[str, Any], inner: dict[str, Any]) -> bool:
    return (outer["x"] <= inner["x"] and inner["x"] + inner["width"] <= outer["x"] + outer["width"]
            and outer["y"] <= inner["y"] and inner["y"] + inner["height"] <= outer["y"] + outer["height"])  # fmt: skip
