//! What a step prints, made into log lines the same way by every engine: lines of bounded length
//! (a step that prints a gigabyte without a newline costs the host one piece at a time) and text
//! that is always valid and readable, whatever bytes the step wrote.

/// The longest piece of a line, in bytes: longer lines are split into pieces of at most this
/// many bytes, each a log line of its own (the kubelet splits container output at 16 KiB too).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// One line, or one piece of a line longer than the splitter's bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The bytes, without the line ending.
    pub bytes: Vec<u8>,
    /// It continues the piece before it (it does not start a line).
    pub continued: bool,
}

/// Splits a byte stream into lines of at most `max` bytes: feed it what was read
/// ([`LineSplitter::push`]), then [`LineSplitter::finish`] at the end of the stream. Line endings
/// (`\n`, `\r\n`) are removed. A line longer than `max` comes as several pieces, cut where no
/// UTF-8 character is split when the text allows it.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    /// The next piece continues a line already partly given out.
    continued: bool,
}

impl LineSplitter {
    /// A splitter with pieces of at most `max` bytes (at least 4: one character).
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max: max.max(4),
            buf: Vec::new(),
            continued: false,
        }
    }

    /// Takes `chunk` and appends the lines (and pieces) it completes to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Piece>) {
        while !chunk.is_empty() {
            let room = self.max - self.buf.len();
            let window = &chunk[..chunk.len().min(room + 1)];
            if let Some(at) = window.iter().position(|&b| b == b'\n') {
                self.buf.extend_from_slice(&chunk[..at]);
                chunk = &chunk[at + 1..];
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                self.emit(out);
                self.continued = false;
            } else if chunk.len() <= room {
                self.buf.extend_from_slice(chunk);
                return;
            } else {
                // Over the bound without a line ending: the piece is cut here.
                self.buf.extend_from_slice(&chunk[..room]);
                chunk = &chunk[room..];
                let cut = cut_point(&self.buf);
                let rest = self.buf.split_off(cut);
                self.emit(out);
                self.continued = true;
                self.buf = rest;
            }
        }
    }

    /// The last line, if the stream did not end with a line ending.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if !self.buf.is_empty() {
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            self.emit(out);
        }
        self.continued = false;
    }

    fn emit(&mut self, out: &mut Vec<Piece>) {
        out.push(Piece {
            bytes: std::mem::take(&mut self.buf),
            continued: self.continued,
        });
    }
}

/// Where a full buffer is cut: after its last whole UTF-8 character when its end splits one,
/// else at its end.
fn cut_point(buf: &[u8]) -> usize {
    match std::str::from_utf8(buf) {
        Err(e)
            if e.error_len().is_none()
                && e.valid_up_to() > 0
                && buf.len() - e.valid_up_to() < 4 =>
        {
            e.valid_up_to()
        }
        _ => buf.len(),
    }
}

/// `bytes` as a log line's text. Valid UTF-8 stays as it is, except control characters other
/// than tab and escape (kept: build tools colour their output with it), which are written
/// `\xNN`; every byte that is not part of valid UTF-8 is written `\xNN` too, so binary output
/// is readable and nothing of it is silently replaced.
pub fn decode_line(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() && c != '\t' && c != '\u{1b}' && (c as u32) < 0x80 {
                push_escaped(&mut text, c as u8);
            } else {
                text.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_escaped(&mut text, b);
        }
    }
    text
}

fn push_escaped(text: &mut String, byte: u8) {
    use std::fmt::Write;
    let _ = write!(text, "\\x{byte:02x}");
}

/// Splits `line` into pieces of at most `max` bytes at character boundaries (the whole line
/// when it fits): for engines whose lines come as text already.
pub fn split_text(line: &str, max: usize) -> Vec<&str> {
    let max = max.max(4);
    if line.len() <= max {
        return vec![line];
    }
    let mut pieces = Vec::with_capacity(line.len() / max + 1);
    let mut rest = line;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut out);
        }
        splitter.finish(&mut out);
        out.into_iter()
            .map(|p| (String::from_utf8(p.bytes).unwrap(), p.continued))
            .collect()
    }

    #[test]
    fn lines_end_at_newlines_whatever_the_chunks() {
        let whole = split(64, &[b"one\ntwo\r\nthree\n"]);
        let bytewise: Vec<&[u8]> = b"one\ntwo\r\nthree\n".chunks(1).collect();
        assert_eq!(whole, split(64, &bytewise));
        assert_eq!(
            whole,
            vec![
                ("one".into(), false),
                ("two".into(), false),
                ("three".into(), false)
            ]
        );
    }

    #[test]
    fn an_empty_line_is_a_line_and_a_last_line_without_newline_is_kept() {
        assert_eq!(
            split(64, &[b"\n\nlast"]),
            vec![
                (String::new(), false),
                (String::new(), false),
                ("last".into(), false)
            ]
        );
    }

    #[test]
    fn a_long_line_comes_in_pieces_of_the_bound() {
        let line = "a".repeat(10);
        let got = split(4, &[line.as_bytes(), b"\nnext\n"]);
        assert_eq!(
            got,
            vec![
                ("aaaa".into(), false),
                ("aaaa".into(), true),
                ("aa".into(), true),
                ("next".into(), false)
            ]
        );
        // A line of exactly the bound is one piece.
        assert_eq!(split(4, &[b"abcd\n"]), vec![("abcd".into(), false)]);
    }

    #[test]
    fn pieces_do_not_split_characters() {
        // "é" is two bytes: a bound of 5 would cut the third one in half.
        let got = split(5, &["ééé\n".as_bytes()]);
        assert_eq!(got, vec![("éé".into(), false), ("é".into(), true)]);
        for (piece, _) in &got {
            assert!(piece.len() <= 5);
        }
    }

    #[test]
    fn binary_is_escaped_and_text_kept() {
        assert_eq!(decode_line(b"plain text"), "plain text");
        assert_eq!(decode_line("ünïcode ✓".as_bytes()), "ünïcode ✓");
        assert_eq!(
            decode_line(b"\x1b[31mred\x1b[0m\tok"),
            "\x1b[31mred\x1b[0m\tok"
        );
        assert_eq!(decode_line(b"nul\x00bell\x07"), "nul\\x00bell\\x07");
        assert_eq!(decode_line(b"\xff\xfeA\xc3"), "\\xff\\xfeA\\xc3");
        assert_eq!(decode_line(b"\x7f"), "\\x7f");
    }

    #[test]
    fn text_splits_at_character_boundaries() {
        assert_eq!(split_text("short", 16), vec!["short"]);
        assert_eq!(split_text("aaaaaaaaa", 4), vec!["aaaa", "aaaa", "a"]);
        assert_eq!(split_text("ééé", 5), vec!["éé", "é"]);
    }
}
