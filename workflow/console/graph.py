"""A state machine's ASL drawn as a layered graph: boxes, arrows, Map and Parallel groups.

The layout is a small Sugiyama-style one, done here rather than in the browser so the
console and the run report share it and pytest can check it:

1. ranks: depth-first from StartAt; edges back to a state on the current path (loops such
   as Describe -> Wait -> Describe) are reversed so the rest is acyclic, then each state
   sits one rank below its lowest predecessor;
2. edges spanning several ranks get a dummy point per rank they cross, so they bend
   around boxes instead of through them;
3. a few barycentre sweeps order each rank to cut crossings; x follows the mean of the
   neighbours above, pushed right to avoid overlaps.

Catch edges (the dotted lines to clean-up states) do not shape the layout unless a state
is reachable no other way: a dozen error paths would otherwise stretch every rank.
Map and Parallel states are laid out recursively and placed as one big box.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

NODE_HEIGHT = 40
RANK_GAP = 44
NODE_GAP = 28
GROUP_PADDING = 16
GROUP_HEADER = 26
DUMMY_WIDTH = 12
CHAR_WIDTH = 7.2
LABEL_LENGTH = 30
SWEEPS = 4

# longest suffix first: NumericGreaterThanEquals is >=, not ==
COMPARISONS = {"GreaterThanEquals": ">=", "LessThanEquals": "<=", "GreaterThan": ">", "LessThan": "<", "Equals": "==",
               "Matches": "matches"}  # fmt: skip


@dataclass
class Node:
    """A state (or a dummy bend point, name None) with its box; groups hold their inner layouts."""

    id: str
    name: str | None
    type: str
    width: float
    height: float
    x: float = 0.0
    y: float = 0.0
    rank: int = 0
    order: float = 0.0
    inner: list[Layout] = field(default_factory=list)


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # next | choice | default | catch
    label: str = ""
    title: str = ""
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Layout:
    nodes: dict[str, Node]
    edges: list[Edge]
    width: float
    height: float


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


def _transitions(state: dict[str, Any]) -> list[Edge]:
    """Outgoing edges of one state (source/target filled in by the caller's names)."""
    edges = []
    if state.get("Next"):
        edges.append(Edge("", state["Next"], "next"))
    for index, rule in enumerate(state.get("Choices") or []):
        text = choice_label(rule)
        edges.append(Edge("", rule["Next"], "choice", _short(text) or f"rule {index + 1}", text))
    if state.get("Default"):
        edges.append(Edge("", state["Default"], "default", "default", "default"))
    for catcher in state.get("Catch") or []:
        errors = ", ".join(catcher.get("ErrorEquals") or [])
        edges.append(Edge("", catcher["Next"], "catch", "", f"catch {errors}"))
    return edges


def _state_box(name: str, state: dict[str, Any], prefix: str) -> Node:
    node_id = prefix + name
    node = Node(node_id, name, state.get("Type", "?"), max(110.0, CHAR_WIDTH * len(name) + 28), NODE_HEIGHT)
    if node.type == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator") or {}
        node.inner = [layout_states(processor, node_id + "/")]
    elif node.type == "Parallel":
        node.inner = [layout_states(branch, f"{node_id}/{index}/") for index, branch in enumerate(state.get("Branches") or [])]
    if node.inner:
        inner_width = sum(layout.width for layout in node.inner) + NODE_GAP * (len(node.inner) - 1)
        node.width = max(node.width, inner_width + 2 * GROUP_PADDING)
        node.height = max(layout.height for layout in node.inner) + GROUP_HEADER + GROUP_PADDING
    return node


def _depth_first(start: str, successors: dict[str, list[str]]) -> tuple[list[str], set[tuple[str, str]]]:
    """(states in reverse post-order, back edges) from `start`; iterative, so deep chains are fine."""
    post: list[str] = []
    back: set[tuple[str, str]] = set()
    seen: set[str] = set()
    on_path: set[str] = set()
    stack: list[tuple[str, int]] = [(start, 0)]
    seen.add(start)
    on_path.add(start)
    while stack:
        name, index = stack[-1]
        children = successors.get(name, [])
        if index < len(children):
            stack[-1] = (name, index + 1)
            child = children[index]
            if child in on_path:
                back.add((name, child))
            elif child not in seen:
                seen.add(child)
                on_path.add(child)
                stack.append((child, 0))
        else:
            stack.pop()
            on_path.discard(name)
            post.append(name)
    return post[::-1], back


def _rank(nodes: dict[str, Node], edges: list[Edge], start: str) -> tuple[list[tuple[str, str]], set[tuple[str, str]]]:
    """Sets each node's rank; returns the edges that shape the layout (loops reversed) and the loops.

    Ranks follow the non-Catch edges; a state reached only through Catch is ranked below its
    catchers, as if those Catch edges were ordinary ones.
    """
    successors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for edge in edges:
        if edge.kind != "catch" and edge.target not in successors[edge.source]:
            successors[edge.source].append(edge.target)
    order, back = _depth_first(start, successors)
    remaining = [node_id for node_id in nodes if node_id not in set(order)]
    while remaining:
        catchers = {edge.source for edge in edges if edge.kind == "catch" and edge.target == remaining[0]}
        more, more_back = _depth_first(remaining[0], successors)
        more = [node_id for node_id in more if node_id not in set(order)]
        back |= more_back
        order += more
        remaining = [node_id for node_id in remaining if node_id not in set(more)]
        for catcher in catchers:
            successors[catcher].append(more[0])
    layered = [(source, target) if (source, target) not in back else (target, source)
               for source, targets in successors.items() for target in targets if source != target]  # fmt: skip
    for _ in range(len(nodes)):  # longest path; `layered` is acyclic, so this settles within len(nodes) rounds
        changed = False
        for source, target in layered:
            if nodes[target].rank < nodes[source].rank + 1:
                nodes[target].rank, changed = nodes[source].rank + 1, True
        if not changed:
            break
    return layered, back


def layout_states(machine: dict[str, Any], prefix: str = "") -> Layout:
    """Lays out a `{"StartAt", "States"}` object (a whole definition, a Map processor or a branch)."""
    states: dict[str, dict[str, Any]] = machine.get("States") or {}
    nodes = {prefix + name: _state_box(name, state, prefix) for name, state in states.items()}
    edges: list[Edge] = []
    for name, state in states.items():
        for edge in _transitions(state):
            if edge.target in states:
                edge.source, edge.target = prefix + name, prefix + edge.target
                edges.append(edge)
    if not nodes:
        return Layout({}, [], 0.0, 0.0)

    start = prefix + str(machine.get("StartAt", next(iter(states))))
    layered, back = _rank(nodes, edges, start if start in nodes else next(iter(nodes)))
    # a bend point per rank a long edge crosses, so it is routed around the boxes in between
    chains: dict[tuple[str, str], list[str]] = {}
    all_nodes = dict(nodes)
    for source, target in layered:
        chain = [source]
        for rank in range(nodes[source].rank + 1, nodes[target].rank):
            dummy = Node(f"{source}->{target}#{rank}", None, "dummy", DUMMY_WIDTH, NODE_HEIGHT, rank=rank)
            all_nodes[dummy.id] = dummy
            chain.append(dummy.id)
        chains[(source, target)] = chain + [target]
    _order_and_place(all_nodes, list(chains.values()))
    for edge in edges:
        key, reverse = (edge.source, edge.target), (edge.target, edge.source)
        if key in chains:
            edge.points = _route([all_nodes[node_id] for node_id in chains[key]])
        elif reverse in chains and key in back:
            edge.points = _route([all_nodes[node_id] for node_id in chains[reverse]])[::-1]
        else:
            edge.points = _direct(nodes[edge.source], nodes[edge.target])
    width = max(node.x + node.width for node in all_nodes.values())
    height = max(node.y + node.height for node in all_nodes.values())
    return Layout(nodes, edges, width, height)


def _order_and_place(nodes: dict[str, Node], chains: list[list[str]]) -> None:
    """Barycentre sweeps order each rank; then x follows the neighbours above, y the rank."""
    ranks: dict[int, list[Node]] = {}
    for node in nodes.values():
        ranks.setdefault(node.rank, []).append(node)
    above: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    below: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for chain in chains:
        for upper, lower in zip(chain, chain[1:]):
            below[upper].append(lower)
            above[lower].append(upper)
    for rank_nodes in ranks.values():
        for index, node in enumerate(rank_nodes):
            node.order = index
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        for rank in sorted(ranks) if downward else sorted(ranks, reverse=True):
            for node in ranks[rank]:
                neighbours = above[node.id] if downward else below[node.id]
                if neighbours:
                    node.order = sum(nodes[other].order for other in neighbours) / len(neighbours)
            ranks[rank].sort(key=lambda node: node.order)
            for index, node in enumerate(ranks[rank]):
                node.order = index
    y = 0.0
    for rank in sorted(ranks):
        left = 0.0
        for node in ranks[rank]:
            wanted = left
            if above[node.id]:
                centre = sum(nodes[other].x + nodes[other].width / 2 for other in above[node.id]) / len(above[node.id])
                wanted = max(left, centre - node.width / 2)
            node.x, node.y = wanted, y
            left = node.x + node.width + NODE_GAP
        tallest = max(node.height for node in ranks[rank])
        for node in ranks[rank]:
            node.y = y + (tallest - node.height) / 2 if node.name is None else y
        y += tallest + RANK_GAP


def _route(chain: list[Node]) -> list[tuple[float, float]]:
    """Bottom centre of the first box, through the dummies, to the top centre of the last."""
    first, last = chain[0], chain[-1]
    points = [(first.x + first.width / 2, first.y + first.height)]
    points += [(node.x + node.width / 2, node.y + node.height / 2) for node in chain[1:-1]]
    points.append((last.x + last.width / 2, last.y))
    return points


def _direct(source: Node, target: Node) -> list[tuple[float, float]]:
    """A catch edge: from the source's right side to the target's right side."""
    return [(source.x + source.width, source.y + source.height / 2), (target.x + target.width, target.y + target.height / 2)]


def graph_json(definition: str | dict[str, Any]) -> dict[str, Any]:
    """The layout in absolute coordinates, as the console's JavaScript and the report draw it."""
    machine = json.loads(definition) if isinstance(definition, str) else definition
    layout = layout_states(machine)
    boxes: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    _flatten(layout, 0.0, 0.0, boxes, lines)
    return {"width": layout.width, "height": layout.height, "nodes": boxes, "edges": lines}


def _flatten(layout: Layout, dx: float, dy: float, boxes: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
    for node in layout.nodes.values():
        x, y = node.x + dx, node.y + dy
        boxes.append({"id": node.id, "name": node.name, "type": node.type, "x": x, "y": y, "width": node.width,
                      "height": node.height, "group": bool(node.inner)})  # fmt: skip
        inner_left = x + (node.width - (sum(inner.width for inner in node.inner) + NODE_GAP * (len(node.inner) - 1))) / 2
        for inner in node.inner:
            _flatten(inner, inner_left, y + GROUP_HEADER, boxes, lines)
            inner_left += inner.width + NODE_GAP
    for edge in layout.edges:
        lines.append({"source": edge.source, "target": edge.target, "kind": edge.kind, "label": edge.label, "title": edge.title,
                      "points": [(round(px + dx, 1), round(py + dy, 1)) for px, py in edge.points]})  # fmt: skip
