// Lays out the graph from /api/graph (states, groups, transitions: workflow/console/graph.py)
// with ELK's layered algorithm (elkjs, vendored as /static/elk.bundled.js by `make install`)
// and draws it as SVG, coloured by state status: top to bottom, orthogonal edges, Map and
// Parallel as boxes around their states, Choice edges labelled, Catch edges dashed.
// ELK runs in the page (its bundle's in-page worker): no eval, so the console's CSP holds.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const MARGIN = 16;
const LABEL_HEIGHT = 14;
const LABEL_CHAR_WIDTH = 5.6;  // 10px edge labels
const GROUP_PADDING = "[top=34,left=14,bottom=14,right=14]";  // the top holds the group's label
const BRANCH_PADDING = "[top=12,left=10,bottom=12,right=10]";

const LAYOUT_OPTIONS = {
  "elk.algorithm": "layered",
  "elk.direction": "DOWN",
  "elk.hierarchyHandling": "INCLUDE_CHILDREN",  // one layout across groups, so edges and groups fit together
  "elk.edgeRouting": "ORTHOGONAL",
  "elk.json.shapeCoords": "ROOT",  // every position absolute: no adding up of parents' offsets
  "elk.json.edgeCoords": "ROOT",
  "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",  // keep the ASL's order where it costs no crossing
  "elk.layered.cycleBreaking.strategy": "DEPTH_FIRST",  // poll loops point back up, the main flow goes down
  "elk.layered.nodePlacement.strategy": "NETWORK_SIMPLEX",  // straight vertical runs; narrower than BRANDES_KOEPF here
  "elk.layered.spacing.nodeNodeBetweenLayers": "22",
  "elk.layered.spacing.edgeNodeBetweenLayers": "14",
  "elk.spacing.nodeNode": "26",
  "elk.spacing.edgeNode": "14",
  "elk.spacing.edgeEdge": "8",
  "elk.spacing.edgeLabel": "3",
  "elk.edgeLabels.placement": "TAIL",  // next to the Choice, as the AWS console has them; centre labels would add layers
};

function svgElement(name, attributes, parent) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

// The ELK graph: groups hold their states, each edge sits in the group both its ends are in.
function elkGraph(graph) {
  const root = {id: "(root)", layoutOptions: LAYOUT_OPTIONS, children: [], edges: []};
  const byId = {};
  for (const node of graph.nodes) {
    const box = {id: node.id, width: node.width, height: node.height, children: [], edges: []};
    if (node.group) {
      const label = node.name ? `${node.type}: ${node.name}` : "";
      box.layoutOptions = {"elk.padding": node.name ? GROUP_PADDING : BRANCH_PADDING,
                           "elk.nodeSize.constraints": "MINIMUM_SIZE",
                           "elk.nodeSize.minimum": `(${Math.max(node.width, label.length * 7.2 + 28)}, ${node.height})`};
    }
    byId[node.id] = box;
    (node.parent ? byId[node.parent] : root).children.push(box);
  }
  for (const edge of graph.edges) {
    const line = {id: edge.id, sources: [edge.source], targets: [edge.target]};
    if (edge.label) line.labels = [{text: edge.label, width: edge.label.length * LABEL_CHAR_WIDTH + 6, height: LABEL_HEIGHT}];
    (edge.parent ? byId[edge.parent] : root).edges.push(line);
  }
  return root;
}

// Every laid-out node and edge by id, from ELK's nested answer.
function flatten(laidOut, nodes, edges) {
  for (const child of laidOut.children || []) { nodes[child.id] = child; flatten(child, nodes, edges); }
  for (const edge of laidOut.edges || []) edges[edge.id] = edge;
}

const round = (value) => Math.round(value * 10) / 10;  // ELK's sums differ in the 13th digit

function edgePath(edge) {
  let path = "";
  for (const section of edge.sections || []) {
    const points = [section.startPoint, ...(section.bendPoints || []), section.endPoint];
    path += points.map((point, index) => `${index ? "L" : "M"} ${round(point.x)} ${round(point.y)}`).join(" ") + " ";
  }
  return path.trim();
}

