// A VM's locality history (templates/vms/_locality.html) drawn with the vendored uPlot, in
// the numastat history's look (same colours per cell, same time axis).
// The data is the page's json_script #locality-data (vms.locality_history.LocalityHistory):
//   times: bucket starts in epoch seconds; locality / locality_min: [0..1 or null, ...];
//   cells: [0, 1, ...]; own_mib: {"<cell>": [MiB or null, ...]}; threshold: 0..1;
//   home_cells: [cells its vCPUs may run on now].
// null is a bucket without a sample: uPlot leaves a gap there.
(function () {
  "use strict";

  // Shared with the other history charts (charts.js, loaded first).
  var C = window.NumaPortalCharts;
  var COLOURS = C.COLOURS, HEIGHT = C.HEIGHT, timeTicks = C.timeTicks, timeSeries = C.timeSeries;

  function fmt(unit, digits) {
    return function (u, v) {
      return v == null ? "-" : v.toLocaleString(undefined, { maximumFractionDigits: digits }) + unit;
    };
  }

  function localityChart(el, data) {
    var threshold = data.times.map(function () { return data.threshold; });
    var series = [
      timeSeries,
      { label: "locality", stroke: COLOURS[0], width: 1.5, spanGaps: false, value: fmt("", 2) },
      { label: "lowest", stroke: COLOURS[1], width: 1, spanGaps: false, value: fmt("", 2) },
      { label: "threshold", stroke: "#b3261e", width: 1, dash: [6, 4], value: fmt("", 2) },
    ];
    return [series, [data.times, data.locality, data.locality_min, threshold], { range: [0, 1] }];
  }

  function memoryChart(el, data) {
    var home = {};
    (data.home_cells || []).forEach(function (c) { home[String(c)] = true; });
    var series = [timeSeries];
    var values = [data.times];
    data.cells.forEach(function (cell, i) {
      series.push({
        label: "node" + cell + (home[String(cell)] ? " (home)" : ""),
        stroke: COLOURS[cell % COLOURS.length],
        width: 1.5,
        spanGaps: false,
        value: fmt(" MiB", 1),
      });
      values.push(data.own_mib[String(cell)] || data.times.map(function () { return null; }));
    });
    var range = {
      range: function (u, min, max) {
        return [0, max > 0 ? max * 1.08 : 1];
      },
    };
    return [series, values, range];
  }

  function draw(el, data) {
    var kind = el.getAttribute("data-series");
    var made = kind === "locality" ? localityChart(el, data) : memoryChart(el, data);
    var opts = {
      width: Math.max(el.clientWidth, 280),
      height: HEIGHT,
      scales: { x: { time: true }, y: made[2] },
      series: made[0],
      axes: [{ values: timeTicks }, { size: 56 }],
      cursor: { drag: { x: true, y: false } },
    };
    return new uPlot(opts, made[1], el);
  }

  C.start("locality-data", ".locality-chart .plot[data-series]", draw);
})();
