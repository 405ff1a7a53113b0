// Draws the charts of a Canary's page from the JSON the server put in #chart-data, with uPlot.
// Data: {weight: [[t, w], ...], start, end, metrics: [{name, min, max, lines: {canary: [[t, v]], primary: ...}, problem}]}
(function () {
  "use strict";
  var holder = document.getElementById("charts");
  var source = document.getElementById("chart-data");
  if (!holder || !source) return;
  var data = JSON.parse(source.textContent || "{}");
  var WIDTH = 540, HEIGHT = 220;

  function chart(title, id) {
    var box = document.createElement("div");
    box.className = "chart";
    box.id = id;
    holder.appendChild(box);
    return box;
  }

  function problem(box, title, text) {
    var p = document.createElement("p");
    p.className = "problem";
    p.textContent = title + ": " + text;
    box.appendChild(p);
  }

  // Lines of [t, v] points on one time axis: the union of their times, null where a line has none.
  function aligned(lines) {
    var times = {};
    lines.forEach(function (line) { line.forEach(function (p) { times[p[0]] = true; }); });
    var xs = Object.keys(times).map(Number).sort(function (a, b) { return a - b; });
    var columns = [xs];
    lines.forEach(function (line) {
      var byTime = {};
      line.forEach(function (p) { byTime[p[0]] = p[1]; });
      columns.push(xs.map(function (t) { return t in byTime ? byTime[t] : null; }));
    });
    return columns;
  }

  // Weight over time, as steps: the weight holds from one change to the next, up to now.
  if (data.weight) {
    var points = data.weight.slice();
    if (points.length) points.push([data.end, points[points.length - 1][1]]);
    var box = chart("Canary weight", "chart-weight");
    if (!points.length) {
      problem(box, "Canary weight", "no weight change in this window yet");
    } else {
      new uPlot({
        title: "Canary weight (%)", width: WIDTH, height: HEIGHT,
        scales: { y: { range: [0, 100] } },
        series: [{}, { label: "canary weight", stroke: "#2456c8", width: 2, fill: "rgba(36,86,200,0.08)",
                       paths: uPlot.paths.stepped({ align: 1 }) }],
      }, aligned([points]), box);
    }
  }

  (data.metrics || []).forEach(function (metric, index) {
    var box = chart(metric.name, "chart-metric-" + index);
    var names = Object.keys(metric.lines || {});
    if (!names.length) {
      problem(box, metric.name, metric.problem || "no data");
      return;
    }
    var lines = names.map(function (name) { return metric.lines[name]; });
    var series = [{}];
    var colours = { canary: "#2456c8", primary: "#6b7280" };
    names.forEach(function (name) { series.push({ label: name, stroke: colours[name] || "#2456c8", width: 2 }); });
    var columns = aligned(lines);
    [["min", metric.min], ["max", metric.max]].forEach(function (bound) {
      if (bound[1] === null || bound[1] === undefined) return;
      series.push({ label: "threshold " + bound[0], stroke: "#b42318", dash: [6, 4], width: 1 });
      columns.push(columns[0].map(function () { return bound[1]; }));
    });
    new uPlot({ title: metric.name, width: WIDTH, height: HEIGHT, series: series }, columns, box);
  });
})();
