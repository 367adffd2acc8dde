// Chip map: pan (drag) and zoom (wheel) by changing the SVG viewBox, and fetch the flakes of the
// new view from /api/chips/{id}/map when it leaves the area loaded so far (or, for clusters, when
// the zoom level changes the cluster cell size). The page itself holds the first view.
// The stored images come as 256 px tiles (/chips/{id}/mosaic/{z}/{x}/{y}.png) of the zoom level
// that matches the screen, only those in view: never one huge picture of the whole chip.
// Flake markers keep one size on screen; zooming stops where the whole chip fits (out) and at
// MAX_PX_PER_UM screen pixels per µm (in).
(function () {
  const svg = document.getElementById("chipmap");
  if (!svg) return;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const GRID = 32; // cells across the longer side of a fetched area, as on the server
  const FILTER_KEYS = ["material", "layer_class", "status", "min_area", "min_confidence"];
  const DOT_PX = 3; // radius of a flake's centre marker, screen pixels
  const MAX_PX_PER_UM = 20; // closest zoom: 1 µm = 20 screen pixels (finer than any objective)
  const layer = document.getElementById("flake-layer");
  const status = document.getElementById("map-status");
  const colours = JSON.parse(svg.dataset.colours || "{}");
  const chip = svg.dataset.chip;
  const filters = new URLSearchParams();
  new URLSearchParams(window.location.search).forEach((value, key) => {
    if (FILTER_KEYS.includes(key) && value !== "") filters.append(key, value);
  });
  const extent = svg.dataset.extent.split(" ").map(Number);
  let [x, y, w, h] = extent;
  let loaded = {
    box: svg.dataset.loaded.split(" ").map(Number),
    mode: svg.dataset.mode,
    cell: svg.dataset.cell ? Number(svg.dataset.cell) : null,
  };
  let timer = null, inflight = null;

  const apply = () => {
    svg.setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
    drawMosaic();
    sizeMarkers();
    schedule();
  };

  // centre markers: DOT_PX screen pixels whatever the zoom (the map's units are µm)
  function sizeMarkers() {
    const r = (DOT_PX * umPerPx()).toPrecision(4);
    for (const dot of layer.querySelectorAll("circle.flake-dot")) dot.setAttribute("r", r);
  }

  // scale the view by k about the chip point (ux, uy), within the zoom limits
  function zoom(k, ux, uy) {
    const u = umPerPx();
    k = Math.max(k, 1 / (MAX_PX_PER_UM * u)); // not closer than MAX_PX_PER_UM
    if (w * k >= extent[2] || h * k >= extent[3]) {
      [x, y, w, h] = extent; // not further out than the whole chip
    } else {
      x = ux - (ux - x) * k; y = uy - (uy - y) * k; w *= k; h *= k;
    }
    apply();
  }

  // the chip area actually on screen (the viewBox is letterboxed into the element)
  function visible() {
    const r = svg.getBoundingClientRect();
    const s = Math.min(r.width / w, r.height / h) || 1;
    const vw = r.width / s, vh = r.height / s;
    return [x - (vw - w) / 2, y - (vh - h) / 2, vw, vh];
  }
  const cellFor = (span) => Math.pow(2, Math.ceil(Math.log2(Math.max(span / GRID, 1e-3))));

  function needsFetch(v) {
    const [vx, vy, vw, vh] = v, [bx0, by0, bx1, by1] = loaded.box;
    if (vx < bx0 || vy < by0 || vx + vw > bx1 || vy + vh > by1) return true;
    return loaded.mode === "clusters" && cellFor(2 * Math.max(vw, vh)) !== loaded.cell;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 120);
  }

  async function refresh() {
    const v = visible();
    if (!needsFetch(v)) return;
    const [vx, vy, vw, vh] = v;
    const box = [vx - vw / 2, vy - vh / 2, vx + 1.5 * vw, vy + 1.5 * vh];  // a margin for panning
    const params = new URLSearchParams(filters);
    ["x0", "y0", "x1", "y1"].forEach((k, i) => params.set(k, box[i].toFixed(3)));
    if (inflight) inflight.abort();
    const ctl = new AbortController();
    inflight = ctl;
    let data;
    try {
      const resp = await fetch(`/api/chips/${chip}/map?${params}`, { signal: ctl.signal });
      if (!resp.ok) {
        status.textContent = `could not load flakes: ${(await resp.json()).detail || resp.status}`;
        return;
      }
      data = await resp.json();
    } catch (err) {
      if (err.name !== "AbortError") status.textContent = `could not load flakes: ${err}`;
      return;
    } finally {
      if (inflight === ctl) inflight = null;
    }
    loaded = { box: data.bbox_um, mode: data.mode, cell: data.cell_um };
    draw(data);
    svg.dataset.requests = String(Number(svg.dataset.requests) + 1);
    svg.dataset.mode = data.mode;
    svg.dataset.total = String(data.total);
  }

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG_NS, name);
    for (const [k, val] of Object.entries(attrs)) e.setAttribute(k, val);
    if (parent) parent.appendChild(e);
    return e;
  }

  function draw(data) {
    const frag = document.createDocumentFragment();
    for (const f of data.flakes) {
      const colour = colours[f.material] || "#fff";
      const a = el("a", { href: `/flakes/${f.id}` }, frag);
      const poly = el("polygon", {
        class: "flake-outline",
        "data-flake-id": f.id,
        points: f.polygon_um.map((p) => `${p[0]},${p[1]}`).join(" "),
        stroke: colour,
      }, a);
      const layers = f.layer_count ? ` ${f.layer_count}L` : "";
      el("title", {}, poly).textContent =
        `#${f.id} ${f.material} ${f.layer_class}${layers}, ${Math.round(f.area_um2)} µm²`;
      el("circle", {
        class: "flake-dot", cx: f.centroid_um[0], cy: f.centroid_um[1], r: DOT_PX * umPerPx(),
        fill: colour,
      }, a);
    }
    const maxCount = Math.max(1, ...data.clusters.map((c) => c.count));
    for (const c of data.clusters) {
      const g = el("g", { class: "cluster", "data-count": c.count, "data-bbox": c.bbox_um.join(" ") }, frag);
      const r = data.cell_um * 0.5 * Math.max(0.3, Math.sqrt(c.count / maxCount));
      el("circle", { cx: c.x_um, cy: c.y_um, r }, g);
      el("text", { x: c.x_um, y: c.y_um, "font-size": data.cell_um * 0.3 }, g).textContent = c.count;
      el("title", {}, g).textContent = `${c.count} flakes: click to zoom in`;
    }
    layer.replaceChildren(frag);
    status.textContent = data.mode === "clusters"
      ? `${data.total} flakes in view, grouped: zoom in to see outlines`
      : `${data.total} flakes in view`;
  }

  // µm per screen pixel: the viewBox is letterboxed into the element ("meet")
  function umPerPx() {
    const r = svg.getBoundingClientRect();
    return 1 / (Math.min(r.width / w, r.height / h) || 1);
  }
  // -- mosaic tiles: level z has tiles of (longer tiles side) / 2^z µm, 256 px each -----------
  const mosaic = document.getElementById("mosaic-layer");
  const TILE_PX = 256;
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  function drawMosaic() {
    if (!mosaic) return;
    // the pyramid's own extent (the scanned tiles'), which the overview mosaic may exceed
    const [ex, ey, ew, eh] = (mosaic.dataset.extent || svg.dataset.extent).split(" ").map(Number);
    const side = Math.max(ew, eh), maxZoom = Number(mosaic.dataset.maxZoom);
    // the coarsest level with at least one tile pixel per screen pixel
    const z = clamp(Math.ceil(Math.log2(side / umPerPx() / TILE_PX) - 1e-9), 0, maxZoom);
    const t = side / 2 ** z;
    const nx = Math.max(1, Math.ceil(ew / t - 1e-9)), ny = Math.max(1, Math.ceil(eh / t - 1e-9));
    const [vx, vy, vw, vh] = visible();
    const wanted = new Map();
    if (vx < ex + ew && vy < ey + eh && vx + vw > ex && vy + vh > ey) {
      const i0 = clamp(Math.floor((vx - ex) / t), 0, nx - 1);
      const i1 = clamp(Math.floor((vx + vw - ex) / t), 0, nx - 1);
      const j0 = clamp(Math.floor((vy - ey) / t), 0, ny - 1);
      const j1 = clamp(Math.floor((vy + vh - ey) / t), 0, ny - 1);
      for (let i = i0; i <= i1; i++) for (let j = j0; j <= j1; j++) wanted.set(`${z}/${i}/${j}`, [i, j]);
    }
    const have = new Set();
    for (const img of [...mosaic.children]) {
      const key = img.dataset.tile;
      if (wanted.has(key)) have.add(key);
      else if (Number(img.dataset.zoom) === z) img.remove();  // panned out of view
    }
    const stale = () => [...mosaic.children].filter((img) => Number(img.dataset.zoom) !== z);
    let pending = 0;
    const done = (ev) => {
      ev.target.dataset.loaded = ev.type;  // "load" or "error"
      if (--pending <= 0 && Number(mosaic.dataset.zoom) === z) stale().forEach((img) => img.remove());
    };
    for (const [key, [i, j]] of wanted) {
      if (have.has(key)) continue;
      pending++;
      const img = el("image", {
        href: `/chips/${chip}/mosaic/${key}.png?v=${mosaic.dataset.version}`,
        x: ex + i * t, y: ey + j * t, width: t, height: t,
        preserveAspectRatio: "none", "data-tile": key, "data-zoom": z,
      }, mosaic);
      img.addEventListener("load", done, { once: true });
      img.addEventListener("error", done, { once: true });
    }
    mosaic.dataset.zoom = String(z);
    // the tiles of the previous level stay under the new ones until those have loaded
    if (pending === 0 || stale().length > 64) stale().forEach((img) => img.remove());
  }
  drawMosaic();

  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const [vx, vy] = visible(), r = svg.getBoundingClientRect(), u = umPerPx();
    const ux = vx + (ev.clientX - r.left) * u, uy = vy + (ev.clientY - r.top) * u;
    zoom(ev.deltaY > 0 ? 1.25 : 0.8, ux, uy);  // about the chip point under the cursor
  }, { passive: false });
  let drag = null, dragged = false;
  svg.addEventListener("mousedown", (ev) => {
    ev.preventDefault(); // no native drag of the mosaic image or text selection while panning
    drag = { cx: ev.clientX, cy: ev.clientY, x, y, u: umPerPx() };
    dragged = false;
  });
  window.addEventListener("mouseup", () => { drag = null; });
  // a pan that starts on a flake outline must not open that flake when the button is released
  svg.addEventListener("click", (ev) => {
    if (dragged) { ev.preventDefault(); ev.stopPropagation(); dragged = false; return; }
    const cluster = ev.target.closest && ev.target.closest(".cluster");
    if (!cluster) return;
    const [bx0, by0, bx1, by1] = cluster.dataset.bbox.trim().split(/\s+/).map(Number);
    const k = Math.max((bx1 - bx0) / w, (by1 - by0) / h, 1e-3) * 1.2;
    const cx = (bx0 + bx1) / 2, cy = (by0 + by1) / 2;
    x = cx - w / 2; y = cy - h / 2; // centre the cluster, then zoom about its centre
    zoom(k, cx, cy);
  }, true);
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    if (Math.abs(ev.clientX - drag.cx) + Math.abs(ev.clientY - drag.cy) > 3) dragged = true;
    x = drag.x - (ev.clientX - drag.cx) * drag.u;  // the map follows the mouse exactly
    y = drag.y - (ev.clientY - drag.cy) * drag.u;
    apply();
  });
  sizeMarkers(); // the page's first view
})();
