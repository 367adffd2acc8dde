// Pan (drag) and zoom (wheel) of the chip map by changing the SVG viewBox.
(function () {
  const svg = document.getElementById("chipmap");
  if (!svg) return;
  let [x, y, w, h] = svg.dataset.extent.split(" ").map(Number);
  const apply = () => svg.setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const r = svg.getBoundingClientRect();
    const fx = (ev.clientX - r.left) / r.width, fy = (ev.clientY - r.top) / r.height;
    const k = ev.deltaY > 0 ? 1.25 : 0.8;
    const nw = w * k, nh = h * k;
    x += (w - nw) * fx; y += (h - nh) * fy; w = nw; h = nh;
    apply();
  }, { passive: false });
  let drag = null, dragged = false;
  svg.addEventListener("mousedown", (ev) => {
    ev.preventDefault(); // no native drag of the mosaic image or text selection while panning
    drag = { cx: ev.clientX, cy: ev.clientY, x, y };
    dragged = false;
  });
  window.addEventListener("mouseup", () => { drag = null; });
  // a pan that starts on a flake outline must not open that flake when the button is released
  svg.addEventListener("click", (ev) => {
    if (dragged) { ev.preventDefault(); ev.stopPropagation(); dragged = false; }
  }, true);
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    if (Math.abs(ev.clientX - drag.cx) + Math.abs(ev.clientY - drag.cy) > 3) dragged = true;
    const r = svg.getBoundingClientRect();
    x = drag.x - (ev.clientX - drag.cx) * w / r.width;
    y = drag.y - (ev.clientY - drag.cy) * h / r.height;
    apply();
  });
})();
