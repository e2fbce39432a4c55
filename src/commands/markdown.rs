//! Which lines of a Markdown comment a reader sees as ordinary text at the start of a line.
//! Quotes, code (fenced, indented, inline spans) and HTML comments are not: a command quoted in a
//! reply, shown in a code block or hidden in a comment must never run. Pure.
//!
//! This follows CommonMark where it matters for that decision and errs towards "not a command":
//! - `>` at the start of a line (after any indentation) makes the line a quote. Lines after a quote
//!   that do not start with `>` are ordinary text, although CommonMark would let a paragraph run
//!   on lazily into the quote: someone who writes `/pin` under a quoted line means it.
//! - A fence of three or more `` ` `` or `~` opens a code block at any indentation (fences in list
//!   items are indented); only a fence of the same character and at least the same length closes
//!   it. An unclosed fence runs to the end of the comment.
//! - A line indented by four columns or more (a tab counts to the next multiple of four) that
//!   does not continue a paragraph is an indented code block, up to the next less indented line.
//! - `<!--` hides everything up to `-->`, across lines; a line on which a comment ends is hidden
//!   whole. Without `-->` the rest of the comment is hidden.
//! - A line that begins inside an inline code span (a span that opened on an earlier line of the
//!   same paragraph) is code. A span on the line itself needs no special care: a line that starts
//!   with a backtick does not start with `/`.

/// The comment's lines, CRLF and CR normalised, each `Some(text)` when it is ordinary text (HTML
/// comments replaced by a space) or `None` when it is quote, code or comment. Blank lines are
/// `Some("")`.
pub(super) fn visible_lines(body: &str) -> Vec<Option<String>> {
    let text = body.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<Option<String>> = Vec::new();
    let mut state = Block::Text;
    // Whether the previous line was paragraph text, which an indented line continues instead of
    // starting a code block.
    let mut paragraph_open = false;
    let mut in_indented_code = false;
    for line in text.split('\n') {
        match state {
            Block::Comment => {
                if line.contains("-->") {
                    state = Block::Text;
                }
                lines.push(None);
                paragraph_open = false;
                continue;
            }
            Block::Fence { ch, len } => {
                if closes_fence(line, ch, len) {
                    state = Block::Text;
                }
                lines.push(None);
                paragraph_open = false;
                continue;
            }
            Block::Text => {}
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            lines.push(Some(String::new()));
            paragraph_open = false;
            continue;
        }
        if indent_columns(line) >= 4 && (!paragraph_open || in_indented_code) {
            lines.push(None);
            in_indented_code = true;
            continue;
        }
        in_indented_code = false;
        if let Some((ch, len)) = opens_fence(trimmed) {
            state = Block::Fence { ch, len };
            lines.push(None);
            paragraph_open = false;
            continue;
        }
        if trimmed.starts_with('>') {
            lines.push(None);
            paragraph_open = true;
            continue;
        }
        let (visible, unclosed) = strip_html_comments(line);
        if unclosed {
            state = Block::Comment;
        }
        paragraph_open = true;
        lines.push(Some(visible));
    }
    mask_lines_inside_code_spans(&mut lines);
    lines
}

#[derive(Clone, Copy)]
enum Block {
    Text,
    Fence { ch: char, len: usize },
    Comment,
}

fn indent_columns(line: &str) -> usize {
    let mut columns = 0;
    for c in line.chars() {
        match c {
            ' ' => columns += 1,
            '\t' => columns += 4 - columns % 4,
            _ => break,
        }
    }
    columns
}

fn run_length(s: &str, ch: char) -> usize {
    s.chars().take_while(|&c| c == ch).count()
}

/// A fence opener: three or more backticks (whose info string holds no backtick) or tildes.
fn opens_fence(trimmed: &str) -> Option<(char, usize)> {
    let ch = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = run_length(trimmed, ch);
    if len < 3 {
        return None;
    }
    // `len` counts one-byte characters, so it is a byte offset too.
    if ch == '`' && trimmed[len..].contains('`') {
        return None;
    }
    Some((ch, len))
}

fn closes_fence(line: &str, ch: char, len: usize) -> bool {
    let trimmed = line.trim_start();
    let run = run_length(trimmed, ch);
    run >= len && trimmed[run..].trim().is_empty()
}

/// The line with each `<!-- ... -->` replaced by a space, and whether a comment stays open.
fn strip_html_comments(line: &str) -> (String, bool) {
    let mut visible = String::new();
    let mut rest = line;
    loop {
        let Some(start) = rest.find("<!--") else {
            visible.push_str(rest);
            return (visible, false);
        };
        visible.push_str(&rest[..start]);
        let after = &rest[start + 4..];
        let Some(end) = after.find("-->") else {
            return (visible, true);
        };
        visible.push(' ');
        rest = &after[end + 3..];
    }
}

/// Hides lines that begin inside a code span opened on an earlier line of the same paragraph.
fn mask_lines_inside_code_spans(lines: &mut [Option<String>]) {
    let mut start = 0;
    while start < lines.len() {
        if !is_paragraph_line(&lines[start]) {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < lines.len() && is_paragraph_line(&lines[end]) {
            end += 1;
        }
        if end - start > 1 {
            let mut joined = String::new();
            let mut line_starts = Vec::new();
            for line in lines[start..end].iter().flatten() {
                line_starts.push(joined.len());
                joined.push_str(line);
                joined.push('\n');
            }
            let spans = code_spans(&joined);
            for (i, offset) in line_starts.into_iter().enumerate() {
                if spans.iter().any(|&(s, e)| s < offset && offset < e) {
                    lines[start + i] = None;
                }
            }
        }
        start = end;
    }
}

fn is_paragraph_line(line: &Option<String>) -> bool {
    line.as_deref().is_some_and(|l| !l.trim().is_empty())
}

/// Byte ranges of code spans: a run of N backticks up to the next run of exactly N.
fn code_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let runs: Vec<(usize, usize)> = {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'`' {
                let begin = i;
                while i < bytes.len() && bytes[i] == b'`' {
                    i += 1;
                }
                runs.push((begin, i - begin));
            } else {
                i += 1;
            }
        }
        runs
    };
    let mut spans = Vec::new();
    let mut i = 0;
    while i < runs.len() {
        let (open, len) = runs[i];
        match runs[i + 1..].iter().position(|&(_, l)| l == len) {
            Some(k) => {
                let (close, _) = runs[i + 1 + k];
                spans.push((open, close + len));
                i += k + 2;
            }
            None => i += 1,
        }
    }
    spans
}
