// The drift timeline: three aligned uPlot panels (image statistic with its band, prediction
// vs sensor, absolute error) with vertical markers for drift events, sweeps, promotions,
// rollbacks, deployment changes and version switches. Data: /drift/<name>/timeline.json,
// refreshed every data-refresh seconds.
(function () {
  "use strict";
  const root = document.getElementById("timeline");
  if (!root) return;
  const COLOURS = { drift: "#dc2626", resolved: "#16a34a", sweep: "#7c3aed", promotion: "#2563eb",
                    rollback: "#ea580c", switch: "#0d9488", change: "#6b7280" };
  const sync = uPlot.sync("timeline");
  const charts = {};
  let latest = null;

  const GAP_S = 15;
  // Frames further apart than GAP_S are not joined by the rolling-mean lines.
  function withGaps(columns) {
    const [t, ...series] = columns;
    const out = columns.map(() => []);
    for (let i = 0; i < t.length; i++) {
      if (i > 0 && t[i] - t[i - 1] > GAP_S) {
        out[0].push(t[i - 1] + GAP_S / 2);
        series.forEach((_, k) => out[k + 1].push(null));
      }
      out[0].push(t[i]);
      series.forEach((values, k) => out[k + 1].push(values[i]));
    }
    return out;
  }

  function markerPlugin(band) {
    return { hooks: { draw: [(u) => {
      if (!latest) return;
      const ctx = u.ctx;
      ctx.save();
      if (band && latest.band) {
        const top = u.valToPos(latest.band.hi, "y", true), bottom = u.valToPos(latest.band.lo, "y", true);
        ctx.fillStyle = "rgba(22, 163, 74, 0.10)";
        ctx.fillRect(u.bbox.left, top, u.bbox.width, bottom - top);
      }
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5 * devicePixelRatio;
      for (const m of latest.markers) {
        const x = u.valToPos(m.t, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
        ctx.strokeStyle = COLOURS[m.kind] || "#6b7280";
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
      }
      ctx.restore();
    }] } };
  }

  function dots(label, colour) {
    return { label, stroke: colour, paths: () => null, points: { show: true, size: 3, fill: colour, stroke: colour } };
  }
  function line(label, colour) {
    return { label, stroke: colour, width: 2, spanGaps: false, points: { show: false } };
  }

  function options(id, title, yLabel, series, band) {
    const el = document.getElementById(id);
    return { title, width: Math.max(400, el.clientWidth - 16), height: 190,
             cursor: { sync: { key: sync.key } }, scales: { x: { time: true } },
             axes: [{}, { label: yLabel, size: 60 }], series: [{}, ...series], plugins: [markerPlugin(band)] };
  }

  function draw(data) {
    latest = data;
    const panels = {
      "plot-stat": { title: data.statistic + (data.band ? ` (band ${data.band.lo}–${data.band.hi}, rule ${data.band.rule})` : ""),
                     y: data.statistic, band: true,
                     series: [dots("frame", "#9ca3af"), line("30-s mean", "#2563eb")],
                     values: [data.stat, data.stat_mean] },
      "plot-distance": { title: "prediction vs sensor", y: "mm",
                         series: [dots("prediction", "#2563eb"), dots("ToF sensor", "#f59e0b")],
                         values: [data.prediction, data.sensor] },
      "plot-error": { title: "|error|", y: "mm",
                      series: [dots("frame", "#9ca3af"), line("30-s MAE", "#dc2626")],
                      values: [data.error, data.error_mean] },
    };
    for (const [id, p] of Object.entries(panels)) {
      const aligned = withGaps([data.t, ...p.values]);
      if (charts[id]) {
        charts[id].setData(aligned);
      } else {
        // cursor.sync.key subscribes the panel to the shared cursor.
        charts[id] = new uPlot(options(id, p.title, p.y, p.series, p.band), aligned, document.getElementById(id));
      }
    }
    const list = document.getElementById("markers");
    list.replaceChildren(...data.markers.map((m) => {
      const li = document.createElement("li");
      li.className = "marker marker-" + m.kind;
      li.dataset.kind = m.kind;
      li.textContent = new Date(m.t * 1000).toLocaleTimeString() + " " + m.label;
      return li;
    }));
    root.dataset.points = String(data.t.length);
    root.dataset.markers = data.markers.map((m) => m.kind).join(" ");
    document.getElementById("timeline-status").textContent =
      `${data.t.length} frames, ${data.markers.length} markers, updated ${new Date().toLocaleTimeString()}`;
  }

  async function refresh() {
    try {
      const reply = await fetch(root.dataset.url, { headers: { Accept: "application/json" } });
      const data = await reply.json();
      if (!reply.ok) {
        document.getElementById("timeline-status").textContent = "timeline unavailable: " + (data.error || reply.status);
      } else {
        draw(data);
      }
    } catch (err) {
      document.getElementById("timeline-status").textContent = "timeline unavailable: " + err;
    }
    setTimeout(refresh, 1000 * Number(root.dataset.refresh || 5));
  }
  refresh();
})();
