// A job's log, virtualized: only the lines on screen (and a few around them) are in the page,
// so a log of a million lines scrolls as one of ten. Lines are kept as strings in arrays, at
// most MAX_LINES of them: past that the oldest tenth is dropped (the page says so; "Download
// whole log" still reads everything from the server), which bounds the tab's memory.

import { h } from "./util.js";
import { segments, strip } from "./ansi.js";

export const MAX_LINES = 1_000_000;
const LINE_HEIGHT = 18;
const OVERSCAN = 30;
const ERROR = /\b(error|errors|fatal|failed|failure)\b/i;

export class LogView {
  constructor({ onChange }) {
    this.text = [];
    this.meta = []; // step index * 2 + (1 if stderr)
    this.seqs = [];
    this.steps = [];
    this.stepIndex = new Map();
    this.stepTimes = new Map(); // step -> {first, last} (ms)
    this.dropped = 0;
    this.lastSeq = -1;
    this.filter = -1; // a step index, -1 for every step, -2 for a step with no line yet
    this.filterName = "";
    this.view = null; // indices of the filtered lines, or null for all
    this.follow = true;
    this.query = "";
    this.current = -1; // the selected line (position in the view)
    this.onChange = onChange || (() => {});
    this.pending = false;

    this.rows = h("div", { class: "log-rows" });
    this.spacer = h("div", { class: "log-spacer" }, this.rows);
    this.scroller = h(
      "div",
      {
        class: "log",
        tabindex: "0",
        role: "region",
        "aria-label": "Log lines (use the arrow and page keys to scroll)",
        "data-testid": "log",
      },
      this.spacer,
    );
    let lastTop = 0;
    this.scroller.addEventListener("scroll", () => {
      const top = this.scroller.scrollTop;
      const atBottom = top + this.scroller.clientHeight >= this.scroller.scrollHeight - LINE_HEIGHT;
      // Scrolling up stops following; scrolling back to the end follows again.
      if (top < lastTop && !atBottom && this.follow) this.setFollow(false);
      else if (atBottom && !this.follow && top > lastTop) this.setFollow(true);
      lastTop = top;
      this.schedule();
    });
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(() => this.schedule()).observe(this.scroller);
    }
  }

  /** Adds a line from the API (`{step, time, seq, stream, line}`); repeats are skipped. */
  append(line) {
    if (line.seq <= this.lastSeq) return;
    if (this.lastSeq >= 0 && line.seq !== this.lastSeq + 1) this.gaps = (this.gaps || 0) + 1;
    this.lastSeq = line.seq;
    let step = this.stepIndex.get(line.step);
    if (step === undefined) {
      step = this.steps.length;
      this.steps.push(line.step);
      this.stepIndex.set(line.step, step);
      if (this.filter === -2 && line.step === this.filterName) this.filter = step;
    }
    const at = Date.parse(line.time);
    const times = this.stepTimes.get(line.step);
    if (times) times.last = at;
    else this.stepTimes.set(line.step, { first: at, last: at });
    this.text.push(line.line);
    this.meta.push(step * 2 + (line.stream === "stderr" ? 1 : 0));
    this.seqs.push(line.seq);
    if (this.view && step === this.filter) this.view.push(this.text.length - 1);
    if (this.text.length > MAX_LINES) this.drop(Math.floor(MAX_LINES / 10));
    this.schedule();
  }

  drop(count) {
    this.text.splice(0, count);
    this.meta.splice(0, count);
    this.seqs.splice(0, count);
    this.dropped += count;
    this.current = -1;
    this.setFilter(this.filterName);
  }

  /** Shows only `step`'s lines (a name), or every line (empty). */
  setFilter(step) {
    const index = step ? this.stepIndex.get(step) : -1;
    this.filterName = step || "";
    this.filter = index === undefined ? -2 : index;
    if (this.filter === -1) {
      this.view = null;
    } else {
      this.view = [];
      for (let i = 0; i < this.meta.length; i++) {
        if (this.meta[i] >> 1 === this.filter) this.view.push(i);
      }
    }
    this.current = -1;
    this.schedule();
  }

  setFollow(follow) {
    this.follow = follow;
    this.onChange();
    this.schedule();
  }

  get count() {
    return this.view ? this.view.length : this.text.length;
  }

  index(position) {
    return this.view ? this.view[position] : position;
  }

  /** Selects the next (or previous) line holding `query`; answers whether one was found. */
  find(query, backwards = false) {
    this.query = query;
    if (!query) {
      this.schedule();
      return false;
    }
    const needle = query.toLowerCase();
    const n = this.count;
    for (let k = 1; k <= n; k++) {
      const p = backwards ? (this.current - k + 2 * n) % n : (this.current + k + n) % n;
      if (strip(this.text[this.index(p)]).toLowerCase().includes(needle)) {
        this.select(p);
        return true;
      }
    }
    this.schedule();
    return false;
  }

  /** How many shown lines hold `query`. */
  matches(query) {
    if (!query) return 0;
    const needle = query.toLowerCase();
    let found = 0;
    for (let p = 0; p < this.count; p++) {
      if (strip(this.text[this.index(p)]).toLowerCase().includes(needle)) found++;
    }
    return found;
  }

  /** Selects the first line that reads as an error; answers whether there is one. */
  firstError() {
    for (let p = 0; p < this.count; p++) {
      if (ERROR.test(strip(this.text[this.index(p)]))) {
        this.select(p);
        return true;
      }
    }
    return false;
  }

  select(position) {
    this.current = position;
    this.follow = false;
    this.onChange();
    const top = position * LINE_HEIGHT - this.scroller.clientHeight / 2;
    this.scroller.scrollTop = Math.max(0, top);
    this.schedule();
  }

  /** The selected line's text, without escapes (for the tests and screen readers). */
  selectedText() {
    return this.current < 0 ? null : strip(this.text[this.index(this.current)]);
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  render() {
    const total = this.count;
    this.spacer.style.height = `${total * LINE_HEIGHT}px`;
    if (this.follow) this.scroller.scrollTop = this.scroller.scrollHeight;
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / LINE_HEIGHT) - OVERSCAN);
    const last = Math.min(total, Math.ceil((top + height) / LINE_HEIGHT) + OVERSCAN);
    this.rows.style.transform = `translateY(${first * LINE_HEIGHT}px)`;
    const needle = this.query.toLowerCase();
    const fragment = document.createDocumentFragment();
    for (let p = first; p < last; p++) {
      const i = this.index(p);
      const meta = this.meta[i];
      const row = h("div", {
        class: `line${meta & 1 ? " err" : ""}${p === this.current ? " current" : ""}`,
        "data-seq": this.seqs[i],
      });
      row.append(
        h("span", { class: "ln", "aria-hidden": "true" }, String(this.dropped + i + 1)),
        h("span", { class: "step" }, this.steps[meta >> 1]),
      );
      const text = this.text[i];
      const plain = strip(text);
      const body = h("span", { class: "text" });
      const at = needle ? plain.toLowerCase().indexOf(needle) : -1;
      if (at >= 0) {
        body.append(
          plain.slice(0, at),
          h("mark", {}, plain.slice(at, at + needle.length)),
          plain.slice(at + needle.length),
        );
      } else {
        for (const seg of segments(text)) {
          body.append(seg.cls ? h("span", { class: seg.cls }, seg.text) : seg.text);
        }
      }
      row.append(body);
      fragment.append(row);
    }
    this.rows.replaceChildren(fragment);
  }
}
