// Task types: every plugin with its version and state; one task's versions, description and
// steps, a submit form generated from its params schema (the plugin's 422 field errors beside
// their fields) and a preview of the manifests it would render, as YAML.

import { api, ApiError, describe } from "./api.js";
import { schemaForm } from "./form.js";
import { toYaml } from "./yaml.js";
import { h, time } from "./util.js";

export function tasksPage(main) {
  const status = h("p", { class: "status", role: "status" }, "Loading…");
  const list = h("ul", { class: "cards" });
  main.replaceChildren(h("h1", { tabindex: "-1" }, "Task types"), status, list);
  api("/v1/plugins").then(
    (plugins) => {
      status.textContent = plugins.length ? "" : "No plugins are loaded.";
      list.replaceChildren(
        ...plugins.map((p) =>
          h(
            "li",
            { class: "card" },
            h("h2", {}, p.task ? h("a", { href: `#/tasks/${p.task}` }, p.task) : p.file),
            h("p", {}, h("span", { class: `badge ${p.status === "ready" ? "s-succeeded" : "s-failed"}` }, p.status === "ready" ? "✓ ready" : "✗ error"), p.version ? ` version ${p.version}` : ""),
            p.description ? h("p", {}, p.description) : null,
            p.error ? h("p", { class: "field-error" }, p.error) : null,
            p.arches && p.arches.length ? h("p", { class: "hint" }, `Arches: ${p.arches.join(", ")}`) : null,
          ),
        ),
      );
    },
    (e) => {
      status.textContent = `Could not list plugins: ${describe(e)}`;
    },
  );
}

export function taskPage(main, task, q, { go }) {
  const status = h("p", { class: "status", role: "status" }, "Loading…");
  main.replaceChildren(h("p", { class: "crumbs" }, h("a", { href: "#/tasks" }, "Task types"), " / ", task), h("h1", { tabindex: "-1" }, task), status);
  Promise.all([api(`/v1/plugins/${task}`), api(`/v1/plugins/${task}/versions`).catch(() => [])]).then(
    ([plugin, versions]) => render(plugin, versions),
    (e) => {
      status.textContent = `Could not read task ${task}: ${describe(e)}`;
    },
  );

  function render(plugin, versions) {
    status.textContent = "";
    const form = schemaForm(plugin.params_schema || {}, { arches: plugin.arches || [] });
    const result = h("p", { class: "status", role: "status", id: "submit-status" });
    const preview = h("div", { class: "preview" });
    const submit = h(
      "form",
      {
        class: "submit",
        novalidate: true,
        "aria-labelledby": "h-submit",
        onsubmit: async (ev) => {
          ev.preventDefault();
          const collected = form.collect();
          if (collected.errors) {
            form.showErrors(collected.errors, "Some fields are not valid");
            return;
          }
          form.clear();
          result.textContent = "Submitting…";
          try {
            const job = await api("/v1/jobs", { method: "POST", body: { ...collected.body, task } });
            result.textContent = `Job ${job.id} submitted.`;
            go(`#/jobs/${job.id}`);
          } catch (e) {
            result.textContent = "";
            if (e instanceof ApiError && e.problem.errors && e.problem.errors.length) {
              form.showErrors(e.problem.errors, `${e.problem.title || "Not accepted"}${e.problem.detail ? `: ${e.problem.detail}` : ""}`);
            } else {
              form.showErrors([{ path: "", message: describe(e) }], "The job was not accepted");
            }
          }
        },
      },
      form.element,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit" }, "Submit job"),
        h("button", { type: "button", class: "secondary", onclick: renderPreview }, "Preview manifests"),
      ),
      result,
    );

    async function renderPreview() {
      const collected = form.collect();
      if (collected.errors) {
        form.showErrors(collected.errors, "Some fields are not valid");
        return;
      }
      form.clear();
      const { params, arch, domain } = collected.body;
      preview.replaceChildren(h("p", {}, "Rendering…"));
      try {
        const rendered = await api(`/v1/plugins/${task}/render`, { method: "POST", body: { params, arch, domain } });
        preview.replaceChildren(
          h("h3", { id: "h-preview", tabindex: "-1" }, `Manifests (${rendered.manifests.length}; the job is ${rendered.primary})`),
          ...rendered.manifests.map((m) =>
            h("details", { open: true }, h("summary", {}, `${m.kind} ${m.name}`), h("pre", { class: "yaml", tabindex: "0", role: "region", "aria-label": `${m.kind} ${m.name} as YAML` }, toYaml(m.body))),
          ),
        );
        preview.querySelector("h3").focus();
      } catch (e) {
        preview.replaceChildren();
        if (e instanceof ApiError && e.problem.errors && e.problem.errors.length) form.showErrors(e.problem.errors, "The plugin cannot render these params");
        else form.showErrors([{ path: "", message: describe(e) }], "The plugin cannot render these params");
      }
    }

    main.append(
      plugin.description ? h("p", { class: "lead" }, plugin.description) : null,
      h(
        "dl",
        { class: "fields" },
        h("dt", {}, "Status"),
        h("dd", {}, plugin.status === "ready" ? "✓ ready" : `✗ ${plugin.error || "error"}`),
        h("dt", {}, "Version"),
        h("dd", {}, plugin.version || "—"),
        h("dt", {}, "Digest"),
        h("dd", {}, h("code", { class: "digest" }, plugin.digest || "—")),
        h("dt", {}, "Arches"),
        h("dd", {}, (plugin.arches || []).join(", ") || "—"),
        h("dt", {}, "Loaded"),
        h("dd", {}, time(plugin.loaded_at)),
      ),
      h("section", { "aria-labelledby": "h-steps" }, h("h2", { id: "h-steps" }, "Steps"), h("ol", {}, (plugin.steps || []).map((s) => h("li", {}, s)))),
      h(
        "section",
        { "aria-labelledby": "h-versions" },
        h("h2", { id: "h-versions" }, "Versions"),
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            {},
            h("thead", {}, h("tr", {}, ["Version", "Digest", "Kept", "Serving"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, versions.map((v) => h("tr", {}, h("td", {}, v.version), h("td", {}, h("code", { class: "digest", title: v.digest }, `${v.digest.slice(0, 12)}…`)), h("td", {}, time(v.kept_at)), h("td", {}, v.serving ? "✓ serving" : "no")))),
          ),
        ),
      ),
      h("section", { "aria-labelledby": "h-submit" }, h("h2", { id: "h-submit" }, "Submit a job"), submit, preview),
    );
  }
}
