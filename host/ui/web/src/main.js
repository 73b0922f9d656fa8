// Omni's web UI: a shell over the public API (/v1) with pages at shareable links in the
// fragment (#/jobs?state=running, #/jobs/<id>?step=build&q=error, #/tasks/srpm). Each page
// opens its streams through `streams`, which closes them when the page is left.

import { jobsPage } from "./jobs.js";
import { jobPage } from "./job.js";
import { taskPage, tasksPage } from "./tasks.js";
import { h } from "./util.js";

const main = document.getElementById("main");
let leave = () => {};
let lastPath = null;

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function render() {
  leave();
  const raw = location.hash.replace(/^#/, "") || "/jobs";
  const [path, search] = raw.split("?", 2);
  const q = new URLSearchParams(search || "");
  const opened = [];
  const streams = {
    open(url) {
      const source = new EventSource(url);
      // The server ends every stream with `shutdown` when it stops; the browser reconnects.
      opened.push(source);
      return source;
    },
    events(queryText) {
      return this.open(`/v1/events${queryText}`);
    },
  };
  const ctx = { go, streams };
  let cleanup = null;
  let m;
  let section = "jobs";
  if ((m = path.match(/^\/jobs\/([^/]+)$/))) cleanup = jobPage(main, decodeURIComponent(m[1]), q, ctx);
  else if (path === "/jobs" || path === "/") jobsPage(main, q, ctx);
  else if ((m = path.match(/^\/tasks\/([^/]+)$/))) {
    section = "tasks";
    taskPage(main, decodeURIComponent(m[1]), q, ctx);
  } else if (path === "/tasks") {
    section = "tasks";
    tasksPage(main, q, ctx);
  } else {
    main.replaceChildren(h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, "No page here. "), h("a", { href: "#/jobs" }, "Jobs"));
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const title = main.querySelector("h1");
  document.title = title ? `${title.textContent} · Omni` : "Omni";
  // A new page moves focus to its heading (screen readers read it); a new filter does not.
  if (path !== lastPath && lastPath !== null && title) title.focus();
  lastPath = path;
  leave = () => {
    for (const s of opened) s.close();
    if (typeof cleanup === "function") cleanup();
  };
}

document.getElementById("skip").addEventListener("click", (ev) => {
  ev.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", render);
render();
