"""The layered layout: every state drawn once, no overlapping boxes, edges joining their boxes."""
from __future__ import annotations

import json
from typing import Any

import pytest

from workflow.config import load_config
from workflow.console.graph import choice_label, graph_json

LOOP = {
    "StartAt": "Describe",
    "States": {
        "Describe": {"Type": "Pass", "Next": "Ready"},
        "Ready": {"Type": "Choice", "Choices": [{"Variable": "$.status", "StringEquals": "InService", "Next": "Use"}],
                  "Default": "Wait"},
        "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Describe"},
        "Use": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "CleanUp"}], "Next": "Done"},
        "CleanUp": {"Type": "Pass", "Next": "Failed"},
        "Failed": {"Type": "Fail"},
        "Done": {"Type": "Succeed"},
    },
}  # fmt: skip

PARALLEL = {
    "StartAt": "Both",
    "States": {
        "Both": {"Type": "Parallel", "Next": "End", "Branches": [
            {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "Next": "Left2"}, "Left2": {"Type": "Pass", "End": True}}},
            {"StartAt": "Right", "States": {"Right": {"Type": "Map", "ItemProcessor": {"StartAt": "Inner", "States": {
                "Inner": {"Type": "Pass", "End": True}}}, "End": True}}},
        ]},
        "End": {"Type": "Succeed"},
    },
}  # fmt: skip


def _boxes(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["id"]: node for node in graph["nodes"] if node["name"] is not None}


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


def _inside(inner: dict[str, Any], outer: dict[str, Any]) -> bool:
    return (outer["x"] <= inner["x"] and inner["x"] + inner["width"] <= outer["x"] + outer["width"]
            and outer["y"] <= inner["y"] and inner["y"] + inner["height"] <= outer["y"] + outer["height"])  # fmt: skip


def _check_layout(graph: dict[str, Any]) -> None:
    boxes = _boxes(graph)
    for first in boxes.values():
        for second in boxes.values():
            if first is second or _inside(first, second) or _inside(second, first):
                continue
            assert not _overlap(first, second), (first["id"], second["id"])
        assert 0 <= first["x"] and first["x"] + first["width"] <= graph["width"] + 0.01
        assert 0 <= first["y"] and first["y"] + first["height"] <= graph["height"] + 0.01
    for edge in graph["edges"]:
        source, target = boxes[edge["source"]], boxes[edge["target"]]
        (x0, y0), (x1, y1) = edge["points"][0], edge["points"][-1]
        assert source["x"] <= x0 <= source["x"] + source["width"] and source["y"] <= y0 <= source["y"] + source["height"], edge
        assert target["x"] <= x1 <= target["x"] + target["width"] and target["y"] <= y1 <= target["y"] + target["height"], edge


def test_every_state_and_transition_is_drawn_once() -> None:
    graph = graph_json(LOOP)
    assert sorted(node["name"] for node in graph["nodes"] if node["name"]) == sorted(LOOP["States"])
    kinds = {(edge["source"], edge["target"]): edge["kind"] for edge in graph["edges"]}
    assert kinds == {("Describe", "Ready"): "next", ("Ready", "Use"): "choice", ("Ready", "Wait"): "default",
                     ("Wait", "Describe"): "next", ("Use", "CleanUp"): "catch", ("Use", "Done"): "next",
                     ("CleanUp", "Failed"): "next"}  # fmt: skip
    _check_layout(graph)


def test_flow_goes_down_and_loops_come_back_up() -> None:
    boxes = _boxes(graph_json(LOOP))
    assert boxes["Describe"]["y"] < boxes["Ready"]["y"] < boxes["Wait"]["y"]
    assert boxes["Ready"]["y"] < boxes["Use"]["y"] < boxes["Done"]["y"]
    loop = next(edge for edge in graph_json(LOOP)["edges"] if edge["source"] == "Wait")
    assert loop["points"][0][1] > loop["points"][-1][1]  # from Wait up to Describe


def test_choice_edges_are_labelled() -> None:
    labels = {edge["target"]: edge["label"] for edge in graph_json(LOOP)["edges"]}
    assert labels["Use"] == '$.status == "InService"' and labels["Wait"] == "default"


@pytest.mark.parametrize(("rule", "text"), [
    ({"Variable": "$.a", "NumericGreaterThanEquals": 0.9}, "$.a >= 0.9"),
    ({"Variable": "$.a", "NumericLessThanPath": "$.b"}, "$.a < $.b"),
    ({"Variable": "$.a", "IsPresent": True}, "$.a IsPresent"),
    ({"Not": {"Variable": "$.a", "BooleanEquals": True}}, "not($.a == true)"),
    ({"And": [{"Variable": "$.a", "IsNull": False}, {"Variable": "$.b", "IsNull": False}]}, "and(2 rules)"),
    ({"Condition": "{% $states.input.n > 1 %}"}, "$states.input.n > 1"),
])  # fmt: skip
def test_choice_label(rule: dict[str, Any], text: str) -> None:
    assert choice_label(rule) == text


def test_parallel_branches_and_maps_are_groups_holding_their_states() -> None:
    graph = graph_json(PARALLEL)
    boxes = _boxes(graph)
    assert boxes["Both"]["group"] and boxes["Both/1/Right"]["group"] and not boxes["Both/0/Left"]["group"]
    for inner in ("Both/0/Left", "Both/0/Left2", "Both/1/Right", "Both/1/Right/Inner"):
        assert _inside(boxes[inner], boxes["Both"]), inner
    assert _inside(boxes["Both/1/Right/Inner"], boxes["Both/1/Right"])
    assert not _overlap(boxes["Both/0/Left"], boxes["Both/1/Right"])
    assert boxes["End"]["y"] >= boxes["Both"]["y"] + boxes["Both"]["height"]
    _check_layout(graph)


def test_the_pipeline_definition_lays_out_cleanly() -> None:
    from workflow.definition import render_definition

    machine = render_definition(load_config())
    graph = graph_json(json.dumps(machine))
    assert {node["name"] for node in graph["nodes"] if node["name"]} >= set(machine["States"])
    _check_layout(graph)


def test_empty_and_unreachable_states() -> None:
    assert graph_json({"StartAt": "A", "States": {}}) == {"width": 0.0, "height": 0.0, "nodes": [], "edges": []}
    graph = graph_json({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "Orphan": {"Type": "Pass", "Next": "A"}}})
    assert {node["name"] for node in graph["nodes"]} == {"A", "Orphan"}
    _check_layout(graph)
