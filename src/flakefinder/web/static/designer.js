// Heterostructure designer: pick flakes, stack them, move/rotate outlines, save, export.
// Geometry matches flakefinder.design.geometry.place(): centroid to (x_um, y_um), then rotate.
// Each stacked flake has its own colour (by its place in the stack, shown in the layer list);
// the wheel zooms about the cursor and a scale bar in µm follows the zoom.
(function () {
  const root = document.getElementById("designer");
  const svg = document.getElementById("stack-canvas");
  const NS = "http://www.w3.org/2000/svg";
  // distinct on the dark canvas and for colour-blind eyes (Okabe-Ito, then a few more)
  const PALETTE = ["#56b4e9", "#e69f00", "#009e73", "#f0e442", "#cc79a7", "#d55e00", "#0072b2",
    "#ffffff", "#9ae66e", "#a78bfa"];
  const colourOf = (i) => PALETTE[i % PALETTE.length];
  const BAR_PX = 120; // the scale bar is the longest 1, 2 or 5 × 10^k µm that fits in this
  let designId = root.dataset.designId ? Number(root.dataset.designId) : null;
  let layers = []; // {flake, x_um, y_um, rotation_deg}

  const $ = (id) => document.getElementById(id);
  const fmt = (v, d = 1) => Number(v).toFixed(d);
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  function centroid(pts) {
    let a = 0, cx = 0, cy = 0;
    for (let i = 0; i < pts.length; i++) {
      const [x0, y0] = pts[i], [x1, y1] = pts[(i + 1) % pts.length];
      const c = x0 * y1 - x1 * y0;
      a += c; cx += (x0 + x1) * c; cy += (y0 + y1) * c;
    }
    a /= 2;
    if (Math.abs(a) < 1e-12) {
      return [pts.reduce((s, p) => s + p[0], 0) / pts.length, pts.reduce((s, p) => s + p[1], 0) / pts.length];
    }
    return [cx / (6 * a), cy / (6 * a)];
  }

  function placed(layer) {
    const pts = layer.flake.polygon_um;
    const [cx, cy] = centroid(pts);
    const t = layer.rotation_deg * Math.PI / 180, c = Math.cos(t), s = Math.sin(t);
    return pts.map(([x, y]) => [(x - cx) * c - (y - cy) * s + layer.x_um, (x - cx) * s + (y - cy) * c + layer.y_um]);
  }

  function fitView() {
    const all = layers.flatMap(placed);
    if (!all.length) { svg.setAttribute("viewBox", "-50 -50 100 100"); return; }
    const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const m = 0.15 * Math.max(x1 - x0, y1 - y0, 10);
    svg.setAttribute("viewBox", `${x0 - m} ${y0 - m} ${x1 - x0 + 2 * m} ${y1 - y0 + 2 * m}`);
  }

  function draw() {
    svg.replaceChildren();
    layers.forEach((layer, i) => {
      const poly = document.createElementNS(NS, "polygon");
      poly.setAttribute("points", placed(layer).map((p) => p.join(",")).join(" "));
      poly.setAttribute("fill", colourOf(i));
      poly.setAttribute("stroke", colourOf(i));
      poly.setAttribute("class", "stack-layer");
      poly.dataset.index = i;
      poly.addEventListener("mousedown", (ev) => startDrag(ev, i));
      svg.appendChild(poly);
    });
    drawScaleBar();
  }

  // the chip area on screen (the viewBox is letterboxed into the element) and µm per pixel
  function visible() {
    const [x, y, w, h] = svg.getAttribute("viewBox").split(/\s+/).map(Number);
    const r = svg.getBoundingClientRect();
    const s = Math.min(r.width / w, r.height / h) || 1;
    const vw = r.width / s, vh = r.height / s;
    return { x: x - (vw - w) / 2, y: y - (vh - h) / 2, w: vw, h: vh, u: 1 / s };
  }

  function niceLength(um) {
    const p = Math.pow(10, Math.floor(Math.log10(um)));
    return [5, 2, 1].map((m) => m * p).find((v) => v <= um) || p;
  }

  function drawScaleBar() {
    const v = visible();
    const len = niceLength(BAR_PX * v.u), pad = 12 * v.u;
    const x0 = v.x + pad, y0 = v.y + v.h - pad;
    const g = document.createElementNS(NS, "g");
    g.setAttribute("id", "scale-bar");
    g.setAttribute("pointer-events", "none");
    g.dataset.um = String(len);
    const line = document.createElementNS(NS, "line");
    const attrs = { x1: x0, y1: y0, x2: x0 + len, y2: y0, stroke: "#e5e7eb", "stroke-width": 3, "vector-effect": "non-scaling-stroke" };
    for (const [k, val] of Object.entries(attrs)) line.setAttribute(k, val);
    const text = document.createElementNS(NS, "text");
    text.setAttribute("x", x0); text.setAttribute("y", y0 - 6 * v.u);
    text.setAttribute("font-size", 12 * v.u); text.setAttribute("fill", "#e5e7eb");
    text.textContent = `${len >= 1 ? len : len.toPrecision(1)} µm`;
    g.append(line, text);
    svg.appendChild(g);
  }

  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const v = visible(), r = svg.getBoundingClientRect();
    const ux = v.x + (ev.clientX - r.left) * v.u, uy = v.y + (ev.clientY - r.top) * v.u;
    let [x, y, w, h] = svg.getAttribute("viewBox").split(/\s+/).map(Number);
    let k = ev.deltaY > 0 ? 1.25 : 0.8; // zoom about the point under the cursor
    k = Math.min(Math.max(k, 1 / w), 1e5 / w); // views from 1 µm to 10 cm across
    x = ux - (ux - x) * k; y = uy - (uy - y) * k; w *= k; h *= k;
    svg.setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
    draw();
  }, { passive: false });
  window.addEventListener("resize", draw);

  function svgPoint(ev) {
    const pt = svg.createSVGPoint();
    pt.x = ev.clientX; pt.y = ev.clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse());
  }

  let drag = null;
  function startDrag(ev, i) {
    ev.preventDefault();
    const p = svgPoint(ev);
    drag = { i, px: p.x, py: p.y, x: layers[i].x_um, y: layers[i].y_um };
  }
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    const p = svgPoint(ev);
    layers[drag.i].x_um = drag.x + (p.x - drag.px);
    layers[drag.i].y_um = drag.y + (p.y - drag.py);
    draw();
  });
  window.addEventListener("mouseup", () => { if (drag) { drag = null; renderList(); preview(); } });

  function renderList() {
    const ol = $("layer-list");
    ol.replaceChildren();
    layers.forEach((layer, i) => {
      const li = document.createElement("li");
      li.className = "layer-item";
      const f = layer.flake;
      li.dataset.colour = colourOf(i);
      li.innerHTML = `<svg class="layer-swatch" width="12" height="12" viewBox="0 0 1 1" aria-hidden="true"><rect width="1" height="1" fill="${colourOf(i)}"/></svg>
        <b>#${f.id} ${esc(f.material)}</b> ${f.layer_count ? f.layer_count + "L" : esc(f.layer_class)}
        <div class="layer-controls">
          x <input class="layer-x" type="number" step="0.1" value="${fmt(layer.x_um)}">
          y <input class="layer-y" type="number" step="0.1" value="${fmt(layer.y_um)}">
          rotation° <input class="layer-rot" type="number" step="0.1" value="${fmt(layer.rotation_deg)}">
          <button class="layer-up" title="move up">↑</button><button class="layer-down" title="move down">↓</button>
          <button class="layer-remove" title="remove">✕</button>
        </div>`;
      const num = (sel, key) => li.querySelector(sel).addEventListener("change", (ev) => {
        layer[key] = Number(ev.target.value); draw(); preview();
      });
      num(".layer-x", "x_um"); num(".layer-y", "y_um"); num(".layer-rot", "rotation_deg");
      li.querySelector(".layer-up").onclick = () => move(i, 1);
      li.querySelector(".layer-down").onclick = () => move(i, -1);
      li.querySelector(".layer-remove").onclick = () => { layers.splice(i, 1); refresh(); };
      ol.appendChild(li);
    });
  }

  function move(i, d) {
    const j = i + d;
    if (j < 0 || j >= layers.length) return;
    [layers[i], layers[j]] = [layers[j], layers[i]];
    refresh();
  }

  function payloadLayers() {
    return layers.map((l, order) => ({ flake_id: l.flake.id, x_um: l.x_um, y_um: l.y_um, rotation_deg: l.rotation_deg, order }));
  }

  let previewSeq = 0; // responses can arrive out of order: only the newest request may render
  async function preview() {
    const box = $("summary");
    const seq = ++previewSeq;
    if (layers.length < 2) { box.innerHTML = "Add at least two flakes to see overlap and twist."; return; }
    const r = await fetch("/api/designs/preview", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ layers: payloadLayers() }) });
    const s = await r.json();
    if (seq !== previewSeq) return;
    if (!r.ok) { box.textContent = JSON.stringify(s.detail); return; }
    const pairs = s.pairs.map((p) => `<li>layers ${p.lower + 1}–${p.upper + 1}: overlap ${fmt(p.overlap_um2)} µm², twist <span class="twist">${fmt(p.twist_deg, 2)}</span>°</li>`).join("");
    box.innerHTML = `Overlap of the whole stack: <b id="overlap-area">${fmt(s.stack_overlap_um2)}</b> µm²<ul id="pair-list">${pairs}</ul>`;
  }

  function refresh() { fitView(); draw(); renderList(); preview(); }

  function addFlake(flake) {
    layers.push({ flake, x_um: 0, y_um: 0, rotation_deg: 0 });
    refresh();
  }

  async function loadPicker(ev) {
    if (ev) ev.preventDefault();
    const params = new URLSearchParams({ limit: "200", order: "-area_um2" });
    const m = $("picker-material").value, c = $("picker-class").value;
    if (m) params.append("material", m);
    if (c) params.append("layer_class", c);
    const r = await fetch("/api/flakes?" + params);
    const body = await r.json();
    const ul = $("picker-list");
    ul.replaceChildren();
    for (const f of body.flakes) {
      const li = document.createElement("li");
      li.innerHTML = `<button class="add-flake" data-flake-id="${f.id}">Add</button>
        #${f.id} ${esc(f.material)} ${f.layer_count ? f.layer_count + "L" : esc(f.layer_class)} · ${fmt(f.area_um2, 0)} µm²
        <a href="/flakes/${f.id}" target="_blank">view</a>`;
      li.querySelector("button").onclick = () => addFlake(f);
      ul.appendChild(li);
    }
  }

  async function loadMaterials() {
    const r = await fetch("/api/chips");
    const chips = await r.json();
    const mats = [...new Set(chips.flatMap((c) => c.materials))].sort();
    for (const m of mats) {
      const o = document.createElement("option"); o.value = m; o.textContent = m;
      $("picker-material").appendChild(o);
    }
  }

  function showExports() {
    $("export-json").href = `/api/designs/${designId}/export.json`;
    $("export-gds").href = `/api/designs/${designId}/export.gds`;
    $("export-links").hidden = false;
  }

  async function save() {
    const body = { name: $("design-name").value, notes: $("design-notes").value, layers: payloadLayers() };
    const url = designId ? `/api/designs/${designId}` : "/api/designs";
    const r = await fetch(url, { method: designId ? "PUT" : "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const d = await r.json();
    if (!r.ok) { $("save-status").textContent = "Not saved: " + JSON.stringify(d.detail); return; }
    designId = d.id;
    history.replaceState(null, "", `/designs/${designId}`);
    $("save-status").textContent = `Saved as design #${designId}.`;
    showExports();
  }

  async function loadDesign() {
    if (!designId) return;
    const r = await fetch(`/api/designs/${designId}`);
    const d = await r.json();
    $("design-name").value = d.name;
    $("design-notes").value = d.notes;
    if (d.problem) $("save-status").textContent = d.problem;
    const byId = new Map(d.flakes.map((f) => [f.id, f]));
    layers = d.layers
      .map((l) => ({ flake: byId.get(l.flake_id), x_um: l.x_um ?? 0, y_um: l.y_um ?? 0, rotation_deg: l.rotation_deg ?? 0 }))
      .filter((l) => l.flake);
    showExports();
    refresh();
  }

  $("picker-filters").addEventListener("submit", loadPicker);
  $("save-design").addEventListener("click", save);
  loadMaterials().then(() => loadPicker());
  loadDesign().then(() => { if (!designId) refresh(); });
})();
