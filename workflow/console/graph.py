"""A state machine's ASL as a graph: states, transitions and the groups Map and Parallel make.

Only the structure is computed here; the console's page lays it out with ELK (elkjs's
layered algorithm, vendored as static/elk.bundled.js) and draws it (static/graph.js). The
layout runs in the browser because the console is a Python server that should not need
Node.js at run time, ELK takes tens of milliseconds for the whole pipeline, and the run
report (which runs no script) does not draw the graph.

The JSON (the /api/graph route):
- nodes: one per state, `id` a path (`Outer/Inner` in a Map's processor, `Outer/1/Inner`
  in a Parallel's second branch), `parent` the enclosing group's id (None at the top),
  `group` true for a Map or Parallel (drawn as a box around its states) and for a
  Parallel's branch (`type` "Branch", `name` None: a box without a label), and a size
  estimate for a state's box (groups are sized by the layout);
- edges: `kind` next | choice | default | catch, a `label` for Choice rules, a `title`
  for the tooltip, and `parent` the group the edge runs in (both ends are its children:
  ASL transitions never leave their States object).
"""
from __future__ import annotations

import json
from typing import Any

NODE_HEIGHT = 36
MIN_WIDTH = 110.0
CHAR_WIDTH = 7.2  # 12px system sans-serif, bold: a little wide, so labels fit
LABEL_LENGTH = 30

# longest suffix first: NumericGreaterThanEquals is >=, not ==
COMPARISONS = {"GreaterThanEquals": ">=", "LessThanEquals": "<=", "GreaterThan": ">", "LessThan": "<", "Equals": "==",
               "Matches": "matches"}  # fmt: skip


def choice_label(rule: dict[str, Any]) -> str:
    """A short human form of a Choice rule: `$.status == "InService"`, `not(...)`, `and(2)`."""
    if "Condition" in rule:
        return str(rule["Condition"]).strip("{}% ")
    for combinator in ("And", "Or"):
        if combinator in rule:
            return f"{combinator.lower()}({len(rule[combinator])} rules)"
    if "Not" in rule:
        return f"not({choice_label(rule['Not'])})"
    variable = str(rule.get("Variable", ""))
    for key, value in rule.items():
        if key in ("Variable", "Next", "Comment", "Assign", "Output"):
            continue
        if key.startswith("Is"):
            return f"{variable} {key}" if value is True else f"not {variable} {key}"
        operator = next((symbol for suffix, symbol in COMPARISONS.items() if key.removesuffix("Path").endswith(suffix)), key)
        shown = value if key.endswith("Path") else json.dumps(value)
        return f"{variable} {operator} {shown}"
    return variable or "rule"


def _short(text: str) -> str:
    return text if len(text) <= LABEL_LENGTH else text[: LABEL_LENGTH - 1] + "…"


def _transitions(state: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(target, kind, label, title) for each outgoing transition of one state."""
    edges = []
    if state.get("Next"):
        edges.append((state["Next"], "next", "", ""))
    for index, rule in enumerate(state.get("Choices") or []):
        text = choice_label(rule)
        edges.append((rule["Next"], "choice", _short(text) or f"rule {index + 1}", text))
    if state.get("Default"):
        edges.append((state["Default"], "default", "default", "default"))
    for catcher in state.get("Catch") or []:
        errors = ", ".join(catcher.get("ErrorEquals") or [])
        edges.append((catcher["Next"], "catch", "", f"catch {errors}"))
    return edges


def _add_states(machine: dict[str, Any], parent: str | None, nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> None:
    """Adds a `{"StartAt", "States"}` object's states (recursively) and transitions."""
    states: dict[str, dict[str, Any]] = machine.get("States") or {}
    prefix = f"{parent}/" if parent else ""
    for name, state in states.items():
        node_id, kind = prefix + name, str(state.get("Type", "?"))
        inner: list[tuple[str, dict[str, Any]]] = []
        if kind == "Map":
            inner = [(node_id, state.get("ItemProcessor") or state.get("Iterator") or {})]
        elif kind == "Parallel":
            inner = [(f"{node_id}/{index}", branch) for index, branch in enumerate(state.get("Branches") or [])]
        nodes.append({"id": node_id, "name": name, "type": kind, "parent": parent, "group": bool(inner),
                      "width": max(MIN_WIDTH, CHAR_WIDTH * len(name) + 28), "height": NODE_HEIGHT})  # fmt: skip
        for inner_id, inner_machine in inner:
            if inner_id != node_id:  # a Parallel's branch: a box of its own inside the Parallel
                nodes.append({"id": inner_id, "name": None, "type": "Branch", "parent": node_id, "group": True,
                              "width": MIN_WIDTH, "height": NODE_HEIGHT})  # fmt: skip
            _add_states(inner_machine, inner_id, nodes, edges)
        for target, edge_kind, label, title in _transitions(state):
            if target in states:
                edges.append({"id": f"e{len(edges)}", "source": node_id, "target": prefix + target, "kind": edge_kind,
                              "label": label, "title": title, "parent": parent})  # fmt: skip


def graph_json(definition: str | dict[str, Any]) -> dict[str, Any]:
    """The states, groups and transitions of a definition, as the console's graph.js lays them out."""
    machine = json.loads(definition) if isinstance(definition, str) else definition
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    _add_states(machine, None, nodes, edges)
    return {"startAt": machine.get("StartAt"), "nodes": nodes, "edges": edges}
