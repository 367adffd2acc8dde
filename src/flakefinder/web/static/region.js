// Scan page: the search-region editor over the overview mosaic (stage µm = SVG user units).
// Drag a corner handle or type the edges to change the region; shift-drag draws an area to
// skip; click a skipped area (map or list) to select it, "remove" drops it; "Save region"
// sends PUT /api/scans/{id}/region and redraws the planned tiles from the answer.
(() => {
  const svg = document.getElementById("region-map");
  if (!svg) return;
  const NS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  let view = JSON.parse($("region-data").textContent);
  const editable = svg.dataset.editable === "true";
  let region = structuredClone(view.region);
  let selected = -1;
  let drag = null;

  const fmt = (v) => Math.round(v).toString();
  const el = (name, attrs, parent) => {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    parent.appendChild(e);
    return e;
  };
  const toUm = (ev) => {
    const p = svg.createSVGPoint();
    p.x = ev.clientX; p.y = ev.clientY;
    const q = p.matrixTransform(svg.getScreenCTM().inverse());
    return [q.x, q.y];
  };
  const rectAttrs = (r) => ({ x: Math.min(r[0], r[2]), y: Math.min(r[1], r[3]), width: Math.abs(r[2] - r[0]), height: Math.abs(r[3] - r[1]) });
  const handleSize = () => (view.area_um[2] - view.area_um[0]) / 80;

  function drawTiles() {
    const layer = $("tile-layer");
    layer.replaceChildren();
    const [w, h] = view.search_fov_um;
    for (const [x, y] of view.tiles_um) el("rect", { class: "tile", x: x - w / 2, y: y - h / 2, width: w, height: h }, layer);
  }

  function draw() {
    const r = region.rect_um;
    for (const [k, i] of [["x0", 0], ["y0", 1], ["x1", 2], ["y1", 3]]) {
      if (document.activeElement !== $(`region-${k}`)) $(`region-${k}`).value = fmt(r[i]);
    }
    const a = rectAttrs(r);
    for (const [k, v] of Object.entries(a)) $("region-rect").setAttribute(k, v);
    const ex = $("exclusion-layer");
    ex.replaceChildren();
    const list = $("exclusion-list");
    list.replaceChildren();
    region.exclusions.forEach((e, i) => {
      const box = el("rect", { ...rectAttrs(e.rect_um), class: `exclusion ${e.kind}${i === selected ? " selected" : ""}`, "data-index": i }, ex);
      box.addEventListener("pointerdown", (ev) => { if (!ev.shiftKey) { ev.stopPropagation(); selected = i; draw(); } });
      const li = document.createElement("li");
      li.dataset.index = i;
      if (i === selected) li.className = "selected";
      const [x0, y0, x1, y1] = e.rect_um;
      li.innerHTML = `<span class="kind">${e.kind}</span> ${fmt(x1 - x0)} × ${fmt(y1 - y0)} µm at (${fmt(x0)}, ${fmt(y0)}) `;
      li.addEventListener("click", () => { selected = i; draw(); });
      if (editable) {
        const b = document.createElement("button");
        b.textContent = "remove"; b.className = "remove-exclusion"; b.type = "button";
        b.addEventListener("click", (ev) => { ev.stopPropagation(); region.exclusions.splice(i, 1); selected = -1; draw(); changed(); });
        li.appendChild(b);
      }
      list.appendChild(li);
    });
    const hl = $("handle-layer");
    hl.replaceChildren();
    if (!editable) return;
    const s = handleSize();
    for (const [cx, cy, ix, iy] of [[r[0], r[1], 0, 1], [r[2], r[1], 2, 1], [r[2], r[3], 2, 3], [r[0], r[3], 0, 3]]) {
      const h = el("rect", { class: "handle", x: cx - s / 2, y: cy - s / 2, width: s, height: s }, hl);
      h.addEventListener("pointerdown", (ev) => {
        if (ev.shiftKey) return; // shift-drag draws an area to skip, wherever it starts
        ev.stopPropagation(); drag = { kind: "corner", ix, iy }; svg.setPointerCapture(ev.pointerId);
      });
    }
  }

  function changed() { $("region-status").textContent = "Not saved yet."; }

  function clamp(v, lo, hi) { return Math.min(Math.max(v, lo), hi); }

  if (editable) {
    svg.addEventListener("pointerdown", (ev) => {
      if (!ev.shiftKey) { selected = -1; draw(); return; }
      const [x, y] = toUm(ev);
      region.exclusions.push({ kind: "user", rect_um: [x, y, x, y] });
      selected = region.exclusions.length - 1;
      drag = { kind: "draw", start: [x, y] };
      svg.setPointerCapture(ev.pointerId);
      ev.preventDefault();
    });
    svg.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const a = view.area_um;
      const [x, y] = toUm(ev).map((v, i) => clamp(v, a[i], a[i + 2]));
      if (drag.kind === "corner") {
        region.rect_um[drag.ix] = x; region.rect_um[drag.iy] = y;
      } else {
        const [sx, sy] = drag.start;
        region.exclusions[selected].rect_um = [Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)];
      }
      draw();
    });
    svg.addEventListener("pointerup", () => {
      if (!drag) return;
      const r = region.rect_um;
      region.rect_um = [Math.min(r[0], r[2]), Math.min(r[1], r[3]), Math.max(r[0], r[2]), Math.max(r[1], r[3])];
      if (drag.kind === "draw") {
        const e = region.exclusions[selected].rect_um;
        if (e[2] - e[0] < 1 || e[3] - e[1] < 1) { region.exclusions.splice(selected, 1); selected = -1; }
      }
      drag = null; draw(); changed();
    });
    for (const [k, i] of [["x0", 0], ["y0", 1], ["x1", 2], ["y1", 3]]) {
      $(`region-${k}`).addEventListener("change", (ev) => {
        const v = Number(ev.target.value);
        if (Number.isFinite(v)) { region.rect_um[i] = v; draw(); changed(); }
      });
    }
    document.addEventListener("keydown", (ev) => {
      if ((ev.key === "Delete" || ev.key === "Backspace") && selected >= 0 && document.activeElement.tagName !== "INPUT") {
        region.exclusions.splice(selected, 1); selected = -1; draw(); changed();
      }
    });
    $("reset-region").addEventListener("click", () => { region = structuredClone(view.proposed_region); selected = -1; draw(); changed(); });
    $("save-region").addEventListener("click", async () => {
      const r = await fetch(`/api/scans/${svg.dataset.scan}/region`, {
        method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(region),
      });
      const body = await r.json();
      if (!r.ok) { $("region-status").textContent = "Not saved: " + (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)); return; }
      view = body; region = structuredClone(view.region); selected = -1;
      $("region-tiles").textContent = view.n_tiles;
      $("region-status").textContent = `Saved: ${view.n_tiles} tiles at ${view.search_objective}.`;
      drawTiles(); draw();
    });
  }
  drawTiles();
  draw();
})();
