// numastat history charts (templates/hosts/host_numastat.html) drawn with the vendored uPlot.
// The data is the page's json_script #numastat-data (hosts.sampling.History.as_json):
//   times: bucket starts in epoch seconds; cells: [0, 1, ...];
//   series: {counter: {"<cell>": [value or null, ...]}}; free_mib: {"<cell>": [...]}.
// null is a bucket without a rate (no sample, or a reboot): uPlot leaves a gap there.
// Every chart is a div.plot[data-series]; its title and explanation are server-rendered.
(function () {
  "use strict";

  // Shared with the other history charts (charts.js, loaded first).
  var C = window.NumaPortalCharts;
  var COLOURS = C.COLOURS, HEIGHT = C.HEIGHT, timeTicks = C.timeTicks, timeSeries = C.timeSeries;

  function compact(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return +(v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return +(v / 1e3).toFixed(1) + "k";
    return String(+v.toFixed(2));
  }

  function valuesFor(data, key) {
    var perCell = key === "free_mib" ? data.free_mib : data.series[key];
    return data.cells.map(function (cell) {
      return (perCell && perCell[String(cell)]) || data.times.map(function () { return null; });
    });
  }

  function yRange(unit) {
    // Up to 100%, down to the next 10% below the lowest value: 97% vs 99% stays visible.
    if (unit === "%") {
      return {
        range: function (u, min) {
          return [min == null ? 0 : Math.max(0, Math.floor((min - 2) / 10) * 10), 100];
        },
      };
    }
    // Rates and memory from zero, so that a small wobble does not look like a cliff.
    return {
      range: function (u, min, max) {
        return [0, max > 0 ? max * 1.08 : 1];
      },
    };
  }

  function draw(el, data) {
    var unit = el.getAttribute("data-unit") || "";
    var series = [
      timeSeries,
    ];
    data.cells.forEach(function (cell, i) {
      series.push({
        label: "node" + cell,
        stroke: COLOURS[i % COLOURS.length],
        width: 1.5,
        spanGaps: false, // a null stays a gap
        value: function (u, v) {
          return v == null ? "-" : v.toLocaleString(undefined, { maximumFractionDigits: 1 }) + " " + unit;
        },
      });
    });
    var opts = {
      width: Math.max(el.clientWidth, 280),
      height: HEIGHT,
      scales: { x: { time: true }, y: yRange(unit) },
      series: series,
      axes: [
        { values: timeTicks },
        { size: 56, values: function (u, splits) { return splits.map(compact); } },
      ],
      cursor: { drag: { x: true, y: false } },
    };
    return new uPlot(opts, [data.times].concat(valuesFor(data, el.getAttribute("data-series"))), el);
  }

  C.start("numastat-data", ".numastat-chart .plot[data-series]", draw);
})();
