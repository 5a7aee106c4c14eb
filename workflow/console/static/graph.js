// Draws the layout from /api/graph (computed by workflow/console/graph.py) as SVG and
// colours it by state status. No layout happens here: positions come from the server.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgElement(name, attributes, parent) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

// A smooth path through the points: vertical tangents, so edges leave and enter boxes straight.
function edgePath(points) {
  let path = `M ${points[0][0]} ${points[0][1]}`;
  for (let index = 1; index < points.length; index++) {
    const [x0, y0] = points[index - 1];
    const [x1, y1] = points[index];
    const middle = (y0 + y1) / 2;
    path += ` C ${x0} ${middle}, ${x1} ${middle}, ${x1} ${y1}`;
  }
  return path;
}

// A catch edge runs from the right side of one box to the right side of another.
function catchPath(points) {
  const [[x0, y0], [x1, y1]] = points;
  const bulge = Math.max(x0, x1) + 30 + Math.min(60, Math.abs(y1 - y0) / 12);
  return `M ${x0} ${y0} C ${bulge} ${y0}, ${bulge} ${y1}, ${x1} ${y1}`;
}

const MARGIN = 24;

function drawGraph(container, graph, onSelect) {
  container.textContent = "";
  const width = graph.width + 2 * MARGIN + 80;
  const height = graph.height + 2 * MARGIN;
  const toggle = document.createElement("label");
  toggle.className = "graph-toggle";
  const checkbox = document.createElement("input");
  checkbox.type = "checkbox";
  checkbox.checked = true;
  checkbox.addEventListener("change", () => svg.classList.toggle("hide-catch", !checkbox.checked));
  toggle.append(checkbox, " error paths (Catch)");
  if (graph.edges.some((edge) => edge.kind === "catch")) container.append(toggle);
  const svg = svgElement("svg", {viewBox: `${-MARGIN} ${-MARGIN} ${width} ${height}`, width, height,
                                 class: "graph", role: "img", "aria-label": "state machine graph"}, container);
  const defs = svgElement("defs", {}, svg);
  for (const kind of ["next", "choice", "default", "catch"]) {
    const marker = svgElement("marker", {id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
                                         markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"}, defs);
    svgElement("path", {d: "M 0 0 L 10 5 L 0 10 z", class: `arrow arrow-${kind}`}, marker);
  }
  const groups = svgElement("g", {class: "groups"}, svg);
  const edges = svgElement("g", {class: "edges"}, svg);
  const boxes = svgElement("g", {class: "boxes"}, svg);
  const byName = {};
  for (const node of graph.nodes) {
    if (node.name === null) continue;
    const layer = node.group ? groups : boxes;
    const g = svgElement("g", {class: `state type-${node.type.toLowerCase()} status-none${node.group ? " group" : ""}`,
                              "data-state": node.name, tabindex: 0}, layer);
    svgElement("rect", {x: node.x, y: node.y, width: node.width, height: node.height, rx: node.group ? 10 : 6}, g);
    const label = svgElement("text", {x: node.x + (node.group ? 12 : node.width / 2),
                                      y: node.y + (node.group ? 17 : node.height / 2 + 1),
                                      class: node.group ? "group-label" : "state-label"}, g);
    label.textContent = node.group ? `${node.type}: ${node.name}` : node.name;
    if (!node.group) {
      const type = svgElement("text", {x: node.x + node.width / 2, y: node.y + node.height - 5, class: "state-type"}, g);
      type.textContent = node.type;
    }
    svgElement("title", {}, g).textContent = `${node.name} (${node.type})`;
    g.addEventListener("click", (event) => { event.stopPropagation(); onSelect(node.name); });
    g.addEventListener("keydown", (event) => { if (event.key === "Enter") onSelect(node.name); });
    (byName[node.name] = byName[node.name] || []).push(g);
  }
  for (const edge of graph.edges) {
    if (!edge.points.length) continue;
    const g = svgElement("g", {class: `edge edge-${edge.kind}`}, edges);
    const d = edge.kind === "catch" && edge.points.length === 2 ? catchPath(edge.points) : edgePath(edge.points);
    svgElement("path", {d, "marker-end": `url(#arrow-${edge.kind})`}, g);
    if (edge.title) svgElement("title", {}, g).textContent = edge.title;
    if (edge.label) {  // just above the target, where sibling Choice edges have spread apart
      const [x1, y1] = edge.points[edge.points.length - 1];
      const text = svgElement("text", {x: x1, y: y1 - 7, class: "edge-label"}, g);
      text.textContent = edge.label;
    }
  }
  return {
    colour(states) {
      for (const [name, elements] of Object.entries(byName)) {
        const run = states[name];
        for (const element of elements) {
          for (const old of Array.from(element.classList)) if (old.startsWith("status-")) element.classList.remove(old);
          element.classList.add(`status-${run ? run.status : "none"}`);
        }
      }
    },
    select(name) {
      for (const [stateName, elements] of Object.entries(byName)) {
        for (const element of elements) element.classList.toggle("selected", stateName === name);
      }
    },
  };
}
