// The jobs page: filters in the link (shareable), newest first, one page at a time from the
// server (`page_token` in the link too), states changed live from the event stream, cancel and
// purge per job.

import { api, ApiError, describe, query } from "./api.js";
import { FINAL, STATES, badge, h, later, shortId, time } from "./util.js";

const FILTERS = ["service", "task", "domain", "state", "since", "until"];
const LIMIT = 50;

/** An RFC 3339 time as a `datetime-local` value (local time), and back. */
function toLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function fromLocal(value) {
  return value ? new Date(value).toISOString() : "";
}

export function jobsPage(main, q, { go, streams }) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, q.get(f) || ""]));
  const pageToken = q.get("page_token") || "";
  // Jobs a page (`limit` in the link, 1 to 1000; 50 without).
  const limit = q.get("limit") || "";
  const kept = { ...filters, limit };
  const status = h("p", { class: "status", role: "status" });
  const tbody = h("tbody");
  const paging = h("nav", { class: "paging", "aria-label": "Pages of jobs" });
  const rows = new Map();

  const taskSelect = h("select", { id: "f-task", name: "task" }, h("option", { value: "" }, "any"));
  if (filters.task) taskSelect.append(h("option", { value: filters.task, selected: true }, filters.task));
  api("/v1/plugins").then((plugins) => {
    for (const p of plugins) {
      if (p.task && p.task !== filters.task) taskSelect.append(h("option", { value: p.task }, p.task));
    }
  }, () => {});

  const form = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Filter jobs",
      onsubmit: (ev) => {
        ev.preventDefault();
        const data = new FormData(form);
        const values = Object.fromEntries(FILTERS.map((f) => [f, data.get(f) || ""]));
        values.since = fromLocal(values.since);
        values.until = fromLocal(values.until);
        go(`#/jobs${query({ ...values, limit })}`);
      },
    },
    labelled("f-service", "Service", h("input", { id: "f-service", name: "service", value: filters.service, autocomplete: "off" })),
    labelled("f-task", "Task", taskSelect),
    labelled("f-domain", "Domain", h("input", { id: "f-domain", name: "domain", value: filters.domain, autocomplete: "off" })),
    labelled(
      "f-state",
      "State",
      h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "any"), STATES.map((s) => h("option", { value: s, selected: s === filters.state }, s))),
    ),
    labelled("f-since", "Created since", h("input", { id: "f-since", name: "since", type: "datetime-local", value: toLocal(filters.since) })),
    labelled("f-until", "Created before", h("input", { id: "f-until", name: "until", type: "datetime-local", value: toLocal(filters.until) })),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply"), h("a", { href: "#/jobs", class: "button secondary" }, "Clear")),
  );

  main.replaceChildren(
    h("h1", { tabindex: "-1" }, "Jobs"),
    form,
    status,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "jobs" },
        h("caption", { class: "sr-only" }, "Jobs, newest first; states change live"),
        h("thead", {}, h("tr", {}, ["Job", "State", "Task", "Service", "Domain", "Arch", "Created", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        tbody,
      ),
    ),
    paging,
  );

  function row(job) {
    const state = h("td", { class: "state" }, badge(job.state));
    const actions = h("td", { class: "row-actions" });
    const tr = h(
      "tr",
      { "data-job": job.id },
      h("td", {}, h("a", { href: `#/jobs/${job.id}`, title: job.id, "aria-label": `Job ${job.id}` }, shortId(job.id))),
      state,
      h("td", {}, job.task),
      h("td", {}, job.service),
      h("td", {}, job.domain),
      h("td", {}, job.arch),
      h("td", {}, time(job.created_at)),
      actions,
    );
    const entry = { tr, state, actions, job };
    fillActions(entry);
    rows.set(job.id, entry);
    return tr;
  }

  function fillActions(entry) {
    const { job } = entry;
    const buttons = [];
    if (!FINAL.has(job.state) && STATES.includes(job.state)) {
      buttons.push(
        h("button", { type: "button", class: "small", "aria-label": `Cancel job ${job.id}`, onclick: () => act(entry, "cancel") }, "Cancel"),
      );
    }
    buttons.push(
      h("button", { type: "button", class: "small danger", "aria-label": `Purge job ${job.id}`, onclick: () => act(entry, "purge") }, "Purge"),
    );
    entry.actions.replaceChildren(...buttons);
  }

  async function act(entry, what) {
    const id = entry.job.id;
    if (what === "purge" && !window.confirm(`Purge job ${id}? Its record and log are deleted.`)) return;
    try {
      const answer = await api(`/v1/jobs/${id}${what === "purge" ? "?purge=true" : ""}`, { method: "DELETE" });
      if (what === "purge") {
        entry.tr.remove();
        rows.delete(id);
        status.textContent = `Job ${id} purged.`;
      } else {
        update(answer);
        status.textContent = `Job ${id}: ${answer.state}.`;
      }
    } catch (e) {
      status.textContent = `Could not ${what} job ${id}: ${describe(e)}`;
    }
  }

  function update(job) {
    const entry = rows.get(job.id);
    if (!entry) return;
    entry.job = { ...entry.job, ...job };
    entry.state.replaceChildren(badge(entry.job.state));
    fillActions(entry);
  }

  // Changes the stream brings while the page is being read: the page may be older than them,
  // so they are applied to its rows once it is shown (the latest state of each job).
  let loading = true;
  const early = new Map();

  async function load() {
    status.textContent = "Loading…";
    try {
      const page = await api(`/v1/jobs${query({ ...filters, limit: limit || LIMIT, page_token: pageToken })}`);
      tbody.replaceChildren(...page.items.map(row));
      loading = false;
      for (const [id, state] of early) {
        const known = rows.get(id);
        if (known && later(state, known.job.state)) update({ id, state });
      }
      early.clear();
      status.textContent = page.items.length ? "" : "No jobs match.";
      const links = [];
      if (pageToken) links.push(h("a", { href: `#/jobs${query(kept)}` }, "First page"));
      if (page.next_page_token) links.push(h("a", { href: `#/jobs${query({ ...kept, page_token: page.next_page_token })}`, rel: "next" }, "Next page"));
      paging.replaceChildren(...links);
    } catch (e) {
      loading = false;
      early.clear();
      status.textContent = `Could not list jobs: ${describe(e)}`;
      if (e instanceof ApiError && e.status === 400) status.textContent += " (check the filters)";
    }
  }

  // Live: every state change of the jobs these filters could show. The page is read once the
  // stream is open, so no change falls between the two.
  const events = streams.events(query({ service: filters.service, task: filters.task, domain: filters.domain }));
  events.addEventListener("job", async (ev) => {
    const event = JSON.parse(ev.data);
    if (loading) {
      const seen = early.get(event.job_id);
      if (!seen || later(event.to, seen)) early.set(event.job_id, event.to);
    }
    const known = rows.get(event.job_id);
    if (known) {
      if (later(event.to, known.job.state)) update({ id: event.job_id, state: event.to });
    } else if (!pageToken && !filters.until && (filters.state ? event.to === filters.state : !event.from)) {
      // A new job on the first page: newest first, so it goes on top.
      try {
        const job = await api(`/v1/jobs/${event.job_id}`);
        if (!rows.has(job.id)) tbody.prepend(row(job));
        status.textContent = "";
      } catch {
        /* purged already, or not readable: nothing to show */
      }
    }
  });
  let loaded = false;
  const start = () => {
    if (!loaded) {
      loaded = true;
      load();
    }
  };
  events.addEventListener("open", start);
  events.addEventListener("error", start);
}

function labelled(id, label, control) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}
