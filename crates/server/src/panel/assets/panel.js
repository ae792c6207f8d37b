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
  // A map is one stop of the Tab key; arrow keys, Home and End move
  // within it (with scripts off, every cell is a stop of its own).
  for (const m of document.querySelectorAll(".map")) {
    const cells = [...m.querySelectorAll(".cell")];
    cells.forEach((c, i) => { c.tabIndex = i === 0 ? 0 : -1; });
    m.addEventListener("keydown", (e) => {
      const i = cells.indexOf(document.activeElement);
      if (i < 0) return;
      const first = cells[0].getBoundingClientRect().top;
      const per = Math.max(1, cells.findIndex((c) => c.getBoundingClientRect().top > first));
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: per, ArrowUp: -per,
                     Home: -i, End: cells.length - 1 - i }[e.key];
      if (step === undefined) return;
      e.preventDefault();
      const j = Math.min(cells.length - 1, Math.max(0, i + step));
      cells[i].tabIndex = -1; cells[j].tabIndex = 0; cells[j].focus();
    });
  }
  for (const c of document.querySelectorAll(".map .cell")) {
    c.addEventListener("mouseenter", () => show(c));
    c.addEventListener("focus", () => show(c));
    c.addEventListener("mouseleave", () => { tip.hidden = true; });
    c.addEventListener("blur", () => { tip.hidden = true; });
  }
});
