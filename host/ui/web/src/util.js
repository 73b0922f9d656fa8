// Small DOM and formatting helpers shared by the pages. Text always goes in as text nodes:
// nothing the API answers is ever parsed as HTML.

/** Makes an element: attributes (`on*` functions become listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "text") {
      el.textContent = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** The job states that are final: nothing leaves them (docs/api.md, "States"). */
export const FINAL = new Set(["succeeded", "failed", "cancelled"]);
export const STATES = ["pending", "queued", "running", "succeeded", "failed", "cancelled"];

/**
 * Whether a job in state `now` may be shown as `next`: states only move forward, so an event
 * that arrives after a newer read of the job is not allowed to move it back.
 */
export function later(next, now) {
  const rank = (s) => (FINAL.has(s) ? 3 : Math.max(0, ["pending", "queued", "running"].indexOf(s)));
  return !FINAL.has(now) && rank(next) > rank(now);
}

// A symbol beside each state's word: colour is never the only carrier of a state.
const ICONS = {
  pending: "○",
  queued: "◔",
  running: "▶",
  succeeded: "✓",
  failed: "✗",
  cancelled: "⊘",
  skipped: "↷",
};

/** A state badge: symbol (hidden from screen readers) and the state's word. */
export function badge(state) {
  return h(
    "span",
    { class: `badge s-${state}`, "data-state": state },
    h("span", { "aria-hidden": "true" }, ICONS[state] || "?"),
    ` ${state}`,
  );
}

/** A time for people: local, to the second; the RFC 3339 value in a `time` element. */
export function time(value) {
  if (!value) return "—";
  const date = new Date(value);
  return h("time", { datetime: value, title: value }, date.toLocaleString());
}

/** A duration in milliseconds, as `1h 2m`, `3m 4s` or `5.6 s`. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms) || ms < 0) return "—";
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** Says `message` to screen readers (the page's polite live region). */
export function announce(message) {
  const region = document.getElementById("announce");
  region.textContent = "";
  // A new text node after a tick is announced even when the text repeats.
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/** The first 8 characters of a job id, for tables (the whole id stays in links and titles). */
export function shortId(id) {
  return id.slice(0, 8);
}

/** A size in bytes for people: B, KiB, MiB, GiB. */
export function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}
