// Heterostructure designer: pick flakes, stack them, move/rotate outlines, save, export.
// Geometry matches flakefinder.design.geometry.place(): centroid to (x_um, y_um), then rotate.
(function () {
  const root = document.getElementById("designer");
  const svg = document.getElementById("stack-canvas");
  const NS = "http://www.w3.org/2000/svg";
  const COLOURS = { graphene: "#3b82f6", hBN: "#f59e0b", MoS2: "#10b981", WTe2: "#ef4444", WSe2: "#8b5cf6", MoSe2: "#ec4899" };
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
      const colour = COLOURS[layer.flake.material] || "#ddd";
      poly.setAttribute("style", `fill: ${colour}; stroke: ${colour}`);
      poly.setAttribute("class", "stack-layer");
      poly.dataset.index = i;
      poly.addEventListener("mousedown", (ev) => startDrag(ev, i));
      svg.appendChild(poly);
    });
  }

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
      li.innerHTML = `<b>#${f.id} ${esc(f.material)}</b> ${f.layer_count ? f.layer_count + "L" : esc(f.layer_class)}
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
