// One job: its fields, plugin, params (sources folded; uploads by sha256), steps with durations,
// its log followed live (step filter, search, pause, ANSI colours, first error, download), its
// artifacts (name, size, sha256, step; each a download), its provenance (what went in, each with
// its sha256; the in-toto statement to download) and its events. The
// step filter and the search are in the link, so a link shows what its sender saw.

import { api, describe, query } from "./api.js";
import { LogView } from "./logview.js";
import { strip } from "./ansi.js";
import { FINAL, STATES, announce, badge, duration, h, shortId, size, time } from "./util.js";

/** The most artifacts the page lists (pages of 1000); the rest are counted. */
const MAX_ARTIFACTS = 10000;

export function jobPage(main, id, q, { go, streams }) {
  let job = null;
  const status = h("p", { class: "status", role: "status" });
  const heading = h("h1", { tabindex: "-1" }, `Job ${shortId(id)}`);
  const fields = h("dl", { class: "fields" });
  const actions = h("div", { class: "actions" });
  const params = h("div");
  const stepList = h("ol", { class: "steps" });
  const eventRows = h("tbody");
  const artifactRows = h("tbody");
  const artifactStatus = h("p", { class: "status", id: "artifacts-status", role: "status" });
  const provenanceRows = h("tbody");
  const provenanceStatus = h("p", { class: "status", id: "provenance-status", role: "status" });
  const logStatus = h("p", { class: "status", id: "log-status", role: "status" });
  const view = new LogView({ onChange: () => syncToolbar() });
  let ended = false;

  // The log's toolbar.
  const stepFilter = h("select", { id: "log-step", onchange: () => { view.setFilter(stepFilter.value); keep({ step: stepFilter.value }); } }, h("option", { value: "" }, "every step"));
  const search = h("input", { id: "log-search", type: "search", value: q.get("q") || "", autocomplete: "off", placeholder: "text in the log" });
  const matches = h("span", { class: "matches", "aria-live": "polite" });
  const pause = h("button", { type: "button", "aria-pressed": "false", onclick: () => view.setFollow(!view.follow) }, "Pause");
  const toolbar = h(
    "div",
    { class: "log-toolbar", role: "toolbar", "aria-label": "Log" },
    h("label", { for: "log-step" }, "Step"),
    stepFilter,
    h(
      "form",
      {
        class: "search",
        role: "search",
        "aria-label": "Search the log",
        onsubmit: (ev) => {
          ev.preventDefault();
          find(false);
        },
      },
      h("label", { for: "log-search" }, "Search"),
      search,
      h("button", { type: "submit" }, "Next"),
      h("button", { type: "button", onclick: () => find(true) }, "Previous"),
      matches,
    ),
    pause,
    h("button", { type: "button", onclick: () => { if (!view.firstError()) logStatus.textContent = "No line reads as an error."; else logStatus.textContent = `First error: line ${view.current + 1} shown.`; } }, "Jump to first error"),
    h("button", { type: "button", class: "download", onclick: download }, "Download whole log"),
  );

  function find(backwards) {
    keep({ q: search.value });
    const found = view.find(search.value, backwards);
    const count = search.value ? view.matches(search.value) : 0;
    matches.textContent = search.value ? `${count} ${count === 1 ? "line matches" : "lines match"}` : "";
    if (!found && search.value) logStatus.textContent = `“${search.value}” is not in the log shown.`;
  }

  function syncToolbar() {
    pause.textContent = view.follow ? "Pause" : "Follow";
    pause.setAttribute("aria-pressed", view.follow ? "false" : "true");
    pause.setAttribute("aria-label", view.follow ? "Pause following the log" : "Follow the log");
  }

  function keep(values) {
    const next = new URLSearchParams(q);
    for (const [k, v] of Object.entries(values)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    const text = next.toString();
    history.replaceState(null, "", `#/jobs/${id}${text ? `?${text}` : ""}`);
  }

  main.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", id),
    heading,
    status,
    actions,
    fields,
    h("section", { "aria-labelledby": "h-params" }, h("h2", { id: "h-params" }, "Params"), params),
    h("section", { "aria-labelledby": "h-steps" }, h("h2", { id: "h-steps" }, "Steps"), stepList),
    h(
      "section",
      { "aria-labelledby": "h-artifacts" },
      h("h2", { id: "h-artifacts" }, "Artifacts"),
      artifactStatus,
      h("div", { class: "table-wrap" }, h("table", { class: "artifacts" }, h("thead", {}, h("tr", {}, ["Name", "Size", "SHA-256", "Step"].map((c) => h("th", { scope: "col" }, c)))), artifactRows)),
    ),
    h(
      "section",
      { "aria-labelledby": "h-provenance" },
      h("h2", { id: "h-provenance" }, "Provenance"),
      h("p", {}, h("a", { href: `/v1/jobs/${id}/provenance`, download: `provenance-${id}.json` }, "The in-toto statement (SLSA provenance, JSON)")),
      provenanceStatus,
      h("div", { class: "table-wrap" }, h("table", { class: "provenance" }, h("thead", {}, h("tr", {}, ["What went in", "SHA-256"].map((c) => h("th", { scope: "col" }, c)))), provenanceRows)),
    ),
    h("section", { "aria-labelledby": "h-log", class: "log-section" }, h("h2", { id: "h-log" }, "Log"), toolbar, logStatus, view.scroller),
    h(
      "section",
      { "aria-labelledby": "h-events" },
      h("h2", { id: "h-events" }, "Events"),
      h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Time", "From", "To", "Message"].map((c) => h("th", { scope: "col" }, c)))), eventRows)),
    ),
  );

  function show(next) {
    const before = job && job.state;
    job = next;
    heading.replaceChildren(`Job ${shortId(id)} `, badge(job.state));
    if (before && before !== job.state) announce(`Job ${shortId(id)} is now ${job.state}`);
    const started = job.started_at ? Date.parse(job.started_at) : null;
    const finished = job.finished_at ? Date.parse(job.finished_at) : null;
    const rows = [
      ["ID", h("code", {}, job.id)],
      ["State", badge(job.state)],
      ["Message", job.message || "—"],
      ["Task", h("a", { href: `#/tasks/${job.task}` }, job.task)],
      ["Service", job.service],
      ["Domain", job.domain],
      ["Arch", job.arch],
      ["Engine", job.engine || "—"],
      ["Plugin version", job.plugin ? job.plugin.version : "—"],
      ["Plugin digest", h("code", { class: "digest" }, job.plugin ? job.plugin.digest : "—")],
      ["Created", time(job.created_at)],
      ["Started", time(job.started_at)],
      ["Finished", time(job.finished_at)],
      ["Duration", started ? duration((finished || Date.now()) - started) : "—"],
    ];
    fields.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const buttons = [];
    if (!FINAL.has(job.state) && STATES.includes(job.state)) {
      buttons.push(h("button", { type: "button", onclick: () => act("cancel") }, "Cancel job"));
    }
    buttons.push(h("button", { type: "button", class: "danger", onclick: () => act("purge") }, "Purge job"));
    actions.replaceChildren(...buttons);
    if (!params.firstChild) showParams(job.params || {});
    showSteps();
  }

  function showSteps() {
    if (!job) return;
    const now = Date.now();
    stepList.replaceChildren(
      ...job.steps.map((step) => {
        const t = view.stepTimes.get(step.name);
        let took = "—";
        if (t) took = duration((step.state === "running" ? now : t.last) - t.first);
        return h("li", { "data-step": step.name }, h("span", { class: "name" }, step.name), " ", badge(step.state), " ", h("span", { class: "took", title: "from its first log line to its last" }, took));
      }),
    );
    const known = new Set([...stepFilter.options].map((o) => o.value));
    for (const step of job.steps) {
      if (!known.has(step.name)) stepFilter.append(h("option", { value: step.name, selected: q.get("step") === step.name }, step.name));
    }
  }

  function showParams(value) {
    const { sources, ...rest } = value;
    const parts = [h("pre", { class: "json", tabindex: "0", role: "region", "aria-label": "Params as JSON" }, JSON.stringify(rest, null, 2))];
    if (sources && typeof sources === "object" && Object.keys(sources).length) {
      parts.push(
        h("h3", {}, `Sources (${Object.keys(sources).length})`),
        ...Object.entries(sources).map(([name, source]) => {
          if (source && typeof source === "object" && typeof source.upload === "string") {
            return h("p", { class: "upload" }, `${name}: upload `, h("code", { class: "digest" }, source.upload), source.mode ? ` (mode ${source.mode})` : "");
          }
          const content = typeof source === "string" ? source : source && source.content;
          let text = "";
          try {
            text = atob(content || "");
          } catch {
            text = String(content);
          }
          const size = text.length;
          return h("details", {}, h("summary", {}, `${name} (${size} bytes)`), h("pre", {}, text.length > 65536 ? `${text.slice(0, 65536)}\n…` : text));
        }),
      );
    }
    params.replaceChildren(...parts);
  }

  async function act(what) {
    if (what === "purge" && !window.confirm(`Purge job ${id}? Its record and log are deleted.`)) return;
    try {
      const answer = await api(`/v1/jobs/${id}${what === "purge" ? "?purge=true" : ""}`, { method: "DELETE" });
      if (what === "purge") {
        go("#/jobs");
        announce(`Job ${shortId(id)} purged`);
        return;
      }
      show({ ...answer, params: job.params });
      status.textContent = `Cancel asked: the job is ${answer.state}.`;
    } catch (e) {
      status.textContent = `Could not ${what} the job: ${describe(e)}`;
    }
  }

  async function download() {
    logStatus.textContent = "Reading the whole log…";
    const parts = [];
    let after = "";
    try {
      for (;;) {
        const page = await api(`/v1/jobs/${id}/logs${query({ limit: 10000, after })}`);
        for (const l of page.items) parts.push(`[${l.step}] ${strip(l.line)}\n`);
        if (!page.next || page.items.length === 0) break;
        after = page.next;
      }
    } catch (e) {
      logStatus.textContent = `Could not read the log: ${describe(e)}`;
      return;
    }
    const url = URL.createObjectURL(new Blob(parts, { type: "text/plain" }));
    const a = h("a", { href: url, download: `job-${id}.log` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    logStatus.textContent = `Downloaded ${parts.length} lines.`;
    logStatus.setAttribute("data-downloaded", String(parts.length));
  }

  function event(e) {
    const message = e.artifacts ? `${e.artifacts.count} artifacts stored (${size(e.artifacts.bytes)})` : e.message || "";
    eventRows.append(h("tr", {}, h("td", {}, time(e.time)), h("td", {}, e.from ? badge(e.from) : "—"), h("td", {}, badge(e.to)), h("td", {}, message)));
  }

  /** Lists the job's artifacts (again), each a download of its bytes. */
  async function loadArtifacts() {
    const rows = [];
    let after = "";
    try {
      do {
        const page = await api(`/v1/jobs/${id}/artifacts${query({ limit: 1000, after })}`);
        for (const a of page.items) {
          rows.push(
            h(
              "tr",
              { "data-artifact": a.name },
              h("td", {}, h("a", { href: a.url, download: a.name.split("/").pop() }, a.name)),
              h("td", { class: "num", "data-size": String(a.size) }, size(a.size)),
              h("td", {}, h("code", { class: "digest" }, a.sha256)),
              h("td", {}, a.step || "—"),
            ),
          );
        }
        after = page.next || "";
      } while (after && rows.length < MAX_ARTIFACTS);
    } catch (e) {
      artifactStatus.textContent = `Could not list the artifacts: ${describe(e)}`;
      return;
    }
    artifactRows.replaceChildren(...rows);
    artifactStatus.textContent = rows.length
      ? after
        ? `The first ${rows.length} artifacts (omni artifacts list ${id} lists them all).`
        : ""
      : job && FINAL.has(job.state)
        ? "The job kept no artifacts."
        : "Its artifacts are kept when it ends.";
    artifactStatus.setAttribute("data-count", String(rows.length));
  }

  /** Shows what went into the job, as its provenance says (again when it ends). */
  async function loadProvenance() {
    try {
      const statement = await api(`/v1/jobs/${id}/provenance`);
      const deps = statement.predicate.buildDefinition.resolvedDependencies || [];
      provenanceRows.replaceChildren(
        ...deps.map((d) => h("tr", { "data-dependency": d.name }, h("td", {}, d.name), h("td", {}, d.digest && d.digest.sha256 ? h("code", { class: "digest" }, d.digest.sha256) : "—"))),
      );
      provenanceStatus.textContent = deps.some((d) => d.name.startsWith("manifest/")) ? "" : "What was rendered for its engine is recorded when it starts.";
      provenanceStatus.setAttribute("data-count", String(deps.length));
    } catch (e) {
      provenanceStatus.textContent = `Could not read the provenance: ${describe(e)}`;
    }
  }

  // The job, then its log and events, live.
  api(`/v1/jobs/${id}`).then(
    (first) => {
      show(first);
      loadArtifacts();
      loadProvenance();
      followLog();
      followEvents();
    },
    (e) => {
      status.textContent = `Could not read job ${id}: ${describe(e)}`;
    },
  );

  function followLog() {
    if (q.get("step")) view.setFilter(q.get("step"));
    follow("");
  }

  /** Follows the log from after `after` (a line's seq; the start when empty). */
  function follow(after) {
    const source = streams.open(`/v1/jobs/${id}/logs${query({ follow: "true", after })}`);
    source.addEventListener("line", (ev) => view.append(JSON.parse(ev.data)));
    source.addEventListener("end", async () => {
      source.close();
      // A follower that fell behind can be told `end` before it was sent every line (seen with
      // a million lines and a slow tab): read whatever is stored after the last line shown.
      try {
        let rest = view.lastSeq >= 0 ? String(view.lastSeq) : "";
        for (;;) {
          const page = await api(`/v1/jobs/${id}/logs${query({ after: rest, limit: 10000 })}`);
          for (const l of page.items) view.append(l);
          if (!page.next || page.items.length === 0) break;
          rest = page.next;
        }
      } catch (e) {
        logStatus.textContent = `Could not read the end of the log: ${describe(e)}`;
        return;
      }
      ended = true;
      logStatus.textContent = `The log is complete: ${view.text.length + view.dropped} lines.`;
      logStatus.setAttribute("data-ended", "true");
      logStatus.setAttribute("data-last-seq", String(view.lastSeq));
      logStatus.setAttribute("data-gaps", String(view.gaps || 0));
      if (q.get("step")) view.setFilter(q.get("step"));
      if (search.value) find(false);
      showSteps();
    });
    // Too far behind the job (a slow tab): the server dropped this follower; go on from the
    // last line this page has.
    source.addEventListener("lagged", () => {
      source.close();
      follow(view.lastSeq >= 0 ? String(view.lastSeq) : "");
    });
    source.onopen = () => {
      if (!ended) logStatus.textContent = "Following the log…";
    };
    source.onerror = () => {
      if (!ended) logStatus.textContent = "The log stream was interrupted; reconnecting…";
    };
  }

  async function followEvents() {
    // Past events: the stored ones of the job's service and task (pages), then the stream from
    // where the pages ended, so none is missed in between.
    const filter = { service: job.service, task: job.task, domain: job.domain };
    let after = "";
    try {
      for (let i = 0; i < 50; i++) {
        const page = await api(`/v1/events${query({ ...filter, follow: "false", limit: 1000, after })}`);
        for (const e of page.items) if (e.job_id === id) event(e);
        after = page.next;
        if (page.items.length < 1000) break;
      }
      // The job as it is after the stored events were read: the stream goes on from there.
      show({ ...(await api(`/v1/jobs/${id}`)), params: job.params });
    } catch (e) {
      status.textContent = `Could not read the job's events: ${describe(e)}`;
    }
    const source = streams.events(query({ ...filter, after }));
    source.addEventListener("job", async (ev) => {
      const e = JSON.parse(ev.data);
      if (e.job_id !== id) return;
      event(e);
      if (e.kind === "job.artifacts" || FINAL.has(e.to)) loadArtifacts();
      if (e.to === "running" || FINAL.has(e.to)) loadProvenance();
      try {
        show({ ...(await api(`/v1/jobs/${id}`)), params: job.params });
      } catch {
        /* purged: the next read says so */
      }
    });
  }

  const ticker = setInterval(() => {
    if (job && !FINAL.has(job.state)) showSteps();
  }, 1000);
  syncToolbar();
  return () => clearInterval(ticker);
}
