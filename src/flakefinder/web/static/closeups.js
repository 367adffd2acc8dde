// Flake page: a click on a close-up shows it at full resolution in a dialog.
(() => {
  const dialog = document.getElementById("zoom");
  if (!dialog) return;
  const img = document.getElementById("zoom-image");
  const caption = document.getElementById("zoom-caption");
  for (const a of document.querySelectorAll("a.closeup")) {
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      img.src = a.href;
      caption.textContent = a.dataset.caption || "";
      dialog.showModal();
    });
  }
  dialog.addEventListener("click", (ev) => { if (ev.target === dialog) dialog.close(); });
})();
