// The render preview's YAML writer and the log's ANSI colours (node --test, run by
// tests/ui-assets.sh): the cases that are easy to get wrong.
import { test } from "node:test";
import assert from "node:assert/strict";
import { toYaml } from "../src/yaml.js";
import { segments, strip } from "../src/ansi.js";

test("plain strings stay plain; strings YAML would read as something else are quoted", () => {
  assert.equal(toYaml({ kind: "Job", n: "true", v: "1.0", e: "", c: "a: b", d: "-x" }), 'kind: Job\n"n": "true"\nv: "1.0"\ne: ""\nc: "a: b"\nd: "-x"\n');
});

test("numbers, booleans, null and empty collections", () => {
  assert.equal(toYaml({ a: 3, b: false, c: null, d: [], e: {} }), "a: 3\nb: false\nc: null\nd: []\ne: {}\n");
});

test("nested maps and lists of maps", () => {
  const doc = { spec: { containers: [{ name: "build", args: ["-c", "x"] }] } };
  assert.equal(toYaml(doc), 'spec:\n  containers:\n    - name: build\n      args:\n        - "-c"\n        - x\n');
});

test("multi-line strings are literal blocks, with or without a final newline", () => {
  assert.equal(toYaml({ s: "a\nb\n" }), "s: |\n  a\n  b\n");
  assert.equal(toYaml({ s: "a\n\nb" }), "s: |-\n  a\n\n  b\n");
  assert.equal(toYaml({ s: "  indented\nx\n" }), "s: |2\n    indented\n  x\n");
});

test("ANSI colours become classes; other escapes are dropped", () => {
  assert.deepEqual(segments("a\x1b[1;31mred\x1b[0m b\x1b[Kc"), [
    { text: "a", cls: "" },
    { text: "red", cls: "f1 bold" },
    { text: " b", cls: "" },
    { text: "c", cls: "" },
  ]);
  assert.deepEqual(segments("\x1b[92;44mx\x1b[39my"), [
    { text: "x", cls: "f10 b4" },
    { text: "y", cls: "b4" },
  ]);
  assert.equal(strip("\x1b[32mok\x1b[0m \x1b[2Kdone"), "ok done");
});
