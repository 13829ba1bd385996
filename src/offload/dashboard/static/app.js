/* offload dashboard: auto-refresh of marked regions, confirmations, overview charts.
   Hand-written, no build step. Charts use the vendored uPlot (MIT, see uplot.LICENSE). */
(function () {
  "use strict";

  // -- confirmations ------------------------------------------------------------------
  // A form's data-confirm may hold "{action}" (the submit button's data-confirm-action);
  // once confirmed, its hidden "confirmed" field says so to the server, which otherwise
  // asks again on a page of its own (bulk actions).
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var message = form.getAttribute && form.getAttribute("data-confirm");
    if (!message) return;
    var action = ev.submitter && ev.submitter.getAttribute("data-confirm-action");
    message = message.replace("{action}", action || "Apply to");
    if (!window.confirm(message)) { ev.preventDefault(); return; }
    var flag = form.querySelector('input[name="confirmed"]');
    if (flag) flag.value = "1";
  });

  // -- auto-refresh: re-fetch this page and swap regions marked data-refresh="seconds" --
  function toggleFor(id) {
    return document.querySelector('[data-auto-refresh="' + id + '"]');
  }
  function refreshOn(el) {
    var toggle = toggleFor(el.id);
    if (!toggle) return;
    var key = "offload.refresh." + location.pathname + "." + el.id;
    if (localStorage.getItem(key) === "off") toggle.checked = false;
    toggle.addEventListener("change", function () {
      localStorage.setItem(key, toggle.checked ? "on" : "off");
    });
  }
  function openDetails(root) {
    var open = [];
    root.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.push(i); });
    return open;
  }
  function schedule(el) {
    var seconds = parseFloat(el.getAttribute("data-refresh")) || 5;
    refreshOn(el);
    var timer = setInterval(function () {
      var toggle = toggleFor(el.id);
      if (toggle && !toggle.checked) return;
      if (document.hidden || el.contains(document.activeElement)) return;
      fetch(location.href, { credentials: "same-origin", headers: { "X-Refresh": "1" } })
        .then(function (r) {
          if (r.redirected || !r.ok) { clearInterval(timer); return null; }
          return r.text();
        })
        .then(function (html) {
          if (html === null) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(el.id);
          if (!fresh) { clearInterval(timer); return; }
          if (!fresh.hasAttribute("data-refresh")) { clearInterval(timer); location.reload(); return; }
          var open = openDetails(el);
          el.innerHTML = fresh.innerHTML;
          var details = el.querySelectorAll("details");
          open.forEach(function (i) { if (details[i]) details[i].open = true; });
        })
        .catch(function () { /* next tick tries again */ });
    }, seconds * 1000);
  }
  document.querySelectorAll("[data-refresh]").forEach(function (el) { if (el.id) schedule(el); });

  // -- overview charts ----------------------------------------------------------------
  var dataEl = document.getElementById("overview-data");
  if (!dataEl) return;
  var data = JSON.parse(dataEl.textContent);
  var depth = { t: [], due: [], inflight: [], scheduled: [] };
  var charts = {};
  var palette = { created: "#4c6ef5", completed: "#2f9e44", failed: "#e03131",
                  cancelled: "#868e96", lag: "#f08c00", lagMax: "#fab005",
                  due: "#7048e8", inflight: "#1c7ed6", scheduled: "#adb5bd" };

  function sample(d) {
    depth.t.push(d.at); depth.due.push(d.queue.due);
    depth.inflight.push(d.queue.inflight); depth.scheduled.push(d.queue.scheduled);
    if (depth.t.length > 720) Object.keys(depth).forEach(function (k) { depth[k].shift(); });
  }
  function series(label, color, opts) {
    var s = { label: label, stroke: color, width: 2, spanGaps: false };
    for (var k in opts || {}) s[k] = opts[k];
    return s;
  }
  function make(id, seriesList, rows, yLabel, windowS) {
    var el = document.getElementById(id);
    if (!el || typeof uPlot === "undefined") return null;
    var x = { time: true };
    // A fixed trailing window, so one sample does not stretch the axis over years; with
    // no sample yet (max is null) the window ends now.
    if (windowS) x.range = function (u, min, max) {
      var end = (max === null || !isFinite(max)) ? Date.now() / 1000 : max;
      return [end - windowS, end + 5];
    };
    var opts = {
      width: Math.max(el.clientWidth, 280), height: 200,
      // Times in UTC, written unambiguously (YYYY-MM-DD HH:mm), as everywhere else on the
      // dashboard; uPlot's default M/D/YY in the browser's zone read as a wrong date.
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      series: [{ value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss} UTC" }].concat(seriesList),
      axes: [{ values: TIME_TICKS, size: 44 }, { label: yLabel, size: 56 }],
      scales: { x: x, y: { range: function (u, min, max) { return [0, Math.max(max || 0, 1) * 1.1]; } } },
      legend: { live: true },
      cursor: { drag: { x: false, y: false } }
    };
    return new uPlot(opts, rows, el);
  }
  // uPlot axis formats: [tick step (s), label, then on a new year/month/day/hour/minute/
  // second boundary, mode]; the date line shows on the first tick and where the day changes.
  var DAY = "\n{YYYY}-{MM}-{DD}";
  var TIME_TICKS = [
    [86400, "{YYYY}-{MM}-{DD}", null, null, null, null, null, null, 1],
    [60, "{HH}:{mm}", DAY, null, DAY, null, null, null, 1],
    [1, "{HH}:{mm}:{ss}", DAY, null, DAY, null, null, null, 1]
  ];
  function rowsFor(d) {
    var s = d.series;
    return {
      throughput: [s.t, s.created, s.completed, s.failed],
      failure: [s.t, s.failure_rate],
      lag: [s.t, s.lag_avg_s, s.lag_max_s],
      depth: [depth.t, depth.due, depth.inflight, depth.scheduled]
    };
  }
  function draw(d) {
    var rows = rowsFor(d);
    if (!charts.throughput) {
      charts.throughput = make("chart-throughput", [
        series("created", palette.created), series("completed", palette.completed),
        series("failed", palette.failed)], rows.throughput, "runs / min");
      charts.failure = make("chart-failure", [series("failure rate %", palette.failed,
        { points: { show: true } })], rows.failure, "%");
      charts.lag = make("chart-lag", [series("mean (s)", palette.lag, { points: { show: true } }),
        series("max (s)", palette.lagMax, { dash: [4, 4], points: { show: true } })],
        rows.lag, "seconds");
      charts.depth = make("chart-depth", [series("due now", palette.due,
        { points: { show: true } }), series("in flight", palette.inflight,
        { points: { show: true } }), series("scheduled", palette.scheduled,
        { points: { show: true } })], rows.depth, "items", 600);
    } else {
      Object.keys(charts).forEach(function (k) { if (charts[k]) charts[k].setData(rows[k]); });
    }
  }
  function updateCards(d) {
    var st = d.status;
    var values = { queued: st.queued, running: st.running, paused: st.sleeping + st.waiting,
                   completed: st.completed, failed: st.failed, due: d.queue.due };
    Object.keys(values).forEach(function (k) {
      var el = document.querySelector('[data-stat="' + k + '"]');
      if (el) el.textContent = values[k];
    });
  }
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (k) {
      var c = charts[k];
      if (c) c.setSize({ width: Math.max(c.root.parentNode.clientWidth - 2, 280), height: 200 });
    });
  });
  function start() {
    sample(data);
    draw(data);
    function poll() {
      if (document.hidden) return;
      fetch("/overview.json", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) { if (d) { data = d; sample(d); draw(d); updateCards(d); } })
        .catch(function () {});
    }
    setTimeout(poll, 1000);  // a second depth sample soon, so the live chart has a line
    setInterval(poll, 5000);
  }
  if (document.readyState === "complete") start(); else window.addEventListener("load", start);
})();
