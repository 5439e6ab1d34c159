// Status page: refresh the live part every 2 s; buttons POST to the JSON API and show its answer.
(function () {
  "use strict";
  const live = document.getElementById("live");
  const flash = document.getElementById("flash");
  let busy = false;

  async function refresh() {
    if (busy || document.hidden) return;
    const open = new Set([...live.querySelectorAll("details[open]")].map((d) => d.dataset.job));
    try {
      const response = await fetch(live.dataset.src, { credentials: "same-origin" });
      if (response.status === 401) { window.location.assign("/login?next=%2F"); return; }  // the session ended
      if (!response.ok) return;
      live.innerHTML = await response.text();
      for (const d of live.querySelectorAll("details")) if (open.has(d.dataset.job)) d.open = true;
    } catch (e) { /* the node restarting: try again on the next tick */ }
  }

  live.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-post]");
    if (!button) return;
    busy = true;
    button.disabled = true;
    try {
      const response = await fetch(button.dataset.post, { method: "POST", credentials: "same-origin" });
      const answer = await response.json();
      flash.textContent = response.ok ? `${answer.action}: ${answer.requeued}` : `refused: ${answer.detail}`;
      flash.hidden = false;
    } finally {
      busy = false;
      refresh();
    }
  });

  setInterval(refresh, 2000);
})();
