// Host topology diagram (hosts/diagram.py): zoom, expand/collapse all, highlight a VM on hover.
// Vanilla, no dependencies; the diagram is fully readable without it.
(function () {
  "use strict";

  function setup(root) {
    var toolbar = root.querySelector(".numa-toolbar");
    var scale = 1;

    function applyZoom() {
      root.classList.toggle("zoomed", scale !== 1);
      root.querySelectorAll("svg.cell-diagram").forEach(function (svg) {
        var natural = parseFloat(svg.getAttribute("width"));
        svg.style.width = scale === 1 ? "" : natural * scale + "px";
      });
    }

    // A collapsed cell's drawing arrives later (htmx, when the cell opens): zoom it too.
    root.addEventListener("htmx:afterSwap", applyZoom);

    if (toolbar) {
      toolbar.hidden = false;
      toolbar.addEventListener("click", function (event) {
        var button = event.target.closest("button[data-action]");
        if (!button) return;
        var action = button.getAttribute("data-action");
        if (action === "zoom-in") scale = Math.min(scale * 1.25, 4);
        else if (action === "zoom-out") scale = Math.max(scale / 1.25, 0.25);
        else if (action === "zoom-fit") scale = 1;
        else if (action === "expand" || action === "collapse") {
          root.querySelectorAll("details.cell").forEach(function (d) {
            d.open = action === "expand";
          });
          return;
        }
        applyZoom();
      });
    }

    var current = null;
    function highlight(uuid) {
      if (uuid === current) return;
      current = uuid;
      root.classList.toggle("highlighting", uuid !== null);
      // Compare attribute values instead of building a selector from a host-supplied string.
      root.querySelectorAll("[data-vm-uuid]").forEach(function (el) {
        el.classList.toggle("active", uuid !== null && el.getAttribute("data-vm-uuid") === uuid);
      });
    }
    root.addEventListener("mouseover", function (event) {
      var el = event.target.closest("[data-vm-uuid]");
      highlight(el && root.contains(el) ? el.getAttribute("data-vm-uuid") : null);
    });
    root.addEventListener("mouseleave", function () { highlight(null); });
  }

  function init() {
    document.querySelectorAll(".numa-diagram").forEach(setup);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
