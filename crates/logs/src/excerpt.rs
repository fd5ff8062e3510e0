//! The lines that explain a failed job, within a byte budget.
//!
//! One pass over the log scores every line by failure evidence (diagnostics with a location,
//! `error`/`FAILED`/`panicked`/`Traceback`/exception lines, test-framework failure markers, exit
//! codes) and, when baselines (logs of passing runs of the same job) are given, by novelty: a
//! line whose normalised form (numbers, hashes, paths' digits, timestamps masked) appears in a
//! baseline is not evidence, one that never does is. Anchors grow into whole blocks (a
//! diagnostic with its indented continuation, a stack trace), and blocks are taken best first
//! until the budget is spent, then printed in log order.

use std::collections::HashSet;

/// One line of the log: its number (1-based), byte range and cleaned text.
#[derive(Debug, Clone)]
pub struct LogLine<'a> {
    pub number: usize,
    /// The line as it is in the log (without the line break).
    pub raw: &'a [u8],
}

/// Splits a log into lines: `\n`, `\r\n`, and a bare `\r` (progress output) all end a line.
pub fn lines(log: &[u8]) -> Vec<LogLine<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < log.len() {
        match log[i] {
            b'\n' => {
                out.push(LogLine { number: out.len() + 1, raw: &log[start..i] });
                start = i + 1;
            }
            b'\r' if log.get(i + 1) == Some(&b'\n') => {
                out.push(LogLine { number: out.len() + 1, raw: &log[start..i] });
                i += 1;
                start = i + 1;
            }
            b'\r' => {
                out.push(LogLine { number: out.len() + 1, raw: &log[start..i] });
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < log.len() {
        out.push(LogLine { number: out.len() + 1, raw: &log[start..] });
    }
    out
}

/// The line without ANSI escapes, as text (invalid UTF-8 replaced).
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                while let Some(&n) = chars.peek() {
                    chars.next();
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The line's shape: lowercase letters kept, every run of digits (and hex of 7+ chars) one
/// `#`, timestamps and durations with it; whitespace collapsed. Equal shapes across runs of the
/// same job mean "the same line".
pub fn shape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_hash = false;
    let mut last_space = false;
    let words: Vec<&str> = text.split_whitespace().collect();
    for (wi, word) in words.iter().enumerate() {
        if wi > 0 && !last_space {
            out.push(' ');
            last_space = true;
        }
        let hexish =
            word.len() >= 7 && word.chars().all(|c| c.is_ascii_hexdigit()) && word.chars().any(|c| c.is_ascii_digit());
        if hexish {
            if !last_hash {
                out.push('#');
            }
            last_hash = true;
            last_space = false;
            continue;
        }
        for c in word.chars() {
            if c.is_ascii_digit() {
                if !last_hash {
                    out.push('#');
                    last_hash = true;
                }
            } else {
                out.extend(c.to_lowercase());
                last_hash = false;
            }
            last_space = false;
        }
    }
    out
}

fn hash(s: &str) -> u64 {
    // FNV-1a: small, fast, stable across runs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shapes of the lines of passing runs.
#[derive(Default)]
pub struct Baseline {
    shapes: HashSet<u64>,
}

impl Baseline {
    pub fn add(&mut self, log: &[u8]) {
        for l in lines(log) {
            self.shapes.insert(hash(&shape(strip_prefix(&clean(l.raw)))));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    fn contains(&self, shape: &str) -> bool {
        self.shapes.contains(&hash(shape))
    }
}

/// CI runners put a job name and a timestamp before each line (GitHub Actions:
/// `job\tstep\t2021-12-01T13:01:04.38Z `); the evidence is after it.
fn strip_prefix(text: &str) -> &str {
    let mut rest = text;
    if let Some((_, tail)) = rest.rsplit_once('\t') {
        rest = tail;
    }
    let trimmed = rest.trim_start();
    let ts_len = trimmed
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_digit() || matches!(c, '-' | ':' | 'T' | '.' | 'Z' | '+'))
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    if ts_len >= 19 && trimmed.as_bytes().get(4) == Some(&b'-') { &trimmed[ts_len..] } else { rest }
}

/// How strongly one line says "this is why it failed".
fn evidence(text: &str) -> i32 {
    let t = text.trim();
    if t.is_empty() {
        return 0;
    }
    let lower = t.to_ascii_lowercase();
    let mut score = 0;
    const STRONG: &[&str] = &[
        "error:",
        "error[",
        "[error]",
        "error ",
        "fatal:",
        "fatal error",
        "failed",
        "failure",
        "panicked at",
        "traceback (most recent call last)",
        "exception",
        "assertionerror",
        "assertion failed",
        "cannot find symbol",
        "undefined reference",
        "no such file or directory",
        "command not found",
        "npm err!",
        "build failure",
        "segmentation fault",
        "killed",
        "out of memory",
        "timed out",
        "expected",
        "unexpected",
        "not found",
        "denied",
    ];
    for k in STRONG {
        if lower.contains(k) {
            score += 3;
        }
    }
    if t.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '$' || c == '_'))
        .any(|w| w.len() > 9 && (w.ends_with("Exception") || w.ends_with("Error")) && w.contains('.'))
    {
        score += 4;
    }
    if lower.starts_with("e ") || lower.starts_with("> ") || lower.starts_with("--> ") {
        score += 2;
    }
    if has_location(t) {
        score += 2;
    }
    if lower.contains("exit code") || lower.contains("exited with") || lower.contains("returned non-zero") {
        score += 2;
    }
    const NOISE: &[&str] = &[
        "[info]",
        "downloading",
        "downloaded",
        "0 failed",
        "failures: 0",
        "errors: 0",
        "0 errors",
        "build success",
        "warning",
        "[warn",
        "debug",
    ];
    for k in NOISE {
        if lower.contains(k) {
            score -= 3;
        }
    }
    score.max(0)
}

/// `file.ext:12`, `file.ext:[12,5]`, `file.ext(12)`, `line 12`.
fn has_location(t: &str) -> bool {
    let b = t.as_bytes();
    for i in 1..b.len() {
        if (b[i] == b':' || b[i] == b'(' || b[i] == b'[') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let before = &t[..i];
            if before.rsplit(|c: char| c.is_whitespace() || c == '/').next().is_some_and(|w| w.contains('.')) {
                return true;
            }
        }
        if b[i] == b'[' && b.get(i + 1).is_some_and(u8::is_ascii_digit) && t[..i].ends_with(':') {
            return true;
        }
    }
    t.contains(" line ") && t.chars().any(|c| c.is_ascii_digit())
}

/// A line that continues the one before: indented, a stack frame, a caret line.
fn continues(text: &str) -> bool {
    let t = text.trim_start();
    text.starts_with(' ')
        || text.starts_with('\t')
        || t.starts_with("at ")
        || t.starts_with("Caused by")
        || t.starts_with('|')
        || t.starts_with('^')
}

#[derive(Debug, Clone)]
pub struct Excerpt {
    /// 1-based line numbers, in log order.
    pub lines: Vec<usize>,
    pub bytes: usize,
}

/// Picks the excerpt from a log's [`lines`]. `max_bytes` bounds the raw bytes of the chosen
/// lines (plus newlines).
pub fn extract(all: &[LogLine<'_>], baseline: &Baseline, max_bytes: usize) -> Excerpt {
    let texts: Vec<String> = all.iter().map(|l| clean(l.raw)).collect();
    let bodies: Vec<&str> = texts.iter().map(|t| strip_prefix(t)).collect();
    let with_baseline = !baseline.is_empty();
    let shapes: Vec<String> = bodies.iter().map(|b| shape(b)).collect();
    let in_baseline: Vec<bool> = shapes.iter().map(|sh| with_baseline && baseline.contains(sh)).collect();
    let mut seen_shapes: HashSet<u64> = HashSet::new();
    let scores: Vec<i32> = bodies
        .iter()
        .zip(&shapes)
        .zip(&in_baseline)
        .map(|((body, sh), &known)| {
            let mut s = evidence(body);
            let first = seen_shapes.insert(hash(sh));
            if known {
                s /= 4;
            } else if with_baseline && !sh.trim().is_empty() {
                s += 2;
            }
            if !first {
                s /= 2;
            }
            s
        })
        .collect();
    // Blocks: each anchor with its continuation lines and one line of lead-in.
    let mut blocks: Vec<(usize, usize, i32)> = Vec::new();
    let threshold = if with_baseline { 4 } else { 3 };
    let mut i = 0;
    while i < all.len() {
        if scores[i] < threshold {
            i += 1;
            continue;
        }
        let start = i.saturating_sub(usize::from(i > 0 && scores[i - 1] > 0));
        let mut end = i + 1;
        let mut total = scores[i];
        while end < all.len()
            && end - i < 40
            && (continues(bodies[end]) || (scores[end] >= threshold && !in_baseline[end]))
            && !bodies[end].trim().is_empty()
        {
            total += scores[end].max(1);
            end += 1;
        }
        blocks.push((start, end, total));
        i = end;
    }
    // The end of the log says how it ended: keep its last lines as a weak block.
    if let Some(last) = (0..all.len()).rev().find(|&k| !bodies[k].trim().is_empty()) {
        blocks.push((last.saturating_sub(2), last + 1, 1));
    }
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by(|&a, &b| blocks[b].2.cmp(&blocks[a].2).then(blocks[a].0.cmp(&blocks[b].0)));
    let mut chosen = vec![false; all.len()];
    let mut bytes = 0usize;
    let best = order.first().map_or(0, |&b| blocks[b].2);
    for bi in order {
        let (s, e, score) = blocks[bi];
        // Weak blocks only when nothing better exists: precision over filling the budget.
        if score * 4 < best {
            continue;
        }
        let cost: usize = (s..e).filter(|&k| !chosen[k]).map(|k| all[k].raw.len() + 1).sum();
        if bytes + cost > max_bytes {
            // Take the head of a big block if nothing was chosen yet.
            if bytes == 0 {
                for k in s..e {
                    let c = all[k].raw.len() + 1;
                    if bytes + c > max_bytes {
                        break;
                    }
                    chosen[k] = true;
                    bytes += c;
                }
            }
            continue;
        }
        chosen[s..e].fill(true);
        bytes += cost;
    }
    let picked: Vec<usize> = (0..all.len()).filter(|&k| chosen[k]).map(|k| all[k].number).collect();
    Excerpt { lines: picked, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_mask_numbers_hashes_and_case() {
        assert_eq!(
            shape("Took 12.5s at 2021-12-01T13:01:04Z commit 3f2a9c1d"),
            shape("took 3.25s at 2022-01-05T00:00:00Z commit 99aa00bb")
        );
        assert_ne!(shape("test a failed"), shape("test b failed"));
    }

    #[test]
    fn strips_runner_prefixes() {
        assert_eq!(strip_prefix("build\tstep\t2021-12-01T13:01:04.3811085Z     java.lang.X"), "     java.lang.X");
        assert_eq!(strip_prefix("plain line"), "plain line");
    }

    #[test]
    fn splits_crlf_and_carriage_returns() {
        let l = lines(b"a\r\nb\rc\nd");
        assert_eq!(l.iter().map(|l| l.raw).collect::<Vec<_>>(), [&b"a"[..], b"b", b"c", b"d"]);
    }
}
