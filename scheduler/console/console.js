/* scalespace console: the job list, a page per job and a page per nightly sweep, drawn from the JSON API.
 *
 * The token is asked for once and kept in this tab's sessionStorage; it is sent only as an
 * Authorization header with fetch, never in a URL. Artifacts the API serves are fetched the same way
 * and shown through blob: URLs; presigned store URLs are used as they are. Plots are inline SVG.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "scalespace.token";
  var POLL_MS = 1000;
  var STATES = ["queued", "running", "succeeded", "failed", "cancelled", "expired"];
  var KINDS = ["sample", "evaluate", "train", "sweep"];
  var LANES = ["interactive", "batch", "nightly"];
  var ENDED = ["succeeded", "failed", "cancelled", "expired"];
  var SVG_NS = "http://www.w3.org/2000/svg";

  var view = { timer: null, gen: 0, blobs: [] };
  var filters = { state: "", kind: "", lane: "" };

  // ---------------------------------------------------------------- helpers
  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = String(v);
      else if (k === "cls") node.className = v;
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function fmtTime(v) {
    if (!v) return "";
    var d = new Date(v);
    return isNaN(d) ? String(v) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    var m = Math.floor(s / 60);
    return m + " min " + Math.round(s - 60 * m) + " s";
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "";
    if (n < 1024) return n + " B";
    var units = ["KiB", "MiB", "GiB", "TiB"], v = n / 1024, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(v < 10 ? 1 : 0) + " " + units[i];
  }

  function fmtValue(v) {
    if (typeof v === "boolean") return String(v);
    if (typeof v === "number") return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3)
      : String(Math.round(v * 1e4) / 1e4);
    return v === null || v === undefined ? "" : String(v);
  }

  function badge(state) { return el("span", { cls: "badge state state-" + state, text: state }); }

  function status(text, isError) {
    var line = $("status-line");
    line.textContent = text || "";
    line.className = isError ? "error" : "";
  }

  // ---------------------------------------------------------------- the API, with the token as a header
  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function AuthNeeded() { this.message = "the API needs its token"; }

  function apiFetch(path, options) {
    var opts = Object.assign({ cache: "no-store" }, options || {});
    var headers = Object.assign({}, opts.headers || {});
    if (token()) headers.Authorization = "Bearer " + token();
    opts.headers = headers;
    return fetch(path, opts).then(function (r) {
      if (r.status === 401) {
        askToken(token() ? "The API refused this token: enter it again." : null);
        throw new AuthNeeded();
      }
      return r;
    });
  }

  function apiJson(path, options) {
    return apiFetch(path, options).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (body) {
        if (!r.ok) {
          var e = new Error((body && body.detail) || ("HTTP " + r.status));
          e.status = r.status;
          e.body = body;
          throw e;
        }
        return body;
      });
    });
  }

  // an artifact that could not be fetched (e.g. its job's record expired): say so where its link or picture was
  function unavailable(node, e) {
    if (e instanceof AuthNeeded) return;
    var note = el("span", { cls: "muted unavailable", text: "unavailable (" + (e && e.message ? e.message : e) + ")" });
    node.parentNode.replaceChild(note, node);
  }

  function fail(e) {
    if (e instanceof AuthNeeded) return;
    status(e && e.message ? e.message : String(e), true);
  }

  function askToken(message) {
    stopPolling();
    $("token-panel").hidden = false;
    if (message) $("token-message").textContent = message;
    clear($("main"));
    $("token-input").focus();
  }

  function saveToken() {
    var value = $("token-input").value.trim();
    $("token-input").value = "";
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("token-panel").hidden = true;
    authStatus();
    route();
  }

  function authStatus() {
    $("auth-status").textContent = token() ? "token set for this tab" : "no token";
    $("token-change").hidden = false;
  }

  // ---------------------------------------------------------------- artifacts: API URLs need the header
  function artifactPath(jobId, name) {
    return "v1/jobs/" + encodeURIComponent(jobId) + "/artifacts/" + encodeURIComponent(name);
  }

  // the API's own artifact URL (local store) is fetched with the token; a presigned URL is used as it is
  function isApiUrl(url) {
    try {
      var u = new URL(url, document.baseURI);
      return u.origin === location.origin && /\/v1\/jobs\/[^/]+\/artifacts\/[^/]+$/.test(u.pathname);
    } catch (e) {
      return true;
    }
  }

  function artifactUrl(jobId, a) {
    if (a.url && !isApiUrl(a.url)) return Promise.resolve({ url: a.url, bytes: null });
    var gen = view.gen;
    return apiFetch(artifactPath(jobId, a.name)).then(function (r) {
      if (!r.ok) throw new Error(a.name + ": HTTP " + r.status);
      return r.blob();
    }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      if (gen === view.gen) view.blobs.push(url);
      return { url: url, bytes: blob.size, blob: blob };
    });
  }

  function artifactText(jobId, a) {
    if (a.url && !isApiUrl(a.url)) return fetch(a.url).then(function (r) { return r.text(); });
    return apiFetch(artifactPath(jobId, a.name)).then(function (r) {
      if (!r.ok) throw new Error(a.name + ": HTTP " + r.status);
      return r.text();
    });
  }

  // ---------------------------------------------------------------- routing
  function stopPolling() {
    if (view.timer) clearTimeout(view.timer);
    view.timer = null;
  }

  function poll(fn, ms) {
    var gen = view.gen;
    stopPolling();
    view.timer = setTimeout(function () { if (gen === view.gen) fn(); }, ms || POLL_MS);
  }

  function route() {
    stopPolling();
    view.gen += 1;
    view.blobs.forEach(function (u) { URL.revokeObjectURL(u); });
    view.blobs = [];
    status("");
    var hash = location.hash.replace(/^#\/?/, "");
    var parts = hash.split("/");
    var main = clear($("main"));
    if (parts[0] === "job" && parts[1]) return jobPage(main, decodeURIComponent(parts.slice(1).join("/")));
    if (parts[0] === "sweep" && parts[1]) return sweepPage(main, decodeURIComponent(parts.slice(1).join("/")));
    if (parts[0] === "sweeps") return sweepsPage(main);
    return jobsPage(main);
  }

  // ---------------------------------------------------------------- the job list
  function select(id, label, values, key) {
    var s = el("select", { id: id, onchange: function () { filters[key] = s.value; route(); } },
      [el("option", { value: "", text: "any " + label })].concat(values.map(function (v) {
        return el("option", { value: v, text: v });
      })));
    s.value = filters[key];
    return el("label", {}, [label + " ", s]);
  }

  function jobsPage(main) {
    var gen = view.gen;
    main.appendChild(el("h2", { text: "Jobs" }));
    main.appendChild(el("div", { cls: "filters" }, [
      select("filter-state", "state", STATES, "state"), select("filter-kind", "kind", KINDS, "kind"),
      select("filter-lane", "lane", LANES, "lane"), el("span", { id: "jobs-count", cls: "muted" })]));
    var tbody = el("tbody", { id: "jobs-body" });
    main.appendChild(el("table", { id: "jobs-table" }, [el("thead", {}, [el("tr", {}, [
      "job", "kind", "lane", "state", "progress", "queue", "created", "duration"].map(function (h) {
        return el("th", { text: h });
      }))]), tbody]));
    var rows = {};

    function tick() {
      var q = ["limit=200"];
      ["state", "kind", "lane"].forEach(function (k) { if (filters[k]) q.push(k + "=" + encodeURIComponent(filters[k])); });
      apiJson("v1/jobs?" + q.join("&")).then(function (body) {
        if (gen !== view.gen) return;
        var seen = {};
        body.jobs.forEach(function (job) {
          var row = rows[job.id] || (rows[job.id] = jobRow(job));
          updateRow(row, job);
          seen[job.id] = true;
          tbody.appendChild(row.tr);  // newest first, as the API lists them
        });
        Object.keys(rows).forEach(function (id) {
          if (!seen[id]) { tbody.removeChild(rows[id].tr); delete rows[id]; }
        });
        $("jobs-count").textContent = body.count + " job" + (body.count === 1 ? "" : "s");
        status("updated " + new Date().toLocaleTimeString());
        poll(tick);
      }).catch(function (e) {
        fail(e);
        if (!(e instanceof AuthNeeded) && gen === view.gen) poll(tick, 3 * POLL_MS);
      });
    }
    tick();
  }

  function jobRow(job) {
    var cells = {};
    var tr = el("tr", { cls: "job-row", "data-job-id": job.id }, ["id", "kind", "lane", "state", "progress", "queue",
      "created", "duration"].map(function (k) {
        return (cells[k] = el("td", { cls: k }));
      }));
    cells.id.appendChild(el("a", { href: "#/job/" + encodeURIComponent(job.id), cls: "mono", text: job.id }));
    cells.kind.textContent = job.kind;
    cells.lane.textContent = job.lane;
    cells.created.textContent = fmtTime(job.created_at);
    cells.bar = el("progress", { max: 1, value: 0 });
    cells.label = el("span", { cls: "muted" });
    cells.progress.appendChild(cells.bar);
    cells.progress.appendChild(document.createTextNode(" "));
    cells.progress.appendChild(cells.label);
    return { tr: tr, cells: cells };
  }

  function progressText(p) {
    if (!p) return "";
    return (p.phase ? p.phase + " " : "") + p.done + "/" + p.total;
  }

  function updateRow(row, job) {
    var c = row.cells;
    if (c.state.dataset.state !== job.state) {
      clear(c.state).appendChild(badge(job.state));
      c.state.dataset.state = job.state;
      row.tr.dataset.state = job.state;
    }
    var p = job.progress;
    c.bar.max = p && p.total ? p.total : 1;
    c.bar.value = p ? p.done : 0;
    if (job.state === "succeeded") { c.bar.max = 1; c.bar.value = 1; }
    c.label.textContent = progressText(p);
    c.queue.textContent = job.queue_position ? "#" + job.queue_position : "";
    c.duration.textContent = fmtSeconds(job.duration_s);
  }

  // ---------------------------------------------------------------- a job's page
  function jobPage(main, jobId) {
    var gen = view.gen;
    var shown = { artifacts: false };
    var head = el("h2", {}, ["Job ", el("span", { cls: "mono", id: "job-id", text: jobId }), " ",
      el("span", { id: "job-state" })]);
    var cancelBtn = el("button", { type: "button", id: "cancel-btn", cls: "danger", text: "Cancel", disabled: true });
    var retryBtn = el("button", { type: "button", id: "retry-btn", text: "Retry", disabled: true });
    var message = el("span", { id: "job-message", cls: "muted" });
    main.appendChild(el("p", {}, [el("a", { href: "#/jobs", text: "← all jobs" })]));
    main.appendChild(head);
    main.appendChild(el("div", { cls: "actions" }, [cancelBtn, retryBtn, message]));
    var timings = el("dl", { cls: "timings", id: "timings" });
    var links = el("div", { id: "job-links" });
    main.appendChild(el("div", { cls: "cards" }, [el("div", { cls: "card" }, [el("h3", { text: "Timings" }), timings]),
      el("div", { cls: "card" }, [el("h3", { text: "Progress" }), el("div", { id: "job-progress" }), links])]));
    var errorBox = el("pre", { id: "job-error", cls: "error", hidden: true });
    main.appendChild(errorBox);
    var pictures = el("div", { cls: "cards", id: "pictures" });
    var reports = el("ul", { id: "reports" });
    var artifacts = el("tbody", { id: "artifacts-body" });
    var viewer = el("pre", { id: "artifact-view", hidden: true });
    main.appendChild(el("section", { id: "results", hidden: true }, [
      el("h3", { text: "Pictures" }), pictures,
      el("h3", { text: "Reports" }), reports,
      el("h3", { text: "Artifacts" }),
      el("table", { id: "artifacts-table" }, [el("thead", {}, [el("tr", {}, ["name", "size", "sha256", ""].map(
        function (h) { return el("th", { text: h }); }))]), artifacts]),
      viewer]));
    var spec = el("pre", { id: "job-spec" });
    var summary = el("pre", { id: "job-summary" });
    main.appendChild(el("h3", { text: "Summary" }));
    main.appendChild(summary);
    main.appendChild(el("h3", { text: "Spec" }));
    main.appendChild(spec);

    function act(method, path, what) {
      cancelBtn.disabled = retryBtn.disabled = true;
      message.textContent = what + "…";
      apiJson(path, { method: method }).then(function (job) {
        message.textContent = what + ": " + job.state;
        if (job.state !== "succeeded") shown.artifacts = false;
        render(job);
        poll(tick);
      }).catch(function (e) {
        message.textContent = what + " refused: " + (e.message || e);
        tick();
      });
    }
    cancelBtn.addEventListener("click", function () { act("DELETE", "v1/jobs/" + encodeURIComponent(jobId), "cancel"); });
    retryBtn.addEventListener("click", function () {
      act("POST", "v1/jobs/" + encodeURIComponent(jobId) + "/retry", "retry");
    });

    function render(job) {
      var st = $("job-state");
      if (st.dataset.state !== job.state) {
        clear(st).appendChild(badge(job.state));
        st.dataset.state = job.state;
      }
      cancelBtn.disabled = !(job.state === "queued" || job.state === "running") || job.cancel_requested;
      retryBtn.disabled = ["failed", "cancelled", "expired"].indexOf(job.state) < 0;
      var wait = job.started_at && job.queued_at ? (new Date(job.started_at) - new Date(job.queued_at)) / 1000 : null;
      var rows = [["kind", job.kind], ["lane", job.lane], ["created", fmtTime(job.created_at)],
        ["queued", fmtTime(job.queued_at)], ["started", fmtTime(job.started_at)], ["finished", fmtTime(job.finished_at)],
        ["deadline", fmtTime(job.deadline_at)], ["waited", wait !== null && wait >= 0 ? fmtSeconds(wait) : ""],
        ["run time", fmtSeconds(job.duration_s)], ["queue position", job.queue_position || ""],
        ["attempts", job.attempts], ["redeliveries", job.redeliveries], ["retries", job.retries],
        ["worker", job.worker || ""], ["cancel requested", job.cancel_requested ? "yes (step " + job.cancel_step + ")" : ""],
        ["stopped at step", job.stopped_step === null || job.stopped_step === undefined ? "" : job.stopped_step]];
      clear(timings);
      rows.forEach(function (r) {
        if (r[1] === "" || r[1] === null || r[1] === undefined) return;
        timings.appendChild(el("dt", { text: r[0] }));
        timings.appendChild(el("dd", { cls: "timing-" + r[0].replace(/ /g, "-"), text: r[1] }));
      });
      var p = job.progress;
      var prog = clear($("job-progress"));
      prog.appendChild(el("progress", { max: p && p.total ? p.total : 1, value: job.state === "succeeded" ? (p && p.total ? p.total : 1) : (p ? p.done : 0) }));
      prog.appendChild(el("span", { cls: "muted", text: " " + progressText(p) }));
      clear(links);
      if (job.parent) links.appendChild(el("p", {}, ["part of sweep ", el("a", { href: "#/job/" + encodeURIComponent(job.parent), cls: "mono", text: job.parent })]));
      if (job.kind === "sweep" && job.spec && job.spec.name) {
        links.appendChild(el("p", {}, ["nights of this sweep: ", el("a", { href: "#/sweep/" + encodeURIComponent(job.spec.name), id: "sweep-link", text: job.spec.name })]));
      }
      if (job.shards && job.shards.length) {
        links.appendChild(el("p", { text: "shards:" }));
        links.appendChild(el("ul", {}, job.shards.map(function (sh) {
          return el("li", { cls: "shard" }, [el("a", { href: "#/job/" + encodeURIComponent(sh.id), cls: "mono child-link", text: sh.id }),
            el("span", { cls: "muted", text: " " + sh.state + (sh.progress ? " " + progressText(sh.progress) : "") +
              (sh.worker ? " on " + sh.worker : "") + (sh.attempts > 1 ? ", attempt " + sh.attempts : "") })]);
        })));
      } else if (job.children && job.children.length) {
        links.appendChild(el("p", { text: "child jobs:" }));
        links.appendChild(el("ul", {}, job.children.map(function (c) {
          return el("li", {}, [el("a", { href: "#/job/" + encodeURIComponent(c), cls: "mono child-link", text: c })]);
        })));
      }
      errorBox.hidden = !job.error;
      errorBox.textContent = job.error || "";
      spec.textContent = JSON.stringify(job.spec, null, 2);
      summary.textContent = job.summary === null || job.summary === undefined ? "" : JSON.stringify(job.summary, null, 2);
      if (job.state === "succeeded" && job.artifacts && !shown.artifacts) {
        shown.artifacts = true;
        showArtifacts(job);
      } else if (job.state !== "succeeded") {
        $("results").hidden = true;
      }
    }

    function showArtifacts(job) {
      $("results").hidden = false;
      clear(pictures); clear(reports); clear(artifacts);
      job.artifacts.forEach(function (a) {
        var lower = a.name.toLowerCase();
        if (/\.png$/.test(lower)) {
          var img = el("img", { alt: a.name, cls: "picture", "data-name": a.name });
          pictures.appendChild(el("figure", {}, [img, el("figcaption", { text: a.name + " · " + fmtBytes(a.bytes) })]));
          artifactUrl(job.id, a).then(function (u) { img.src = u.url; }).catch(function (e) { unavailable(img, e); });
        }
        if (/\.html$/.test(lower)) {
          var link = el("a", { cls: "report-link", "data-name": a.name, target: "_blank", rel: "noopener", text: "open " + a.name });
          reports.appendChild(el("li", {}, [link]));
          artifactUrl(job.id, a).then(function (u) { link.href = u.url; link.dataset.ready = "1"; })
            .catch(function (e) { unavailable(link, e); });
        }
        var dl = el("a", { cls: "download", "data-name": a.name, href: "#", text: "download" });
        dl.addEventListener("click", function (ev) {
          if (dl.dataset.ready) return;  // the blob is there: let the browser save it
          ev.preventDefault();
          artifactUrl(job.id, a).then(function (u) {
            dl.href = u.url;
            dl.setAttribute("download", a.name);
            dl.dataset.ready = "1";
            if (u.bytes !== null) dl.dataset.fetchedBytes = String(u.bytes);
            dl.click();
          }).catch(fail);
        });
        var actions = el("td", {}, [dl]);
        if (/\.(json|txt|md|csv|html)$/.test(lower)) {
          actions.appendChild(document.createTextNode(" "));
          actions.appendChild(el("a", { cls: "view", "data-name": a.name, href: "#", text: "view", onclick: function (ev) {
            ev.preventDefault();
            artifactText(job.id, a).then(function (t) {
              viewer.hidden = false;
              viewer.dataset.name = a.name;
              viewer.textContent = t;
              viewer.scrollIntoView();
            }).catch(fail);
          } }));
        }
        artifacts.appendChild(el("tr", { cls: "artifact-row", "data-name": a.name }, [
          el("td", { cls: "mono", text: a.name }), el("td", { cls: "num size", "data-bytes": a.bytes, text: fmtBytes(a.bytes) }),
          el("td", { cls: "mono", title: a.sha256 || "", text: a.sha256 ? a.sha256.slice(0, 12) : "" }), actions]));
      });
      if (!pictures.firstChild) pictures.appendChild(el("p", { cls: "muted", text: "no pictures" }));
      if (!reports.firstChild) reports.appendChild(el("li", { cls: "muted", text: "no report" }));
    }

    function tick() {
      apiJson("v1/jobs/" + encodeURIComponent(jobId)).then(function (job) {
        if (gen !== view.gen) return;
        render(job);
        status("updated " + new Date().toLocaleTimeString());
        poll(tick, ENDED.indexOf(job.state) >= 0 ? 5 * POLL_MS : POLL_MS);
      }).catch(function (e) {
        fail(e);
        if (!(e instanceof AuthNeeded) && gen === view.gen) poll(tick, 3 * POLL_MS);
      });
    }
    tick();
  }

  // ---------------------------------------------------------------- sweeps
  function sweepsPage(main) {
    var gen = view.gen;
    main.appendChild(el("h2", { text: "Nightly sweeps" }));
    var input = el("input", { id: "sweep-name", placeholder: "sweep name", spellcheck: "false" });
    var open = function () { if (input.value.trim()) location.hash = "#/sweep/" + encodeURIComponent(input.value.trim()); };
    input.addEventListener("keydown", function (ev) { if (ev.key === "Enter") open(); });
    main.appendChild(el("p", {}, [input, " ", el("button", { type: "button", text: "Open", onclick: open })]));
    var list = el("ul", { id: "sweep-list" });
    main.appendChild(list);
    apiJson("v1/jobs?kind=sweep&limit=1000").then(function (body) {
      if (gen !== view.gen) return;
      var names = {};
      body.jobs.forEach(function (j) {
        var n = j.spec && j.spec.name;
        if (n && !names[n]) names[n] = j;  // newest first: the first one seen is the latest run
      });
      Object.keys(names).sort().forEach(function (n) {
        list.appendChild(el("li", {}, [el("a", { href: "#/sweep/" + encodeURIComponent(n), cls: "sweep-name", text: n }),
          " latest ", badge(names[n].state), " ", el("span", { cls: "muted", text: fmtTime(names[n].created_at) })]));
      });
      if (!list.firstChild) list.appendChild(el("li", { cls: "muted", text: "no sweep jobs in the job store" }));
    }).catch(fail);
  }

  function sweepPage(main, name) {
    var gen = view.gen;
    main.appendChild(el("p", {}, [el("a", { href: "#/sweeps", text: "← all sweeps" })]));
    main.appendChild(el("h2", {}, ["Sweep ", el("span", { id: "sweep-title", text: name })]));
    var summary = el("p", { id: "sweep-summary", cls: "muted" });
    main.appendChild(summary);
    var runs = el("tbody", { id: "sweep-runs" });
    main.appendChild(el("table", { id: "sweep-runs-table" }, [el("thead", {}, [el("tr", {}, ["night", "sweep job", "state",
      "regressions", "report", "child jobs"].map(function (h) { return el("th", { text: h }); }))]), runs]));
    var filter = el("input", { id: "figure-filter", placeholder: "filter figures (e.g. fd)", spellcheck: "false" });
    var flaggedOnly = el("input", { type: "checkbox", id: "flagged-only" });
    main.appendChild(el("p", {}, [filter, " ", el("label", {}, [flaggedOnly, " only figures with a regression"])]));
    var plots = el("div", { id: "plots" });
    main.appendChild(plots);

    apiJson("v1/sweeps/" + encodeURIComponent(name) + "/history").then(function (hist) {
      if (gen !== view.gen) return;
      var nRegr = 0;
      hist.runs.forEach(function (run) {
        nRegr += run.regressions.length;
        var report = run.report_url ? el("a", { cls: "report-link", target: "_blank", rel: "noopener", text: "report" }) : el("span", { cls: "muted", text: "none" });
        if (run.report_url) {
          artifactUrl(run.job_id, { name: "sweep-report.html", url: run.report_url }).then(function (u) {
            report.href = u.url; report.dataset.ready = "1";
          }).catch(function (e) { unavailable(report, e); });
        }
        runs.appendChild(el("tr", { cls: "sweep-run", "data-job-id": run.job_id }, [
          el("td", { text: fmtTime(run.at) }),
          el("td", {}, [el("a", { href: "#/job/" + encodeURIComponent(run.job_id), cls: "mono", text: run.job_id })]),
          el("td", {}, [badge(run.state || "unknown")]),
          el("td", { cls: run.regressions.length ? "num regression-flag" : "num", text: run.has_report ? run.regressions.length : "" }),
          el("td", {}, [report]),
          el("td", {}, run.children.map(function (c) {
            return el("a", { href: "#/job/" + encodeURIComponent(c.job_id), cls: "child-link mono", title: c.key + " (" + c.state + ")", text: c.key + " " });
          }))]));
      });
      summary.textContent = hist.runs.length + " night" + (hist.runs.length === 1 ? "" : "s") + ", " + nRegr +
        " regression" + (nRegr === 1 ? "" : "s") + " flagged";
      var series = collectSeries(hist.runs);
      var draw = function () { drawPlots(plots, series, filter.value.trim().toLowerCase(), flaggedOnly.checked); };
      filter.addEventListener("input", draw);
      flaggedOnly.addEventListener("change", draw);
      draw();
    }).catch(fail);
  }

  // one series per (cell, figure): the value of each night that reported it, and its comparison's status
  function collectSeries(runs) {
    var byKey = {};
    runs.forEach(function (run, i) {
      if (!run.has_report) return;
      var flags = {};
      (run.comparisons || []).forEach(function (c) { flags[c.key + "\u0000" + c.figure] = c; });
      run.children.forEach(function (child) {
        var figs = child.figures || {};
        Object.keys(figs).forEach(function (f) {
          var id = child.key + "\u0000" + f;
          var s = byKey[id] || (byKey[id] = { key: child.key, figure: f, points: [], flagged: false });
          var cmp = flags[id];
          var v = figs[f];
          s.points.push({ night: i, at: run.at, job: run.job_id, value: typeof v === "boolean" ? (v ? 1 : 0) : v,
            bool: typeof v === "boolean", status: cmp ? cmp.status : null, cmp: cmp });
          if (cmp && cmp.status === "regression") s.flagged = true;
        });
        if (child.state !== "succeeded" && flags[child.key + "\u0000state"]) {
          var sid = child.key + "\u0000state";
          var st = byKey[sid] || (byKey[sid] = { key: child.key, figure: "state", points: [], flagged: false });
          st.points.push({ night: i, at: run.at, job: run.job_id, value: 0, bool: true, status: "regression",
            cmp: flags[sid] });
          st.flagged = true;
        }
      });
    });
    return Object.keys(byKey).sort().map(function (k) { return byKey[k]; });
  }

  function drawPlots(container, series, filter, flaggedOnly) {
    clear(container);
    var sections = {};
    series.forEach(function (s) {
      if (filter && (s.figure + " " + s.key).toLowerCase().indexOf(filter) < 0) return;
      if (flaggedOnly && !s.flagged) return;
      if (!sections[s.key]) {
        var grid = el("div", { cls: "plots" });
        sections[s.key] = grid;
        container.appendChild(el("section", { cls: "cell", "data-key": s.key }, [el("h3", { text: s.key }), grid]));
      }
      sections[s.key].appendChild(plot(s));
    });
    if (!container.firstChild) container.appendChild(el("p", { cls: "muted", text: "no figures to plot" }));
  }

  function plot(s) {
    var W = 340, H = 150, L = 56, R = 10, T = 10, B = 26;
    var vals = s.points.map(function (p) { return p.value; });
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    if (s.points[0].bool) { lo = 0; hi = 1; }
    if (lo === hi) { var pad = Math.abs(lo) * 0.05 || 1; lo -= pad; hi += pad; }
    var nights = s.points.map(function (p) { return p.night; });
    var n0 = Math.min.apply(null, nights), n1 = Math.max.apply(null, nights);
    var x = function (night) { return n1 === n0 ? L + (W - L - R) / 2 : L + (night - n0) * (W - L - R) / (n1 - n0); };
    var y = function (v) { return T + (hi - v) * (H - T - B) / (hi - lo); };
    var root = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": s.figure + " of " + s.key + " across nights" });
    root.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, "class": "axis" }));
    root.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, "class": "axis" }));
    var label = function (v) { return s.points[0].bool ? (v >= 0.5 ? "true" : "false") : fmtValue(v); };
    root.appendChild(svg("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, label(hi)));
    root.appendChild(svg("text", { x: L - 4, y: H - B, "text-anchor": "end" }, label(lo)));
    var first = s.points[0], last = s.points[s.points.length - 1];
    root.appendChild(svg("text", { x: x(first.night), y: H - 8, "text-anchor": first === last ? "middle" : "start" },
      fmtTime(first.at).slice(0, 10)));
    if (last !== first) root.appendChild(svg("text", { x: x(last.night), y: H - 8, "text-anchor": "end" }, fmtTime(last.at).slice(0, 10)));
    if (s.points.length > 1) {
      root.appendChild(svg("polyline", { "class": "series", points: s.points.map(function (p) {
        return x(p.night).toFixed(1) + "," + y(p.value).toFixed(1);
      }).join(" ") }));
    }
    s.points.forEach(function (p) {
      var c = svg("circle", { cx: x(p.night).toFixed(1), cy: y(p.value).toFixed(1), r: p.status === "regression" ? 5 : 3.5,
        "class": "pt" + (p.status ? " " + p.status : ""), "data-job-id": p.job });
      var text = fmtTime(p.at) + " " + p.job + ": " + label(p.value) + (p.status ? " (" + p.status + ")" : "");
      c.appendChild(svg("title", {}, text));
      root.appendChild(c);
    });
    var lastStatus = last.status === "regression";
    return el("div", { cls: "plot" + (s.flagged ? " flagged" : ""), "data-key": s.key, "data-figure": s.figure }, [
      el("div", { cls: "plot-title" }, [s.figure, s.flagged ? el("span", { cls: "badge regression-badge",
        text: lastStatus ? "regression (latest night)" : "regression" }) : null]),
      root]);
  }

  // ---------------------------------------------------------------- start
  function start() {
    $("token-save").addEventListener("click", saveToken);
    $("token-input").addEventListener("keydown", function (ev) { if (ev.key === "Enter") saveToken(); });
    $("token-change").addEventListener("click", function () {
      sessionStorage.removeItem(TOKEN_KEY);
      authStatus();
      askToken("Enter the API token for this tab.");
    });
    window.addEventListener("hashchange", route);
    authStatus();
    route();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
