// microseg console: draws every <div data-chart="ID"> from the JSON in <script type="application/json" id="ID">
// with uPlot (vendored, MIT). No other script runs on the console's pages.
(function () {
  "use strict";
  var palette = ["#2456c9", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#e67700", "#5c940d", "#364fc7", "#a61e4d"];
  function draw(el) {
    var source = document.getElementById(el.getAttribute("data-chart"));
    if (!source) { return; }
    var spec = JSON.parse(source.textContent);
    var width = Math.max(el.clientWidth, 300);
    if (!spec.x || spec.x.length === 0) {
      el.textContent = "no data yet";
      el.className += " empty";
      return;
    }
    var bars = spec.kind === "bars";
    var labels = spec.labels || null;
    var series = [{}];
    var data = [spec.x];
    spec.series.forEach(function (s, i) {
      var color = palette[i % palette.length];
      var one = { label: s.label, stroke: color, width: bars ? 1 : 2, points: { show: spec.x.length < 3 } };
      if (bars) {
        one.fill = color + "99";
        one.paths = uPlot.paths.bars({ size: [0.8 / spec.series.length, 60], align: 0, gap: 1 });
      }
      series.push(one);
      data.push(s.values);
    });
    var opts = {
      width: width, height: 240, series: series,
      scales: { x: { time: !labels }, y: { range: function (u, min, max) { return [0, Math.max(max, 1) * 1.1]; } } },
      axes: [labels ? { values: function (u, ticks) { return ticks.map(function (t) { return labels[t] !== undefined ? labels[t] : ""; }); } } : {}, {}],
      legend: { show: true }
    };
    if (labels) { opts.scales.x.range = [-0.5, labels.length - 0.5]; opts.axes[0].splits = function () { return spec.x; }; }
    new uPlot(opts, data, el);
    el.setAttribute("data-drawn", "1");
  }
  document.querySelectorAll("[data-chart]").forEach(draw);
})();
