// ANSI colours of log lines (SGR: bold, the 16 foreground and background colours, resets);
// every other escape sequence is dropped. Colours map to classes the stylesheet gives values
// that read on the light and the dark theme.

const CSI = /\x1b\[([0-9;?]*)([A-Za-z])/g;

/** The line without escape sequences (for search and downloads). */
export function strip(line) {
  return line.replace(CSI, "");
}

/** The line as segments `{text, cls}` with its colours. */
export function segments(line) {
  const out = [];
  let fg = null;
  let bg = null;
  let bold = false;
  let last = 0;
  CSI.lastIndex = 0;
  for (let m = CSI.exec(line); m; m = CSI.exec(line)) {
    if (m.index > last) out.push({ text: line.slice(last, m.index), cls: cls(fg, bg, bold) });
    last = CSI.lastIndex;
    if (m[2] !== "m") continue;
    const codes = m[1] === "" ? [0] : m[1].split(";").map(Number);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) {
        fg = null;
        bg = null;
        bold = false;
      } else if (c === 1) bold = true;
      else if (c === 22) bold = false;
      else if (c >= 30 && c <= 37) fg = c - 30;
      else if (c >= 90 && c <= 97) fg = c - 90 + 8;
      else if (c === 39) fg = null;
      else if (c >= 40 && c <= 47) bg = c - 40;
      else if (c >= 100 && c <= 107) bg = c - 100 + 8;
      else if (c === 49) bg = null;
      else if ((c === 38 || c === 48) && codes[i + 1] === 5) i += 2;
      else if ((c === 38 || c === 48) && codes[i + 1] === 2) i += 4;
    }
  }
  if (last < line.length) out.push({ text: line.slice(last), cls: cls(fg, bg, bold) });
  return out;
}

function cls(fg, bg, bold) {
  const parts = [];
  if (fg !== null) parts.push(`f${fg}`);
  if (bg !== null) parts.push(`b${bg}`);
  if (bold) parts.push("bold");
  return parts.join(" ");
}
