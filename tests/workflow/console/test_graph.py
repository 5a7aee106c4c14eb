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


def _check_structure(graph: dict[str, Any]) -> None:
    """Ids unique, each group listed before what it holds (graph.js builds ELK's tree in one
    pass), every edge inside one group with both its ends."""
    seen: dict[str, dict[str, Any]] = {}
    for node in graph["nodes"]:
        assert node["id"] not in seen, node
        assert node["parent"] is None or seen[node["parent"]]["group"], node
        assert node["width"] > 0 and node["height"] > 0, node
        seen[node["id"]] = node
    for edge in graph["edges"]:
        assert seen[edge["source"]]["parent"] == seen[edge["target"]]["parent"] == edge["parent"], edge
    assert len({edge["id"] for edge in graph["edges"]}) == len(graph["edges"])


def test_every_state_and_transition_is_there_once() -> None:
    graph = graph_json(LOOP)
    assert sorted(node["name"] for node in graph["nodes"]) == sorted(LOOP["States"])
    assert graph["startAt"] == "Describe"
    kinds = {(edge["source"], edge["target"]): edge["kind"] for edge in graph["edges"]}
    assert kinds == {("Describe", "Ready"): "next", ("Ready", "Use"): "choice", ("Ready", "Wait"): "default",
                     ("Wait", "Describe"): "next", ("Use", "CleanUp"): "catch", ("Use", "Done"): "next",
                     ("CleanUp", "Failed"): "next"}  # fmt: skip
    catch = next(edge for edge in graph["edges"] if edge["kind"] == "catch")
    assert catch["title"] == "catch States.ALL" and catch["label"] == ""
    _check_structure(graph)


def test_a_long_state_name_gets_a_wider_box() -> None:
    graph = graph_json({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "CreateProductionEndpointConfigAgain"},
                                                   "CreateProductionEndpointConfigAgain": {"Type": "Succeed"}}})  # fmt: skip
    short, long = graph["nodes"]
    assert short["width"] == 110 and long["width"] > 7 * len(long["name"])


def test_choice_edges_are_labelled() -> None:
    labels = {edge["target"]: edge["label"] for edge in graph_json(LOOP)["edges"]}
    assert labels["Use"] == '$.status == "InService"' and labels["Wait"] == "default"
    long_rule = {"Variable": "$.endpoint_status.EndpointStatus", "StringEquals": "InService", "Next": "B"}
    edge = graph_json({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [long_rule]}, "B": {"Type": "Succeed"}}})["edges"][0]
    assert len(edge["label"]) == 30 and edge["label"].endswith("…") and edge["title"] == choice_label(long_rule)


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
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert [node_id for node_id in nodes] == ["Both", "Both/0", "Both/0/Left", "Both/0/Left2", "Both/1", "Both/1/Right",
                                              "Both/1/Right/Inner", "End"]  # fmt: skip
    assert nodes["Both"]["group"] and nodes["Both/1/Right"]["group"] and not nodes["Both/0/Left"]["group"]
    assert nodes["Both/0"] | {"width": 0} == {"id": "Both/0", "name": None, "type": "Branch", "parent": "Both", "group": True,
                                              "width": 0, "height": 36}  # fmt: skip
    assert nodes["Both/1/Right/Inner"]["parent"] == "Both/1/Right" and nodes["Both/1/Right"]["parent"] == "Both/1"
    assert [(edge["source"], edge["target"], edge["parent"]) for edge in graph["edges"]] == [
        ("Both/0/Left", "Both/0/Left2", "Both/0"), ("Both", "End", None)]
    _check_structure(graph)


def test_the_pipeline_definition() -> None:
    from workflow.definition import render_definition

    machine = render_definition(load_config())
    graph = graph_json(json.dumps(machine))
    assert {node["name"] for node in graph["nodes"] if node["parent"] is None} == set(machine["States"])
    kinds = {edge["kind"] for edge in graph["edges"]}
    assert kinds == {"next", "choice", "default", "catch"}
    _check_structure(graph)


def test_empty_and_unreachable_states() -> None:
    assert graph_json({"StartAt": "A", "States": {}}) == {"startAt": "A", "nodes": [], "edges": []}
    graph = graph_json({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "Orphan": {"Type": "Pass", "Next": "A"}}})
    assert {node["name"] for node in graph["nodes"]} == {"A", "Orphan"}
    _check_structure(graph)


def test_transitions_to_missing_states_are_left_out() -> None:
    graph = graph_json({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}})
    assert graph["edges"] == []
