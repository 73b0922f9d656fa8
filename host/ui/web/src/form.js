// A form generated from a plugin's params JSON Schema: one labelled field per top-level
// property (text, number, checkbox, choice; objects and arrays as JSON), each with its
// description and a place for the plugin's 422 field errors beside it. The browser's own
// validation is off: the plugin is the one judge of params, and says what is wrong where.

import { h } from "./util.js";

function resolve(schema, root) {
  let s = schema || {};
  for (let i = 0; i < 8 && s.$ref; i++) {
    const path = s.$ref.replace(/^#\//, "").split("/");
    s = path.reduce((node, key) => (node ? node[key] : undefined), root) || {};
  }
  // `Option<T>` reads as T or null; take T.
  for (const key of ["anyOf", "oneOf"]) {
    if (Array.isArray(s[key])) {
      const real = s[key].filter((b) => b.type !== "null");
      if (real.length === 1) s = { ...resolve(real[0], root), description: s.description };
    }
  }
  return s;
}

function kind(s) {
  let type = s.type;
  if (Array.isArray(type)) type = type.find((t) => t !== "null");
  if (Array.isArray(s.enum)) return "enum";
  if (type === "boolean") return "bool";
  if (type === "integer" || type === "number") return "number";
  if (type === "string") return s.maxLength !== undefined && s.maxLength <= 255 ? "line" : s.pattern || s.format ? "line" : "text";
  return "json";
}

/**
 * The form's fields for `schema` (with `meta` fields first: service, domain, arch) inside
 * `form`. Answers `collect()` (the request body, or field errors of JSON that does not
 * parse), `showErrors(errors)` and `clear()`.
 */
export function schemaForm(schema, { arches = [], idPrefix = "p" } = {}) {
  const fields = new Map(); // error path ("/params/spec", "/service") -> field
  const summary = h("div", { class: "error-summary", tabindex: "-1", hidden: true });

  function field(path, label, control, hint, extra = {}) {
    const id = `${idPrefix}-${path.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    control.id = id;
    const hintId = `${id}-hint`;
    const errorId = `${id}-error`;
    const error = h("p", { class: "field-error", id: errorId, hidden: true });
    control.setAttribute("aria-describedby", hint ? `${hintId} ${errorId}` : errorId);
    const wrap = h(
      "div",
      { class: `field${extra.wide ? " wide" : ""}` },
      h("label", { for: id }, label, extra.required ? h("span", { class: "req" }, " (required)") : null),
      hint ? h("p", { class: "hint", id: hintId }, hint) : null,
      control,
      error,
    );
    fields.set(path, { control, error, wrap, ...extra });
    return wrap;
  }

  const meta = [
    field("/service", "Service", h("input", { name: "service", value: "web", autocomplete: "off" }), "The submitting service's name.", { required: true, kind: "line" }),
    field("/domain", "Domain", h("input", { name: "domain", value: "default", autocomplete: "off" }), null, { kind: "line" }),
    field(
      "/arch",
      "Arch",
      h("select", { name: "arch" }, ...(arches.length ? arches : ["x86_64"]).map((a) => h("option", { value: a }, a))),
      null,
      { kind: "enum" },
    ),
  ];

  const props = schema && schema.properties ? schema.properties : {};
  const required = new Set((schema && schema.required) || []);
  const params = [];
  for (const [name, raw] of Object.entries(props)) {
    const s = resolve(raw, schema);
    const k = kind(s);
    const desc = raw.description || s.description || "";
    const hint = [desc, s.default !== undefined ? `Default: ${JSON.stringify(s.default)}.` : "", k === "json" ? "JSON." : ""]
      .filter(Boolean)
      .join(" ");
    let control;
    if (k === "enum") {
      control = h("select", { name }, h("option", { value: "" }, "(default)"), ...s.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
    } else if (k === "bool") {
      control = h("input", { type: "checkbox", name, checked: s.default === true });
    } else if (k === "number") {
      control = h("input", { type: "number", name, inputmode: "numeric", placeholder: s.default !== undefined ? String(s.default) : "" });
    } else if (k === "line") {
      control = h("input", { name, autocomplete: "off", spellcheck: "false", placeholder: s.default !== undefined ? String(s.default) : "" });
    } else {
      control = h("textarea", { name, rows: k === "json" ? "3" : "8", spellcheck: "false", placeholder: k === "json" && s.default !== undefined ? JSON.stringify(s.default) : "" });
    }
    params.push(field(`/params/${name}`, s.title && s.title !== name ? `${name} — ${s.title}` : name, control, hint, { required: required.has(name), kind: k, name, schema: s, wide: k === "text" || k === "json" }));
  }

  const element = h(
    "div",
    {},
    summary,
    h("fieldset", {}, h("legend", {}, "Job"), ...meta),
    h("fieldset", {}, h("legend", {}, "Params"), params.length ? params : h("p", {}, "This task takes no params.")),
  );

  function clear() {
    summary.hidden = true;
    summary.replaceChildren();
    for (const f of fields.values()) {
      f.error.hidden = true;
      f.error.textContent = "";
      f.control.removeAttribute("aria-invalid");
    }
  }

  function showErrors(errors, title) {
    clear();
    const unplaced = [];
    let first = null;
    for (const e of errors) {
      const path = e.path || "";
      // The field whose path is the longest prefix of the error's.
      let best = null;
      for (const p of fields.keys()) {
        if ((path === p || path.startsWith(`${p}/`)) && (!best || p.length > best.length)) best = p;
      }
      if (best) {
        const f = fields.get(best);
        f.error.hidden = false;
        f.error.append(h("span", {}, path === best ? e.message : `${path.slice(best.length + 1)}: ${e.message}`));
        f.control.setAttribute("aria-invalid", "true");
        first = first || f;
      } else {
        unplaced.push(e);
      }
    }
    summary.hidden = false;
    summary.setAttribute("role", "alert");
    summary.append(
      h("p", { class: "title" }, title || "The job was not accepted"),
      h(
        "ul",
        {},
        errors.map((e) => {
          const target = [...fields.keys()].find((p) => e.path === p || (e.path || "").startsWith(`${p}/`));
          const text = `${e.path || "(request)"}: ${e.message}`;
          return h("li", {}, target ? h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); fields.get(target).control.focus(); } }, text) : text);
        }),
      ),
    );
    summary.focus();
    return { first, unplaced };
  }

  /** The request's body ({service, domain, arch, params}) or `{errors}`. */
  function collect() {
    const body = { params: {} };
    const errors = [];
    for (const [path, f] of fields) {
      const c = f.control;
      const value = c.type === "checkbox" ? c.checked : c.value;
      let parsed;
      if (f.kind === "bool") {
        if (value === (f.schema.default === true)) continue;
        parsed = value;
      } else if (value === "") {
        continue;
      } else if (f.kind === "number") {
        parsed = Number(value);
        if (Number.isNaN(parsed)) parsed = value;
      } else if (f.kind === "json" || (f.kind === "enum" && path.startsWith("/params/"))) {
        try {
          parsed = JSON.parse(value);
        } catch (e) {
          errors.push({ path, message: `not JSON: ${e.message}` });
          continue;
        }
      } else {
        parsed = value;
      }
      if (path.startsWith("/params/")) body.params[f.name] = parsed;
      else body[path.slice(1)] = parsed;
    }
    return errors.length ? { errors } : { body };
  }

  return { element, collect, showErrors, clear };
}
