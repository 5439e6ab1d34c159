// Results page: slice scrolling, overlay opacity and layer choice, key slice thumbnails.
(function () {
  "use strict";
  const viewer = document.getElementById("viewer");
  const base = document.getElementById("base");
  if (!viewer || !base) return;
  const job = viewer.dataset.job, count = Number(viewer.dataset.count);
  const overlay = document.getElementById("overlay");
  const slice = document.getElementById("slice"), label = document.getElementById("slice-label");
  const opacity = document.getElementById("opacity"), layer = document.getElementById("layer");
  const marked = document.getElementById("marked");
  let current = Number(viewer.dataset.start);

  function show(index) {
    current = Math.max(0, Math.min(count - 1, index));
    slice.value = current;
    label.textContent = `${current + 1} / ${count}`;
    base.src = `/jobs/${job}/slices/${current}.png`;
    if (layer) overlay.src = `/jobs/${job}/layers/${layer.value}/${current}.png`;
    viewer.dataset.current = current;
  }

  function showMarked() {
    if (!layer || !marked) return;
    const list = layer.selectedOptions[0].dataset.slices;
    marked.textContent = list ? list.split(",").map((i) => Number(i) + 1).join(", ") : "none";
  }

  slice.addEventListener("input", () => show(Number(slice.value)));
  document.getElementById("prev").addEventListener("click", () => show(current - 1));
  document.getElementById("next").addEventListener("click", () => show(current + 1));
  opacity.addEventListener("input", () => { overlay.style.opacity = opacity.value; });
  if (layer) layer.addEventListener("change", () => { showMarked(); show(current); });
  document.getElementById("stack").addEventListener("wheel", (event) => {
    event.preventDefault();
    show(current + (event.deltaY > 0 ? 1 : -1));
  }, { passive: false });
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    if (event.key === "ArrowRight" || event.key === "ArrowDown") show(current + 1);
    if (event.key === "ArrowLeft" || event.key === "ArrowUp") show(current - 1);
  });
  for (const a of document.querySelectorAll("[data-slice]")) {
    a.addEventListener("click", (event) => { event.preventDefault(); show(Number(a.dataset.slice)); });
  }
  showMarked();
})();
