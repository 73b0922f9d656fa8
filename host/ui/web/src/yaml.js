// JSON values written as YAML, for the render preview (what `omni plugin render` shows).
// Strings that could read as something else are written as JSON strings, which YAML reads as
// the same strings; multi-line strings as literal blocks.

const PLAIN = /^[A-Za-z_/][A-Za-z0-9_./-]*( [A-Za-z0-9_./()-]+)*$/;
const WORDS = /^(true|false|null|yes|no|on|off|y|n|~)$/i;

function scalar(value) {
  if (value === null) return "null";
  if (typeof value !== "string") return String(value);
  return PLAIN.test(value) && !WORDS.test(value) ? value : JSON.stringify(value);
}

function isScalar(value) {
  return value === null || typeof value !== "object";
}

function lines(value, pad) {
  const out = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      if (isScalar(item) || isEmpty(item)) {
        out.push(`${pad}- ${inline(item, pad)}`);
      } else {
        const nested = lines(item, `${pad}  `);
        out.push(`${pad}- ${nested[0].trimStart()}`, ...nested.slice(1));
      }
    }
  } else {
    for (const [key, item] of Object.entries(value)) {
      const k = scalar(key);
      if (typeof item === "string" && item.includes("\n")) {
        const keep = item.endsWith("\n") ? "|" : "|-";
        const body = item.endsWith("\n") ? item.slice(0, -1) : item;
        const indicator = /^\s/.test(body) ? `${keep}2` : keep;
        out.push(`${pad}${k}: ${indicator}`);
        for (const line of body.split("\n")) out.push(line ? `${pad}  ${line}` : "");
      } else if (isScalar(item) || isEmpty(item)) {
        out.push(`${pad}${k}: ${inline(item, pad)}`);
      } else {
        out.push(`${pad}${k}:`, ...lines(item, `${pad}  `));
      }
    }
  }
  return out;
}

function isEmpty(value) {
  return typeof value === "object" && value !== null && Object.keys(value).length === 0;
}

function inline(value, pad) {
  if (isEmpty(value)) return Array.isArray(value) ? "[]" : "{}";
  if (typeof value === "string" && value.includes("\n")) return JSON.stringify(value);
  return scalar(value, pad);
}

/** `value` as a YAML document. */
export function toYaml(value) {
  if (isScalar(value) || isEmpty(value)) return `${inline(value, "")}\n`;
  return `${lines(value, "").join("\n")}\n`;
}
