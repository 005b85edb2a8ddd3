// Progressive enhancement only: every page works without it. Charts (Chart.js, vendored) and live job progress.
"use strict";

function loadChartJs(done) {
  if (window.Chart) { done(); return; }
  const s = document.createElement("script");
  s.src = "/console/static/vendor/chart.umd.min.js";
  s.onload = done;
  document.head.appendChild(s);
}

function drawCharts() {
  const canvases = document.querySelectorAll("canvas[data-chart]");
  if (!canvases.length) return;
  loadChartJs(function () {
    canvases.forEach(function (canvas) {
      const labels = JSON.parse(canvas.dataset.labels || "[]");
      let values = JSON.parse(canvas.dataset.values || "[]");
      const scale = Number(canvas.dataset.scale || "1");
      values = values.map(function (v) { return v * scale; });
      if (canvas.dataset.cumulative === "true") {
        let sum = 0;
        values = values.map(function (v) { sum += v; return Math.round(sum * 1000) / 1000; });
      }
      new window.Chart(canvas, {
        type: canvas.dataset.chart,
        data: { labels: labels, datasets: [{ label: canvas.dataset.label || "", data: values,
          backgroundColor: "#0b5d3b", borderColor: "#0b5d3b" }] },
        options: { responsive: true, animation: false, scales: { y: { beginAtZero: true } } },
      });
    });
  });
}

function followJob() {
  const box = document.getElementById("job-progress");
  if (!box || box.dataset.done === "true") return;
  const url = box.dataset.progressUrl;
  const timer = setInterval(function () {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) {
        if (!job) return;
        document.getElementById("job-bar").value = job.progress || 0;
        if (job.finished) {
          clearInterval(timer);
          window.location.reload();  // the per-row results, rendered by the server
        }
      })
      .catch(function () { /* the Refresh link still works */ });
  }, 1000);
}

document.addEventListener("DOMContentLoaded", function () {
  drawCharts();
  followJob();
});
