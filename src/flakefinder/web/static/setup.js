// Setup page: upload images, mark flakes (click = region growing on the server, or an outline),
// give layer numbers (or accept the proposed ones), calibrate, plot, save the profile.
(function () {
  const $ = (id) => document.getElementById(id);
  const canvas = $("setup-canvas"), ctx = canvas.getContext("2d");
  const status = $("setup-status");
  const SVG_NS = "http://www.w3.org/2000/svg";
  const CHANNELS = [["R", "#dc2626"], ["G", "#16a34a"], ["B", "#2563eb"]];
  const state = { session: null, images: [], current: -1, regions: [], outline: [], proposed: {}, skipped: new Set(), pictures: {} };

  function say(text) { status.textContent = text; }

  async function api(method, path, body) {
    const opts = { method, headers: {} };
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    const resp = await fetch(path, opts);
    if (!resp.ok) {
      let detail = `${resp.status}`;
      try { const j = await resp.json(); detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    return resp.status === 204 ? null : resp.json();
  }
  const base = () => `/api/setup/sessions/${state.session}`;

  // ---- images ------------------------------------------------------------------------------
  $("image-files").addEventListener("change", async (ev) => {
    const files = [...ev.target.files];
    try {
      if (!state.session) state.session = (await api("POST", "/api/setup/sessions")).session;
      for (const f of files) {
        const form = new FormData();
        form.append("image", f, f.name);
        say(`uploading ${f.name}…`);
        state.images.push(await api("POST", `${base()}/images`, form));
      }
      renderImages();
      if (state.current < 0 && state.images.length) await show(0);
      say(`${state.images.length} image(s). Click a flake, or outline one.`);
    } catch (err) { say(`upload failed: ${err.message}`); }
    ev.target.value = "";
    updateButtons();
  });

  function renderImages() {
    const list = $("image-list");
    list.replaceChildren(...state.images.map((im) => {
      const li = document.createElement("li");
      li.textContent = `${im.name} (${im.width_px}×${im.height_px})`;
      li.dataset.index = im.index;
      if (im.index === state.current) li.className = "current";
      li.addEventListener("click", () => show(im.index));
      return li;
    }));
  }

  async function show(index) {
    state.current = index;
    state.outline = [];
    if (!state.pictures[index]) {
      const img = new Image();
      img.src = `${base()}/images/${index}.png`;
      await img.decode();
      state.pictures[index] = img;
    }
    const img = state.pictures[index];
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    canvas.dataset.image = String(index);
    renderImages();
    draw();
  }

  // ---- drawing -----------------------------------------------------------------------------
  function draw() {
    const img = state.pictures[state.current];
    if (!img) return;
    ctx.drawImage(img, 0, 0);
    const lw = Math.max(1, canvas.width / 400);
    ctx.lineWidth = lw; ctx.font = `${Math.max(10, canvas.width / 40)}px sans-serif`;
    for (const r of state.regions) {
      if (r.image_index !== state.current || r.outline_px.length < 2) continue;
      ctx.strokeStyle = "#facc15";
      ctx.beginPath();
      const outline = r.outline_px.map(toCanvas);
      outline.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath(); ctx.stroke();
      const [x0, y0] = outline[0];
      const n = layerOf(r) ?? state.proposed[r.id];
      ctx.fillStyle = "#facc15";
      ctx.fillText(`#${r.id}${n ? ` ${n}L` : ""}`, x0, Math.max(12, y0 - 3));
    }
    if (state.outline.length) {
      ctx.strokeStyle = "#38bdf8";
      ctx.beginPath();
      state.outline.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
    }
  }

  // A large upload is kept (and drawn) at the server's working size; requests and answers
  // use the uploaded image's pixels: scale = uploaded pixels per canvas pixel.
  function scale() {
    const im = state.images.find((m) => m.index === state.current);
    return im ? [im.width_px / canvas.width, im.height_px / canvas.height] : [1, 1];
  }
  function toCanvas([x, y]) {
    const [sx, sy] = scale();
    return [(x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5];
  }
  function toImage([x, y]) {
    const [sx, sy] = scale();
    return [Math.floor((x + 0.5) * sx), Math.floor((y + 0.5) * sy)];
  }

  function pixelOf(ev) {
    const r = canvas.getBoundingClientRect();
    return [Math.floor((ev.clientX - r.left) * canvas.width / r.width),
            Math.floor((ev.clientY - r.top) * canvas.height / r.height)];
  }
  const mode = () => document.querySelector('input[name="mark-mode"]:checked').value;

  canvas.addEventListener("click", async (ev) => {
    if (state.current < 0) return;
    const [x, y] = pixelOf(ev);
    if (mode() === "outline") {
      state.outline.push([x, y]);
      $("close-outline").disabled = state.outline.length < 3;
      draw();
      return;
    }
    const [ix, iy] = toImage([x, y]);
    await addRegion({ image_index: state.current, x_px: ix, y_px: iy });
  });

  $("close-outline").addEventListener("click", async () => {
    const pts = state.outline.map(toImage);
    state.outline = [];
    $("close-outline").disabled = true;
    await addRegion({ image_index: state.current, polygon_px: pts });
  });

  async function addRegion(body) {
    try {
      const region = await api("POST", `${base()}/regions`, body);
      state.regions.push(region);
      say(`flake #${region.id}: ${region.area_px} px`);
    } catch (err) { say(`could not mark that flake: ${err.message}`); }
    renderRegions(); draw(); updateButtons();
  }

  // ---- regions and layer numbers ------------------------------------------------------------
  function layerOf(r) {
    const input = document.querySelector(`#region-list input[data-region="${r.id}"]`);
    const v = input ? input.value.trim() : "";
    return v === "" ? null : Number(v);
  }

  function renderRegions() {
    const keep = {};
    for (const r of state.regions) keep[r.id] = layerOf(r);
    $("region-list").replaceChildren(...state.regions.map((r) => {
      const li = document.createElement("li");
      li.className = "region-item";
      li.dataset.region = r.id;
      const label = document.createElement("span");
      label.textContent = `#${r.id} image ${r.image_index + 1}, ${r.area_px} px `;
      const input = document.createElement("input");
      input.type = "number"; input.min = "1"; input.max = "100"; input.step = "1";
      input.placeholder = "layers"; input.dataset.region = r.id;
      input.setAttribute("aria-label", `layers of flake ${r.id}`);
      if (keep[r.id] != null) input.value = keep[r.id];
      input.addEventListener("input", draw);
      const prop = document.createElement("span");
      prop.className = "proposed";
      const p = state.proposed[r.id];
      prop.textContent = p === undefined ? "" : (p === null ? "proposed: none" : `proposed: ${p}`);
      if (state.skipped.has(r.id)) {
        li.classList.add("skipped");
        prop.textContent += `${prop.textContent ? " · " : ""}left out (no layer number)`;
      }
      const del = document.createElement("button");
      del.type = "button"; del.textContent = "×"; del.title = "forget this flake";
      del.addEventListener("click", async () => {
        try {
          await api("DELETE", `${base()}/regions/${r.id}`);
          state.regions = state.regions.filter((q) => q.id !== r.id);
        } catch (err) { say(err.message); }
        renderRegions(); draw(); updateButtons();
      });
      li.append(label, input, prop, del);
      return li;
    }));
  }

  $("accept-proposed").addEventListener("click", () => {
    for (const r of state.regions) {
      const p = state.proposed[r.id];
      const input = document.querySelector(`#region-list input[data-region="${r.id}"]`);
      if (input && p != null) input.value = p;
    }
    draw();
  });

  function updateButtons() {
    $("calibrate").disabled = !state.images.length;
    $("accept-proposed").disabled = !Object.values(state.proposed).some((p) => p != null);
  }

  // ---- calibration ---------------------------------------------------------------------------
  $("calibrate").addEventListener("click", async () => {
    const layers = {};
    for (const r of state.regions) {
      const n = layerOf(r);
      if (n != null) layers[r.id] = n;
    }
    const body = {
      material: $("material").value,
      oxide_nm: Number($("oxide-nm").value),
      um_per_px: Number($("um-per-px").value),
      name: $("profile-name").value.trim() || "setup",
      layers,
    };
    say("calibrating…");
    $("calibrate").disabled = true;
    try {
      const rep = await api("POST", `${base()}/calibrate`, body);
      // flakes left out (no layer number) keep what was proposed for them before
      const before = state.proposed;
      state.proposed = {};
      state.skipped = new Set(rep.skipped_regions);
      for (const id of state.skipped) if (id in before) state.proposed[id] = before[id];
      for (const [id, n] of Object.entries(rep.proposed_layers)) state.proposed[Number(id)] = n;
      showReport(rep);
      say(`calibrated (${rep.mode}): confidence ${rep.confidence.toFixed(2)}` +
          rep.notes.map((n) => ` — ${n}`).join(""));
    } catch (err) {
      say(`calibration failed: ${err.message}`);
      $("calibration-summary").textContent = `Calibration failed: ${err.message}`;
    }
    renderRegions(); draw(); updateButtons();
  });

  function showReport(rep) {
    const summary = $("calibration-summary");
    summary.classList.remove("hint");
    summary.textContent =
      `${rep.material}, mode ${rep.mode}: residual rms ${rep.rms_residual.toFixed(4)}, ` +
      `confidence ${rep.confidence.toFixed(2)}` + (rep.warnings.length ? ` — ${rep.warnings.join("; ")}` : "");
    const notes = $("calibration-notes");
    notes.replaceChildren(...rep.notes.map((n) => {
      const li = document.createElement("li");
      li.textContent = n;
      return li;
    }));
    notes.hidden = !rep.notes.length;
    const table = $("colour-table");
    const head = "<tr><th>layers</th><th>R</th><th>G</th><th>B</th><th>source</th></tr>";
    table.innerHTML = head + rep.table.map((e) =>
      `<tr class="entry-${e.source}" data-layers="${e.n_layers}"><td>${e.n_layers}</td>` +
      e.contrast_rgb.map((v) => `<td>${v.toFixed(3)}</td>`).join("") + `<td>${e.source}</td></tr>`).join("");
    plot(rep);
    const save = $("save-profile");
    save.href = `${base()}/profile.json`;
    save.setAttribute("download", `${rep.name}.json`);
    save.hidden = false;
  }

  // contrast per channel vs layer number: optics prediction (lines), colour table (open
  // circles), measured clusters (filled, sized by their pixel count)
  function plot(rep) {
    const svg = $("cluster-plot");
    svg.replaceChildren();
    const W = 360, H = 240, L = 40, R = 10, T = 10, B = 28;
    const pts = [...rep.optics_curve, ...rep.table, ...rep.clusters.filter((c) => c.n_layers != null)];
    const maxN = Math.max(2, ...pts.map((p) => p.n_layers));
    const vals = pts.flatMap((p) => p.contrast_rgb);
    let lo = Math.min(0, ...vals), hi = Math.max(0, ...vals);
    if (hi - lo < 0.05) hi = lo + 0.05;
    const X = (n) => L + (n - 1) / (maxN - 1) * (W - L - R);
    const Y = (v) => T + (hi - v) / (hi - lo) * (H - T - B);
    const add = (name, attrs, text) => {
      const e = document.createElementNS(SVG_NS, name);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    add("line", { x1: L, x2: W - R, y1: Y(0), y2: Y(0), stroke: "#9ca3af" });
    add("text", { x: L, y: H - 8 }, "1 layer");
    add("text", { x: W - R - 50, y: H - 8 }, `${maxN} layers`);
    add("text", { x: 2, y: T + 8 }, hi.toFixed(2));
    add("text", { x: 2, y: H - B }, lo.toFixed(2));
    CHANNELS.forEach(([name, colour], c) => {
      if (rep.optics_curve.length) {
        add("polyline", {
          class: "optics-curve", fill: "none", stroke: colour, "stroke-width": 1.5, "stroke-dasharray": "4 3",
          points: rep.optics_curve.filter((p) => p.n_layers <= maxN).map((p) => `${X(p.n_layers)},${Y(p.contrast_rgb[c])}`).join(" "),
        });
      }
      for (const e of rep.table) {
        add("circle", { class: `table-${e.source}`, cx: X(e.n_layers), cy: Y(e.contrast_rgb[c]), r: 4, fill: "none", stroke: colour });
      }
      const maxPx = Math.max(1, ...rep.clusters.map((k) => k.n_pixels));
      for (const k of rep.clusters) {
        if (k.n_layers == null) continue;
        add("circle", {
          class: "cluster-point", cx: X(k.n_layers), cy: Y(k.contrast_rgb[c]),
          r: 2.5 + 3 * Math.sqrt(k.n_pixels / maxPx), fill: colour, "fill-opacity": 0.6,
        }).appendChild(document.createElementNS(SVG_NS, "title")).textContent =
          `${name}: ${k.n_layers} L, ${k.n_flakes} flakes, C = ${k.contrast_rgb[c].toFixed(3)}`;
      }
    });
  }
})();
