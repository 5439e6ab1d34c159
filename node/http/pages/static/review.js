// Results page: the radiologist's verdict, posted as JSON to /api/jobs/{id}/review; the page reloads to show it.
(function () {
  "use strict";
  const form = document.getElementById("review");
  const flash = document.getElementById("flash");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const verdict = event.submitter ? event.submitter.value : "accepted";
    const body = { verdict: verdict, reviewer: form.elements.reviewer.value || null };
    if (verdict === "rejected") body.reason = form.elements.reason.value;
    for (const b of form.querySelectorAll("button")) b.disabled = true;
    try {
      const response = await fetch(form.dataset.post, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (response.ok) { window.location.reload(); return; }
      flash.textContent = `refused: ${typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail)}`;
      flash.hidden = false;
    } finally {
      for (const b of form.querySelectorAll("button")) b.disabled = false;
    }
  });
})();
