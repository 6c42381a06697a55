// mlc ui: the page's own small script. Part of mlc (same licence); no library, nothing fetched from elsewhere.
// 1. Times: the server renders <time datetime="ISO">... UTC</time>; this rewrites each in the
//    browser's local time with a relative hint ("3 min ago"). Without JavaScript the UTC text stays.
// 2. Live pages: the server renders every section (escaped once, in Python); this polls the page's
//    JSON endpoint and swaps in the sections whose fingerprint changed.
"use strict";
(function () {
  function ago(when, now) {
    const s = Math.round((now - when) / 1000);
    const a = Math.abs(s);
    let text;
    if (a < 45) return "just now";
    if (a < 5400) text = Math.round(a / 60) + " min";
    else if (a < 129600) text = Math.round(a / 3600) + " h";
    else text = Math.round(a / 86400) + " days";
    return s >= 0 ? text + " ago" : "in " + text;
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function localise(root) {
    const now = Date.now();
    for (const el of (root || document).querySelectorAll("time[datetime]")) {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) continue;
      const local = when.getFullYear() + "-" + pad(when.getMonth() + 1) + "-" + pad(when.getDate()) + " " +
        pad(when.getHours()) + ":" + pad(when.getMinutes()) + ":" + pad(when.getSeconds());
      el.textContent = local + " ";
      const hint = document.createElement("span");
      hint.className = "ago";
      hint.textContent = "(" + ago(when, now) + ")";
      el.appendChild(hint);
      el.dataset.local = "1";
    }
  }
  localise();
  setInterval(localise, 30000);

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
          localise(el);
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
