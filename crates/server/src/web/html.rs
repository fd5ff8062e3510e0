//! Small pieces of HTML the templates use: escaping, status labels, durations, ANSI colours,
//! diffs. Everything that comes from a log, a diff or a user is escaped here or by askama.

use std::fmt::Write as _;

/// Renders a template; a template that fails to render says so instead of panicking.
pub fn render(t: &impl askama::Template) -> String {
    t.render().unwrap_or_else(|e| {
        format!("<!doctype html><title>Salve</title><p>This page could not be drawn: {}</p>", escape(&e.to_string()))
    })
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A result or state as words with a symbol (never colour alone), and its CSS class.
#[derive(Debug, Clone)]
pub struct Status {
    pub label: String,
    pub class: &'static str,
}

pub fn status(state: &str, result: Option<&str>) -> Status {
    let (symbol, class, word) = match (state, result) {
        (_, Some("passed")) => ("✓", "passed", "passed"),
        (_, Some("failed")) => ("✗", "failed", "failed"),
        (_, Some("stopped")) => ("■", "stopped", "stopped"),
        (_, Some("canceled")) => ("○", "canceled", "canceled"),
        ("running", _) => ("●", "running", "running"),
        ("queuing" | "waiting" | "pending", _) => ("…", "queued", "queued"),
        (_, Some(other)) => ("?", "unknown", other),
        (other, None) => ("?", "unknown", other),
    };
    Status { label: format!("{symbol} {word}"), class }
}

/// A heal's outcome as words with a symbol.
pub fn outcome(outcome: Option<&str>, state: &str) -> Status {
    use salve_contract::HealOutcome as O;
    let (symbol, class, word) = match outcome.map(|o| (O::parse(o), o)) {
        Some((Some(O::Pushed), _)) => ("✓", "passed", "fix pushed"),
        Some((Some(O::Flaky), _)) => ("↻", "queued", "flaky"),
        Some((Some(O::Refused), _)) => ("⛔", "failed", "refused"),
        Some((Some(O::Failed), _)) => ("✗", "failed", "not fixed"),
        Some((Some(O::Superseded), _)) => ("○", "canceled", "superseded"),
        Some((Some(O::Skipped), _)) => ("○", "canceled", "skipped"),
        Some((None, other)) => ("?", "unknown", other),
        None => ("●", "running", state),
    };
    Status { label: format!("{symbol} {word}"), class }
}

pub fn duration(ms: Option<i64>) -> String {
    match ms {
        None => String::new(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

pub fn between(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => duration(Some(e - s)),
        (Some(s), None) => format!("{} so far", duration(Some(salve_store::now_ms() - s))),
        _ => String::new(),
    }
}

/// "3 min ago".
pub fn ago(ms: i64) -> String {
    let s = (salve_store::now_ms() - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

pub fn short(sha: &str) -> String {
    sha.chars().take(7).collect()
}

/// A log line with its ANSI colours as spans (SGR 0, 1, 30-37, 90-97; everything else
/// dropped), escaped.
pub fn ansi(line: &str) -> String {
    let mut out = String::new();
    let mut open = 0;
    let mut rest = line;
    while let Some(i) = rest.find('\u{1b}') {
        out.push_str(&escape(&rest[..i]));
        let after = &rest[i + 1..];
        let Some(body) = after.strip_prefix('[') else {
            // Character set designations (`ESC ( B`) take one more character; others none.
            let mut chars = after.chars();
            rest = match chars.next() {
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                    chars.as_str()
                }
                Some(_) => chars.as_str(),
                None => "",
            };
            continue;
        };
        let end = body.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(body.len());
        let (params, cmd) = (&body[..end], body[end..].chars().next());
        rest = body.get(end + 1..).unwrap_or("");
        if cmd != Some('m') {
            continue;
        }
        for p in params.split(';') {
            let n: u32 = p.parse().unwrap_or(0);
            let class = match n {
                0 => {
                    for _ in 0..open {
                        out.push_str("</span>");
                    }
                    open = 0;
                    continue;
                }
                1 => "b".to_owned(),
                30..=37 => format!("c{}", n - 30),
                90..=97 => format!("c{}", n - 90 + 8),
                _ => continue,
            };
            let _ = write!(out, "<span class=\"a-{class}\">");
            open += 1;
        }
    }
    out.push_str(&escape(rest));
    for _ in 0..open {
        out.push_str("</span>");
    }
    out
}

/// A unified diff as table rows: file headers, hunk headers, and lines marked added, removed
/// or context, with the old and new line numbers.
pub fn diff(text: &str) -> String {
    let mut out = String::new();
    let (mut old, mut new) = (0u64, 0u64);
    for line in text.lines() {
        if line.starts_with("diff --git ") {
            let name = line.rsplit_once(" b/").map_or(line, |(_, b)| b);
            let _ = write!(out, "<tr class=\"d-file\"><th colspan=\"3\" scope=\"rowgroup\">{}</th></tr>", escape(name));
        } else if let Some(h) = line.strip_prefix("@@") {
            let nums: Vec<u64> = h.split(['-', '+', ',', ' ']).filter_map(|x| x.parse().ok()).collect();
            let plus = h.find('+').map(|i| &h[i + 1..]).unwrap_or("");
            old = nums.first().copied().unwrap_or(0);
            new = plus.split([',', ' ']).next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let _ = write!(out, "<tr class=\"d-hunk\"><td></td><td></td><td>{}</td></tr>", escape(line));
        } else if line.starts_with("+++")
            || line.starts_with("---")
            || line.starts_with("index ")
            || line.starts_with("new file")
            || line.starts_with("deleted file")
        {
            continue;
        } else if let Some(l) = line.strip_prefix('+') {
            let _ = write!(
                out,
                "<tr class=\"d-add\"><td></td><td>{new}</td><td><span class=\"sr\">added: </span>+{}</td></tr>",
                escape(l)
            );
            new += 1;
        } else if let Some(l) = line.strip_prefix('-') {
            let _ = write!(
                out,
                "<tr class=\"d-del\"><td>{old}</td><td></td><td><span class=\"sr\">removed: </span>-{}</td></tr>",
                escape(l)
            );
            old += 1;
        } else {
            let l = line.strip_prefix(' ').unwrap_or(line);
            let _ = write!(out, "<tr><td>{old}</td><td>{new}</td><td> {}</td></tr>", escape(l));
            old += 1;
            new += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colours_become_spans_and_the_rest_is_escaped() {
        assert_eq!(
            ansi("\u{1b}[1;31merror\u{1b}[0m: <x>"),
            "<span class=\"a-b\"><span class=\"a-c1\">error</span></span>: &lt;x&gt;"
        );
        assert_eq!(ansi("\u{1b}[2Kplain"), "plain");
        assert_eq!(ansi("open \u{1b}[32mgreen"), "open <span class=\"a-c2\">green</span>");
        assert_eq!(ansi("broken \u{1b}["), "broken ");
        assert_eq!(ansi("\u{1b}(B\u{1b}[m+ a"), "+ a");
    }

    #[test]
    fn diffs_number_their_lines() {
        let d = diff("diff --git a/x.rs b/x.rs\n--- a/x.rs\n+++ b/x.rs\n@@ -3,2 +3,2 @@\n a\n-b\n+<c>\n");
        assert!(d.contains("<th colspan=\"3\" scope=\"rowgroup\">x.rs</th>"), "{d}");
        assert!(d.contains("<tr><td>3</td><td>3</td><td> a</td></tr>"), "{d}");
        assert!(d.contains("<tr class=\"d-del\"><td>4</td><td></td>"), "{d}");
        assert!(
            d.contains(
                "<tr class=\"d-add\"><td></td><td>4</td><td><span class=\"sr\">added: </span>+&lt;c&gt;</td></tr>"
            ),
            "{d}"
        );
    }
}
