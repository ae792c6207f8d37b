// vmfabric panel: progressive enhancement only. Pages read and forms work
// without it; with it, destructive forms ask first, copy buttons copy, and
// map cells show their holder in a tooltip on hover and focus.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const f of document.querySelectorAll("form[data-confirm]")) {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  }
  for (const b of document.querySelectorAll("button[data-copy]")) {
    b.hidden = false;
    b.addEventListener("click", async () => {
      const text = document.getElementById(b.dataset.copy).textContent;
      try { await navigator.clipboard.writeText(text); b.textContent = "Copied"; }
      catch (_) { b.textContent = "Select the text to copy"; }
    });
  }
  const tip = document.createElement("div");
  tip.className = "tip"; tip.hidden = true; tip.setAttribute("aria-hidden", "true");
  document.body.appendChild(tip);
  const show = (c) => {
    const r = c.getBoundingClientRect();
    tip.textContent = c.dataset.tip; tip.hidden = false;
    tip.style.left = Math.min(r.left, window.innerWidth - 320) + "px";
    tip.style.top = (r.bottom + 6) + "px";
  };
  for (const c of document.querySelectorAll(".map .cell")) {
    c.addEventListener("mouseenter", () => show(c));
    c.addEventListener("focus", () => show(c));
    c.addEventListener("mouseleave", () => { tip.hidden = true; });
    c.addEventListener("blur", () => { tip.hidden = true; });
  }
});