function draw(container, graph, laidOut, layoutMs, onSelect) {
  const placed = {};
  const routed = {};
  flatten(laidOut, placed, routed);
  const width = laidOut.width + 2 * MARGIN;
  const height = laidOut.height + 2 * MARGIN;
  const toggle = document.createElement("label");
  toggle.className = "graph-toggle";
  const checkbox = document.createElement("input");
  checkbox.type = "checkbox";
  checkbox.checked = true;
  checkbox.addEventListener("change", () => svg.classList.toggle("hide-catch", !checkbox.checked));
  toggle.append(checkbox, " error paths (Catch)");
  container.textContent = "";
  if (graph.edges.some((edge) => edge.kind === "catch")) container.append(toggle);
  const svg = svgElement("svg", {viewBox: `${-MARGIN} ${-MARGIN} ${width} ${height}`, width, height,
                                 class: "graph", role: "img", "aria-label": "state machine graph",
                                 "data-layout-ms": layoutMs.toFixed(1)}, container);
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
    const box = placed[node.id];
    if (node.name === null) {  // a Parallel's branch: a faint box, no label, not a state
      svgElement("rect", {x: box.x, y: box.y, width: box.width, height: box.height, rx: 8, class: "branch",
                          fill: "none", stroke: "#d5dbe5", "stroke-dasharray": "2 3", "data-id": node.id}, groups);
      continue;
    }
    const layer = node.group ? groups : boxes;
    const g = svgElement("g", {class: `state type-${node.type.toLowerCase()} status-none${node.group ? " group" : ""}`,
                              "data-state": node.name, "data-id": node.id, tabindex: 0}, layer);
    svgElement("rect", {x: box.x, y: box.y, width: box.width, height: box.height, rx: node.group ? 10 : 6}, g);
    const label = svgElement("text", {x: box.x + (node.group ? 12 : box.width / 2),
                                      y: box.y + (node.group ? 17 : box.height / 2 + 1),
                                      class: node.group ? "group-label" : "state-label"}, g);
    label.textContent = node.group ? `${node.type}: ${node.name}` : node.name;
    if (!node.group) {
      const type = svgElement("text", {x: box.x + box.width / 2, y: box.y + box.height - 5, class: "state-type"}, g);
      type.textContent = node.type;
    }
    svgElement("title", {}, g).textContent = `${node.name} (${node.type})`;
    g.addEventListener("click", (event) => { event.stopPropagation(); onSelect(node.name); });
    g.addEventListener("keydown", (event) => { if (event.key === "Enter") onSelect(node.name); });
    (byName[node.name] = byName[node.name] || []).push(g);
  }
  for (const edge of graph.edges) {
    const line = routed[edge.id];
    if (!line || !line.sections) continue;
    const g = svgElement("g", {class: `edge edge-${edge.kind}`, "data-source": edge.source, "data-target": edge.target}, edges);
    svgElement("path", {d: edgePath(line), "marker-end": `url(#arrow-${edge.kind})`}, g);
    if (edge.title) svgElement("title", {}, g).textContent = edge.title;
    for (const placedLabel of line.labels || []) {  // where ELK put it: beside its own edge, clear of boxes
      const text = svgElement("text", {x: placedLabel.x + placedLabel.width / 2, y: placedLabel.y + LABEL_HEIGHT - 3,
                                       class: "edge-label"}, g);
      text.textContent = placedLabel.text;
    }
  }
  return byName;
}

let layoutEngine = null;
let loading = null;

// ELK's bundle (1.6 MB) is fetched when a graph is first drawn, from the console's own
// static files (the CSP's script-src 'self'), not with the page.
function loadLayoutEngine() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/static/elk.bundled.js";
      script.addEventListener("load", () => resolve(layoutEngine = layoutEngine || new ELK()));
      script.addEventListener("error", () => {
        loading = null;
        reject(new Error("the layout library /static/elk.bundled.js is missing: run `make install`"));
      });
      document.head.appendChild(script);
    });
  }
  return loading;
}

// Draws asynchronously (ELK answers with a promise); the handle's colour/select calls made
// before the drawing is there are applied when it is.
function drawGraph(container, graph, onSelect) {
  let byName = null;
  let states = {};
  let selected = null;
  const apply = () => {
    if (!byName) return;
    for (const [name, elements] of Object.entries(byName)) {
      const run = states[name];
      for (const element of elements) {
        for (const old of Array.from(element.classList)) if (old.startsWith("status-")) element.classList.remove(old);
        element.classList.add(`status-${run ? run.status : "none"}`);
        element.classList.toggle("selected", name === selected);
      }
    }
  };
  container.textContent = "laying out the graph…";
  let started = 0;
  loadLayoutEngine().then((engine) => {
    started = performance.now();
    return engine.layout(elkGraph(graph));
  }).then((laidOut) => {
    byName = draw(container, graph, laidOut, performance.now() - started, onSelect);
    apply();
  }).catch((error) => {
    container.textContent = `The graph could not be drawn: ${error.message || error}`;
    console.error(error);  // the rest of the page goes on
  });
  return {
    colour(newStates) { states = newStates || {}; apply(); },
    select(name) { selected = name; apply(); },
  };
}
