// Run by tests/browser/test_diagram_layout.py in the page: every <text> of every displayed
// cell drawing, measured on screen (getBoundingClientRect), and what collides.
// Returns {texts, badges, overlaps: [...], outside: [...], cpuIdHeights: [...]}.
var MIN = 0.5; // px of overlap that counts (touching edges does not)
function label(el) {
  var own = "";
  el.childNodes.forEach(function (n) { if (n.nodeType === 3) own += n.data; });
  var thread = el.closest("g.thread");
  var where = thread ? "CPU " + thread.getAttribute("data-cpu") : "box";
  var diagram = el.closest(".numa-diagram");
  var side = diagram && diagram.closest("section[id]") ? diagram.closest("section[id]").id + " " : "";
  var cell = el.closest("svg.cell-diagram").getAttribute("data-cell");
  return side + "node " + cell + " " + where + " " + (el.tagName === "text" ? JSON.stringify(own) : el.getAttribute("class") || el.parentNode.getAttribute("class"));
}
function box(el) {
  var r = el.getBoundingClientRect();
  return {el: el, l: r.left, t: r.top, r: r.right, b: r.bottom};
}
function hit(a, b) {
  return Math.min(a.r, b.r) - Math.max(a.l, b.l) > MIN && Math.min(a.b, b.b) - Math.max(a.t, b.t) > MIN;
}
function inside(a, b) {
  return a.l >= b.l - MIN && a.r <= b.r + MIN && a.t >= b.t - MIN && a.b <= b.b + MIN;
}
var result = {texts: 0, badges: 0, overlaps: [], outside: [], cpuIdHeights: []};
document.querySelectorAll("svg.cell-diagram").forEach(function (svg) {
  if (!svg.getClientRects().length) return; // in a closed cell
  var texts = Array.prototype.map.call(svg.querySelectorAll("text"), box);
  var badges = Array.prototype.map.call(
    svg.querySelectorAll("g.chip > rect, g.emulator-mark > rect, rect.float-mark"), box);
  result.texts += texts.length;
  result.badges += badges.length;
  texts.forEach(function (t) {
    var g = t.el.parentNode;
    if (g.matches("g.thread") && t.el.textContent.trim() === g.getAttribute("data-cpu")) {
      result.cpuIdHeights.push(t.b - t.t);
    }
    // A text stays inside its badge (a chip's label) and inside its thread's box.
    var badge = t.el.closest("g.chip, g.emulator-mark");
    var own = badge && badge.querySelector(":scope > rect");
    if (own && !inside(t, box(own))) result.outside.push(label(t.el) + " outside its badge");
    var thread = t.el.closest("g.thread");
    var frame = thread && thread.querySelector(":scope > rect.thread-box");
    if (frame && !inside(t, box(frame))) result.outside.push(label(t.el) + " outside its thread box");
  });
  // Sweep along x: only boxes whose x-ranges meet are compared.
  var items = texts.map(function (t) { return {k: "text", b: t}; })
    .concat(badges.map(function (b) { return {k: "badge", b: b}; }));
  items.sort(function (x, y) { return x.b.l - y.b.l; });
  var open = [];
  items.forEach(function (item) {
    open = open.filter(function (o) { return o.b.r > item.b.l + MIN; });
    open.forEach(function (o) {
      if (o.k === "badge" && item.k === "badge") return; // marks side by side are the grid's business
      if (!hit(o.b, item.b)) return;
      var text = o.k === "text" ? o : item, other = o === text ? item : o;
      var mine = other.k === "badge" && !other.b.el.matches("rect.float-mark") &&
        other.b.el.parentNode.contains(text.b.el);
      if (mine) return; // a chip's or an emulator mark's own label
      result.overlaps.push(label(text.b.el) + " overlaps " + label(other.b.el));
    });
    open.push(item);
  });
});
return result;
