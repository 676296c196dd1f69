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

  window.NumaPortalCharts = {
    COLOURS: COLOURS,
    HEIGHT: 220,
    clock: clock,
    day: day,
    timeTicks: timeTicks,
    timeSeries: timeSeries,
  };
})();
