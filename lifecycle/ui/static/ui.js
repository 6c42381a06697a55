// mlc ui: keep an open page live. Part of mlc (same licence); no library, nothing fetched from elsewhere.
// The server renders every section (escaped once, in Python); this script polls the page's JSON
// endpoint and swaps in the sections whose fingerprint changed.
"use strict";
(function () {
  const body = document.body;
  const url = body.dataset.poll;
  if (!url) return;
  const interval = Number(body.dataset.interval) || 1500;
  const badge = document.getElementById("live-state");

  function show(text, ok) {
    if (!badge) return;
    badge.textContent = text;
    badge.className = ok ? "live ok" : "live down";
  }

  async function tick() {
    try {
      const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      for (const [name, part] of Object.entries(data.sections || {})) {
        const el = document.querySelector('[data-live="' + CSS.escape(name) + '"]');
        if (el && el.dataset.digest !== part.digest) {
          el.innerHTML = part.html;
          el.dataset.digest = part.digest;
        }
      }
      show("live · " + new Date().toLocaleTimeString(), true);
    } catch (err) {
      show("not updating: mlc ui does not answer (" + err.message + ")", false);
    } finally {
      setTimeout(tick, interval);
    }
  }
  tick();
})();
