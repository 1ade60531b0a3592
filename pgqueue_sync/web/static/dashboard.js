/* pgqueue-sync dashboard: small progressive enhancement over server-rendered pages.
 *
 * - Forms with data-confirm ask before they submit.
 * - The overview (#live) reads its JSON (data-src): the last hour once, then the last two
 *   minutes every data-refresh seconds; it updates the numbers in place and draws the
 *   charts as inline SVG. Text goes in with textContent only, never as markup.
 */
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute ? form.getAttribute("data-confirm") : null;
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  var live = document.getElementById("live");
  if (!live) {
    return;
  }

  var SVG = "http://www.w3.org/2000/svg";
  var source = live.getAttribute("data-src");
  var refreshMs = Math.max(1, Number(live.getAttribute("data-refresh")) || 10) * 1000;
  var span = Number(live.getAttribute("data-minutes")) || 60;
  var series = new Map();
  var lastData = null;

  function count(value) {
    return value === null || value === undefined ? "-" : Number(value).toLocaleString("en-US");
  }

  function seconds(value) {
    if (value === null || value === undefined) {
      return "-";
    }
    if (value < 1) {
      return Math.round(value * 1000) + " ms";
    }
    if (value < 60) {
      return value.toFixed(1) + " s";
    }
    var minutes = Math.floor(value / 60);
    if (minutes < 60) {
      return minutes + " min " + Math.floor(value % 60) + " s";
    }
    var hours = Math.floor(minutes / 60);
    if (hours < 48) {
      return hours + " h " + (minutes % 60) + " min";
    }
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }

  function clock(iso) {
    var d = new Date(iso);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }

  function el(name, attributes, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) {
      node.setAttribute(key, String(attributes[key]));
    });
    if (parent) {
      parent.appendChild(node);
    }
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) {
      return 1;
    }
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * power >= value) {
        return steps[i] * power;
      }
    }
    return 10 * power;
  }

  function compact(value) {
    if (value >= 1e6) {
      return Number((value / 1e6).toFixed(2)) + "M";
    }
    if (value >= 1e4) {
      return Number((value / 1e3).toFixed(1)) + "k";
    }
    return count(Math.round(value));
  }

  /* One chart: lines (or bars) of rows[*][key], a y axis from 0, minutes along x; axis
   * labels by axisFormat, the values of a minute (its tooltip) by format. */
  function draw(svg, rows, marks, axisFormat, format, integer) {
    if (!svg) {
      return;
    }
    var width = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 480);
    var height = 170;
    var left = 48;
    var right = 10;
    var top = 10;
    var bottom = 24;
    var plotW = width - left - right;
    var plotH = height - top - bottom;
    while (svg.firstChild) {
      svg.removeChild(svg.firstChild);
    }
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("height", String(height));
    var max = 0;
    rows.forEach(function (row) {
      marks.forEach(function (mark) {
        var v = row[mark.key];
        if (v !== null && v !== undefined && v > max) {
          max = v;
        }
      });
    });
    var top_ = niceMax(max);
    if (integer && top_ % 2) {
      top_ += 1; // a whole number at the middle line too
    }
    var n = Math.max(rows.length, 2);
    var step = plotW / (n - 1);
    var x = function (i) { return left + i * step; };
    var y = function (v) { return top + plotH - (v / top_) * plotH; };

    [0, 0.5, 1].forEach(function (f) {
      var v = top_ * f;
      el("line", { x1: left, x2: left + plotW, y1: y(v), y2: y(v), "class": "grid" }, svg);
      var label = el("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "class": "axis" }, svg);
      label.textContent = axisFormat(v);
    });
    if (rows.length) {
      [0, Math.floor((rows.length - 1) / 2), rows.length - 1].forEach(function (i, k) {
        var anchor = ["start", "middle", "end"][k];
        var label = el("text", { x: x(i), y: height - 6, "text-anchor": anchor, "class": "axis" }, svg);
        label.textContent = clock(rows[i].minute);
      });
    }
    marks.forEach(function (mark) {
      if (mark.bars) {
        var barW = Math.max(1, step * 0.7);
        rows.forEach(function (row, i) {
          var v = row[mark.key] || 0;
          if (v > 0) {
            el("rect", {
              x: x(i) - barW / 2, y: y(v), width: barW, height: top + plotH - y(v), "class": mark.cls
            }, svg);
          }
        });
        return;
      }
      var d = "";
      var pen = false;
      rows.forEach(function (row, i) {
        var v = row[mark.key];
        if (v === null || v === undefined) {
          pen = false;
          return;
        }
        d += (pen ? " L" : " M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
        pen = true;
      });
      if (d) {
        el("path", { d: d.trim(), "class": mark.cls }, svg);
      }
    });
    rows.forEach(function (row, i) {
      var hit = el("rect", {
        x: x(i) - step / 2, y: top, width: step, height: plotH, "class": "hit"
      }, svg);
      var title = el("title", {}, hit);
      title.textContent = clock(row.minute) + " UTC: " + marks.map(function (mark) {
        return mark.label + " " + format(row[mark.key]);
      }).join(", ");
    });
  }

  function rowsOf() {
    var keys = Array.from(series.keys()).sort();
    keys = keys.slice(Math.max(0, keys.length - span));
    var kept = new Map();
    var rows = keys.map(function (key) {
      kept.set(key, series.get(key));
      return series.get(key);
    });
    series = kept;
    return rows;
  }

  function charts() {
    var rows = rowsOf();
    var counts = function (v) { return v === null || v === undefined ? "-" : count(Math.round(v)); };
    var secs = function (v) {
      if (v === null || v === undefined) {
        return "-";
      }
      return v === 0 ? "0" : (v >= 10 ? compact(v) : v.toFixed(v >= 1 ? 1 : 2));
    };
    draw(document.getElementById("chart-throughput"), rows, [
      { key: "done", cls: "line-out", label: "out" },
      { key: "enqueued", cls: "line-in", label: "in" }
    ], compact, counts, true);
    draw(document.getElementById("chart-failures"), rows, [
      { key: "failed", cls: "bar-failed", label: "failures", bars: true }
    ], compact, counts, true);
    draw(document.getElementById("chart-latency"), rows, [
      { key: "pickup_latency_seconds", cls: "line-latency", label: "latency" }
    ], secs, seconds, false);
  }

  var FIELDS = {
    queued: count, deferred: count, picked: count, enqueued_last_minute: count,
    done_last_minute: count, failed_last_minute: count,
    pickup_latency_seconds: seconds, oldest_waiting_seconds: seconds
  };

  function numbers(data) {
    var byName = new Map();
    data.entrypoints.forEach(function (row) { byName.set(row.entrypoint, row); });
    var table = document.getElementById("entrypoints");
    var shown = 0;
    var changed = false;
    if (table) {
      Array.prototype.forEach.call(table.tBodies[0].rows, function (tr) {
        var row = byName.get(tr.getAttribute("data-entrypoint"));
        if (!row) {
          changed = true;
          return;
        }
        shown += 1;
        Object.keys(FIELDS).forEach(function (field) {
          var cell = tr.querySelector('td[data-field="' + field + '"]');
          if (cell) {
            cell.textContent = FIELDS[field](row[field]);
          }
        });
        var failed = tr.querySelector('td[data-field="failed"]');
        var link = failed ? failed.querySelector("a") : null;
        if (link) {
          link.textContent = count(row.failed);
        } else if (failed) {
          failed.textContent = count(row.failed);
        }
      });
    }
    var hint = document.getElementById("changed");
    if (hint && (changed || shown !== data.entrypoints.length)) {
      hint.hidden = false;
    }
    Array.prototype.forEach.call(document.querySelectorAll("[data-total]"), function (node) {
      var field = node.getAttribute("data-total");
      var total = data.entrypoints.reduce(function (sum, row) { return sum + (row[field] || 0); }, 0);
      node.textContent = count(total);
    });
    var running = document.querySelector('[data-workers="running"]');
    if (running) {
      running.textContent = count(data.workers.running);
    }
    var updated = document.getElementById("updated");
    if (updated) {
      updated.textContent = "as of " + data.now.replace("T", " ").slice(0, 19) + " (live)";
      updated.classList.remove("stale");
    }
  }

  function update(data) {
    lastData = data;
    data.rates.forEach(function (row) { series.set(row.minute, row); });
    numbers(data);
    charts();
    live.setAttribute("data-loaded", String(Date.now()));
  }

  function failed() {
    var updated = document.getElementById("updated");
    if (updated) {
      updated.textContent = "not updated: the dashboard did not answer (retrying)";
      updated.classList.add("stale");
    }
  }

  function load(minutes) {
    return fetch(source + "?minutes=" + minutes, {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.json();
    });
  }

  function schedule() {
    window.setTimeout(tick, refreshMs);
  }

  function tick() {
    if (document.hidden) {
      schedule();
      return;
    }
    load(2).then(update, failed).then(schedule);
  }

  var resizing = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizing);
    resizing = window.setTimeout(function () { if (lastData) { charts(); } }, 150);
  });

  load(span).then(update, failed).then(schedule);
})();
