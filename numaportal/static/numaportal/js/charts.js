// What the history charts share (numastat.js, locality.js), drawn with the vendored uPlot: one
// colour per cell on every chart, the same height, and the time axis in the browser's zone.
(function () {
  "use strict";

  var COLOURS = ["#2456a6", "#c0561b", "#1f7a3a", "#8e3ba8", "#b3261e", "#0f8290", "#8a6d00", "#5b6475"];

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }
  // Local time (the browser's zone), 24-hour clock.
  function clock(d) {
    return pad(d.getHours()) + ":" + pad(d.getMinutes());
  }
  function day(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  }
  // Clock times within two days, dates (and times off midnight) beyond.
  function timeTicks(u, splits) {
    var span = u.scales.x.max - u.scales.x.min;
    return splits.map(function (t) {
      var d = new Date(t * 1000);
      if (span <= 2 * 86400) return clock(d);
      return clock(d) === "00:00" ? day(d).slice(5) : day(d).slice(5) + " " + clock(d);
    });
  }
  // uPlot's first series: the time of the point under the cursor.
  var timeSeries = {
    label: "time",
    value: function (u, t) {
      if (t == null) return "-";
      var d = new Date(t * 1000);
      return day(d) + " " + clock(d);
    },
  };

  var HEIGHT = 220;

  // Draw every ``selector`` chart from the page's json_script ``dataId`` with ``draw(el,
  // data)`` once the page is parsed, and keep them as wide as their containers.
  function start(dataId, selector, draw) {
    function init() {
      var source = document.getElementById(dataId);
      if (!source || typeof uPlot === "undefined") return;
      var data = JSON.parse(source.textContent);
      var plots = [];
      document.querySelectorAll(selector).forEach(function (el) {
        plots.push({ el: el, plot: draw(el, data) });
      });
      var pending = null;
      window.addEventListener("resize", function () {
        clearTimeout(pending);
        pending = setTimeout(function () {
          plots.forEach(function (p) {
            p.plot.setSize({ width: Math.max(p.el.clientWidth, 280), height: HEIGHT });
          });
        }, 150);
      });
    }
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
    else init();
  }

  window.NumaPortalCharts = {
    COLOURS: COLOURS,
    HEIGHT: HEIGHT,
    start: start,
    clock: clock,
    day: day,
    timeTicks: timeTicks,
    timeSeries: timeSeries,
  };
})();
