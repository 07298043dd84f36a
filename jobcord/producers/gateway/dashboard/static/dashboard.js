// The dashboard's only script: live sections over server-sent events, and buttons that call
// the API's own routes (the session cookie authorises them; the header proves same origin).
"use strict";
(function () {
  const live = document.getElementById("live");
  const stream = document.body.dataset.stream;
  if (stream) {
    const source = new EventSource(stream);
    document.querySelectorAll("[data-live]").forEach((el) => {
      source.addEventListener(el.dataset.live, (e) => { el.innerHTML = e.data; });
    });
    source.addEventListener("fine", () => { live.textContent = "live"; live.className = "live on"; });
    source.addEventListener("trouble", (e) => { live.textContent = e.data; live.className = "live off"; });
    source.addEventListener("gone", (e) => { live.textContent = e.data; live.className = "live off"; source.close(); });
    source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
  }

  const flash = document.getElementById("flash");
  function say(text) { flash.textContent = text; }

  async function call(method, url) {
    const response = await fetch(url, {
      method, credentials: "same-origin", headers: { "X-Jobcord-Dashboard": "1" },
    });
    let detail = "";
    try { const body = await response.json(); detail = body.detail || body.status || ""; } catch (_) { /* no body */ }
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    return { ok: response.ok, status: response.status, detail };
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    event.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      if (button.dataset.action === "call") {
        const r = await call(button.dataset.method, button.dataset.url);
        say(r.ok ? `${button.textContent.trim()}: done (${r.detail || r.status})` : `${button.textContent.trim()} failed: HTTP ${r.status} ${r.detail}`);
      } else if (button.dataset.action === "retry-all") {
        const ids = button.dataset.ids.split(/\s+/).filter(Boolean);
        let done = 0, failed = 0, last = "";
        for (const id of ids) {
          const r = await call("POST", `/v1/requests/${encodeURIComponent(id)}/retry`);
          if (r.ok) done += 1; else { failed += 1; last = `HTTP ${r.status} ${r.detail}`; }
          say(`retried ${done} of ${ids.length}${failed ? `, ${failed} refused (${last})` : ""}`);
        }
      }
    } catch (err) {
      say(`failed: ${err}`);
    } finally {
      button.disabled = false;
    }
  });
})();
