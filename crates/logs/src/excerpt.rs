//! The lines that explain a failed job, within a byte budget, in one streaming pass.
//!
//! The log is read in chunks; memory stays bounded by a few blocks of lines, whatever the log's
//! size (a line longer than [`LINE_CAP`] is kept cut). A case-insensitive keyword automaton
//! finds the few lines worth a closer look; only those are cleaned and scored by failure
//! evidence (diagnostics with a location, `error`/`FAILED`/`panicked`/`Traceback`/exception
//! lines, test-framework failure markers, exit codes), and generic tool epilogues ("Re-run Maven
//! with -e", "Run with --stacktrace", "Process completed with exit code 1") are not evidence.
//! When baselines (logs of passing runs of the same job) are given, every line's shape (ANSI
//! stripped, digits, hashes and timestamps masked) is looked up: a line a passing run also
//! printed is weak evidence, one it never printed is strong. Anchors grow into whole blocks (a
//! heading, a diagnostic with its indented or error-tagged continuation, a stack trace, the
//! count of errors, the list a count sums up), blocks at most two lines apart join into one
//! region. Each block is weighed by the step that printed it: the runner's command records for
//! Salve's own jobs, or the steps [`crate::steps`] recovers from another CI's markers. The best
//! blocks (weighed up towards the log's end, plus the failing step's last block: the tool's own
//! summary) are taken until the budget is spent, then the failing step's last lines, and printed
//! in log order. When the failing step holds no evidence, its end is the excerpt.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufRead, Read};
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use aho_corasick::packed;

pub use crate::line::{clean, shape};
use crate::line::{escape_len, level_tag, lower_clean, skip_escapes};
use crate::semaphore;
pub use crate::steps::CommandSpan;
use crate::steps::{Marker, Role, Tracker, marker};

/// Bytes of one line kept for the excerpt; a longer line is cut there.
pub const LINE_CAP: usize = 4096;
/// Bytes read at a time.
const CHUNK: usize = 1 << 20;
/// Recent lines kept: lead-in for the next anchor, and the log's end.
const RING: usize = 6;
/// A block stops growing here (a stack trace is longer than anyone reads).
const MAX_BLOCK_LINES: usize = 80;
/// Blocks kept while reading (the best by score).
const KEEP_BLOCKS: usize = 32;
/// Lines of a block that count fully towards its score.
const FULL_LINES: i64 = 10;
/// Lines between two blocks that still make them one (a build tool's summary between a stack
/// trace and its "Failed to execute goal").
const GAP: usize = 2;
/// Distinct evidence shapes remembered to fold repeats.
const MAX_SEEN: usize = 1 << 16;

/// Words that make a line worth scoring, in the cases logs write them. Case-sensitive stems (at
/// most 64) let the SIMD "Teddy" searcher scan a chunk at memory speed; a case-insensitive
/// automaton cannot use it. A stem without its first letter covers both cases (`xception`).
const KEYWORDS: &[&str] = &[
    "error",
    "Error",
    "ERROR",
    "fail",
    "Fail",
    "FAIL",
    "fatal",
    "Fatal",
    "FATAL",
    "anic",
    "xception",
    "ssert",
    "raceback",
    "denied",
    "killed",
    "Killed",
    "imeout",
    "reformat",
    "style issue",
    "exceeded",
    "imed out",
    "abort",
    "Diff in",
    "cannot",
    "Cannot",
    "nable to",
    "xpected",
    "egmentation",
    "ould not",
    "ot found",
    "o such",
    "xit code",
    "ERR!",
    "go.mod",
    "go.sum",
    "module provid",
    "not declared",
    "undefined: ",
    "lready in use",
    "onnect to",
    "no default is",
    "not installed",
    "not required",
    "rovides package",
    // Step markers of CI logs (see `steps`): GitLab's sections (its clean-up comes after the
    // failing command) and the exits Travis, CircleCI and Buildkite print. Markers that start
    // with `$`, `+` or `#` (`$ cmd`, `+ cmd`, `##[group]Run`) are found by [`marker_starts`]:
    // as stems they would make the searcher check far more candidates. Other markers (Jenkins'
    // stages, Buildkite's `---` headers, GitHub's `Post job cleanup.`) are read when their line
    // is read anyway: an exit code already says where the failure was.
    "ction_start",
    "exited with",
    // Counts of lint tools' findings: `✖ 4 problems`, `8 offenses detected`.
    "problem",
    "ffense",
    // A stalled job: `The build has been terminated`, `Terminated` (Travis' `No output has been
    // received…` before it comes with it as the failing step's end).
    "erminated",
];

/// Where lines of `region` start with a step marker that begins with `$`, `+` or `#` (after
/// the runner's prefix and colour codes): `$ cmd`, `+ cmd`, `+++ title`, `##[group]Run cmd`,
/// `#!/bin/bash -eo pipefail`. Those bytes are rare in logs, so a byte search finds the few
/// candidates at memory speed.
fn marker_starts(region: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr3_iter(b'$', b'+', b'#', region).filter(move |&i| {
        let next = region.get(i + 1).copied();
        let plausible = match region[i] {
            b'$' => next == Some(b' '),
            b'+' => next == Some(b' ') || region[i..].starts_with(b"+++ "),
            _ => region[i..].starts_with(b"##[") || region[i..].starts_with(b"#!/"),
        };
        if !plausible {
            return false;
        }
        let start = memchr::memrchr2(b'\n', b'\r', &region[..i]).map_or(0, |k| k + 1);
        let end = memchr::memchr2(b'\n', b'\r', &region[i..]).map_or(region.len(), |k| i + k);
        let line = &region[start..end];
        std::ptr::eq(skip_escapes(body(line)).as_ptr(), region[i..].as_ptr())
    })
}

/// The keyword searcher; `None` if it cannot be built, and then every line is scored.
fn keywords() -> Option<&'static packed::Searcher> {
    static AC: OnceLock<Option<packed::Searcher>> = OnceLock::new();
    AC.get_or_init(|| packed::Searcher::new(KEYWORDS)).as_ref()
}

/// One line of the excerpt.
#[derive(Debug, Clone)]
pub struct Line {
    /// 1-based, in the log.
    pub number: usize,
    /// The line as it is in the log (without its line break), at most [`LINE_CAP`] bytes.
    pub raw: Vec<u8>,
    /// True when the line was longer than [`LINE_CAP`].
    pub cut: bool,
    score: i32,
    /// Names a failure (a keyword, not boilerplate; with baselines, also new), even when it
    /// scored nothing as evidence: `[WARNING] Error injecting: …` before an exception.
    mentions: bool,
}

impl Line {
    /// The line without ANSI escapes, as text.
    pub fn text(&self) -> String {
        clean(&self.raw)
    }

    /// Line `number`, kept at most [`LINE_CAP`] bytes long.
    fn new(number: usize, raw: &[u8], score: i32, mentions: bool) -> Line {
        Line { number, raw: raw[..raw.len().min(LINE_CAP)].to_vec(), cut: raw.len() > LINE_CAP, score, mentions }
    }

    /// True for a line that is evidence by itself (not context around one).
    pub fn is_evidence(&self) -> bool {
        self.score >= 3
    }
}

/// The last lines of `region` (which ends just after a line break), newest first: at most
/// `max`, and only while `take` accepts them.
fn last_lines(region: &[u8], max: usize, take: impl Fn(&[u8]) -> bool) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut end = region.len();
    while lines.len() < max && end > 0 {
        let mut stop = end - 1;
        if region[stop] == b'\n' && stop > 0 && region[stop - 1] == b'\r' {
            stop -= 1;
        }
        let start = memchr::memrchr2(b'\n', b'\r', &region[..stop]).map_or(0, |i| i + 1);
        if !take(&region[start..stop]) {
            break;
        }
        lines.push(&region[start..stop]);
        end = start;
    }
    lines
}

/// CI runners put a job name and a timestamp before each line (GitHub Actions:
/// `job\tstep\t2021-12-01T13:01:04.38Z `); the evidence is after it.
pub(crate) fn body(raw: &[u8]) -> &[u8] {
    prefixed(raw).1
}

/// The step column of a `gh run view --log` line (`job\tstep\ttimestamp text`), if it has one,
/// and the line after its prefixes.
pub(crate) fn prefixed(raw: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if let Some(t1) = memchr::memchr(b'\t', raw)
        && let Some(t2) = memchr::memchr(b'\t', &raw[t1 + 1..]).map(|i| t1 + 1 + i)
        && let Some(after) = after_timestamp(&raw[t2 + 1..])
    {
        return (Some(&raw[t1 + 1..t2]), after);
    }
    (None, after_timestamp(raw).unwrap_or(raw))
}

/// The line after a leading ISO timestamp (`2021-12-01T13:01:04.38Z `, Jenkins'
/// `[2021-12-01T13:01:04.380Z] `, GitLab's `2021-12-01T13:01:04.380Z 00O `), if it has one.
fn after_timestamp(line: &[u8]) -> Option<&[u8]> {
    let start = line.iter().position(|c| *c != b' ').unwrap_or(line.len());
    let mut trimmed = &line[start..];
    let bracket = trimmed.first() == Some(&b'[');
    if bracket {
        trimmed = &trimmed[1..];
    }
    let ts = trimmed
        .iter()
        .take_while(|c| c.is_ascii_digit() || matches!(c, b'-' | b':' | b'T' | b'.' | b'Z' | b'+'))
        .count();
    if ts < 19 || trimmed.get(4) != Some(&b'-') {
        return None;
    }
    let mut after = &trimmed[ts..];
    if bracket {
        after = after.strip_prefix(b"]")?;
    }
    // The one space after the timestamp separates it; more is the line's own indentation.
    after = after.strip_prefix(b" ").unwrap_or(after);
    // GitLab's stream and type: two hex digits, `O` or `E`, and `+` for a continued line.
    if after.len() >= 4
        && after[..2].iter().all(u8::is_ascii_hexdigit)
        && matches!(after[2], b'O' | b'E')
        && matches!(after[3], b' ' | b'+')
    {
        after = &after[4..];
        after = after.strip_prefix(b" ").unwrap_or(after);
    }
    Some(after)
}

/// Shapes are hashes already: the set uses them as they are.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ShapeSet = HashSet<u64, std::hash::BuildHasherDefault<Prehashed>>;

/// The shapes of the lines of passing runs of the same job.
#[derive(Default)]
pub struct Baseline {
    shapes: ShapeSet,
}

impl Baseline {
    pub fn add(&mut self, log: &[u8]) {
        for_each_line(log, |line| {
            self.shapes.insert(shape(body(line)));
        });
    }

    /// Reads a baseline log in chunks; memory grows with its distinct lines only.
    pub fn add_reader(&mut self, reader: impl Read) -> io::Result<()> {
        read_lines(reader, self)
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// Distinct line shapes held.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    fn contains(&self, shape: u64) -> bool {
        self.shapes.contains(&shape)
    }
}

impl Sink for Baseline {
    fn wants_every_line(&self) -> bool {
        true
    }

    fn wants_keywords(&self) -> bool {
        false
    }

    fn line(&mut self, raw: &[u8], _: bool, _: &[u8]) {
        self.shapes.insert(shape(body(raw)));
    }

    fn skipped(&mut self, gap: &[u8]) {
        for_each_line(gap, |l| self.line(l, false, &[]));
    }
}

/// Calls `f` for every line of `log`: `\n`, `\r\n` and a bare `\r` (progress output) end one.
fn for_each_line(log: &[u8], mut f: impl FnMut(&[u8])) {
    let mut start = 0;
    for i in memchr::memchr2_iter(b'\n', b'\r', log) {
        if i < start {
            continue; // the \n of a \r\n
        }
        f(&log[start..i]);
        start = if log[i] == b'\r' && log.get(i + 1) == Some(&b'\n') { i + 2 } else { i + 1 };
    }
    if start < log.len() {
        f(&log[start..]);
    }
}

/// What [`read_lines`] feeds.
trait Sink {
    /// Whether lines with no keyword matter now (with baselines, or inside a block); when not,
    /// runs of them are passed over in bulk.
    fn wants_every_line(&self) -> bool;
    /// Whether to look for keywords at all.
    fn wants_keywords(&self) -> bool {
        true
    }
    /// `before` holds the lines of the chunk before this one (what lies before a marker).
    fn line(&mut self, raw: &[u8], hit: bool, before: &[u8]);
    /// `gap` holds whole lines with no keyword, passed over.
    fn skipped(&mut self, gap: &[u8]);
    /// `region`'s lines were all fed or passed over.
    fn chunk_end(&mut self, _region: &[u8]) {}
}

/// Lines in `gap` (which ends with a line break): `\n`, `\r\n` and a bare `\r` count one each.
fn count_lines(gap: &[u8]) -> usize {
    // A plain byte count vectorises; carriage returns are rare enough for the slow path.
    if memchr::memchr(b'\r', gap).is_none() {
        return gap.iter().filter(|&&c| c == b'\n').count();
    }
    memchr::memchr2_iter(b'\n', b'\r', gap).filter(|&i| !(gap[i] == b'\r' && gap.get(i + 1) == Some(&b'\n'))).count()
}

/// Reads `reader` in chunks and feeds its lines to `sink`; a line longer than a chunk is passed
/// once, cut to its first chunk.
fn read_lines(mut reader: impl Read, sink: &mut impl Sink) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    // Inside an overlong line whose head was passed already: skip to its end.
    let mut skipping = false;
    let ac = if sink.wants_keywords() { keywords() } else { None };
    let any = |bytes: &[u8]| ac.is_none_or(|ac| ac.find(bytes).is_some());
    loop {
        // A chunk is filled whole before its lines are fed, so what the sink sees does not
        // depend on how the reader hands out its bytes.
        let mut eof = false;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Whole lines end at the last \n (else at the last \r of progress output, but not one
        // at the very end: it may be half a \r\n).
        let boundary =
            memchr::memrchr(b'\n', &buf[..filled]).or_else(|| memchr::memrchr(b'\r', &buf[..filled.saturating_sub(1)]));
        match boundary {
            Some(last) => {
                let mut region = &buf[..=last];
                if skipping {
                    let start = memchr::memchr2(b'\n', b'\r', region).map_or(region.len(), |i| {
                        if region[i] == b'\r' && region.get(i + 1) == Some(&b'\n') { i + 2 } else { i + 1 }
                    });
                    region = &region[start..];
                    skipping = false;
                }
                feed(region, ac, sink);
                sink.chunk_end(region);
                buf.copy_within(last + 1..filled, 0);
                filled -= last + 1;
            }
            None if filled == buf.len() => {
                if !skipping {
                    sink.line(&buf[..filled], any(&buf[..filled]), &[]);
                }
                skipping = true;
                filled = 0;
            }
            None => {}
        }
        if eof {
            if filled > 0 && !skipping {
                let line = &buf[..filled];
                sink.line(line.strip_suffix(b"\r").unwrap_or(line), any(line), &[]);
            }
            return Ok(());
        }
    }
}

/// Feeds the whole lines of `region` to `sink`, passing over runs without keywords when it
/// allows.
fn feed(region: &[u8], ac: Option<&packed::Searcher>, sink: &mut impl Sink) {
    // A keyword inside an identifier (`error_handler.c`, `on_failure`) is not one.
    let word = |m: &aho_corasick::Match| {
        m.start().checked_sub(1).is_none_or(|i| region[i] != b'_') && region.get(m.end()).is_none_or(|c| *c != b'_')
    };
    let mut found: Vec<usize> =
        ac.into_iter().flat_map(|ac| ac.find_iter(region)).filter(word).map(|m| m.start()).collect();
    let markers = found.len();
    if ac.is_some() {
        found.extend(marker_starts(region));
    }
    if found.len() > markers {
        found.sort_unstable();
    }
    let mut hits = found.into_iter().peekable();
    let mut pos = 0;
    while pos < region.len() {
        while hits.peek().is_some_and(|&h| h < pos) {
            hits.next();
        }
        if ac.is_some() && !sink.wants_every_line() {
            // Jump to the start of the line holding the next keyword.
            let target = hits.peek().copied().unwrap_or(region.len());
            let start = memchr::memrchr2(b'\n', b'\r', &region[pos..target]).map_or(pos, |i| pos + i + 1);
            if start > pos {
                sink.skipped(&region[pos..start]);
                pos = start;
            }
            if pos >= region.len() {
                break;
            }
        }
        let (end, next) = match memchr::memchr2(b'\n', b'\r', &region[pos..]) {
            Some(i) => {
                let end = pos + i;
                (end, if region[end] == b'\r' && region.get(end + 1) == Some(&b'\n') { end + 2 } else { end + 1 })
            }
            None => (region.len(), region.len()),
        };
        let hit = ac.is_none() || hits.peek().is_some_and(|&h| h < end);
        sink.line(&region[pos..end], hit, &region[..pos]);
        pos = next;
    }
}

/// Generic lines a build tool prints after any failure: they say that it failed, never why.
const EPILOGUE: &[&str] = &[
    "to see the full stack trace of the errors",
    "for more information about the errors and possible solutions",
    "re-run maven using the",
    "[help 1] http",
    "after correcting the problems, you can resume the build",
    "mvn <goals> -rf",
    "mvn <args> -rf",
    "run with --stacktrace option",
    "run with --info or --debug",
    "run with --scan to get full insights",
    "get more help at",
    "* try:",
    "build failed in",
    "failure: build failed with an exception",
    "process completed with exit code",
    "marked build as failure",
    "finished: failure",
    "a complete log of this run can be found in",
    "this is probably not a problem with npm",
    "npm err! a complete log",
    "error: process completed with exit code",
    "there were failing tests. see the report",
    "there were failing tests. see the results",
    "please refer to",
    "for the individual test results",
    "script returned exit code",
];

/// Phrases that are failure evidence (+3 each), lower case.
const STRONG: &[&str] = &[
    "error:",
    "error[",
    "error ",
    "fatal:",
    "fatal error",
    "failed",
    "failure",
    "fail ",
    "fail\t",
    "diff in ",
    "would reformat",
    "would be reformatted",
    "code style issues",
    "code style issues found",
    "exceeded the maximum",
    "error.",
    "##[error]",
    "assert ",
    "fail:",
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
    "no space left on device",
    "timed out",
    "no output has been received",
    "has been terminated",
    "terminated",
    "expected",
    "unexpected",
    "not found",
    "denied",
    "could not",
    "unable to",
    "cannot ",
    "✕",
    "✖",
    "✗",
    "✘",
    "●",
    "go: updates to go.mod needed",
    "missing go.sum entry",
    "is replaced but not required",
    "no required module provides package",
    "not declared by package",
    "undefined: ",
    "address already in use",
    "couldn't connect to server",
    "failed to connect to",
    "no default is configured",
    "is not installed",
];

/// Phrases of lines that only look like failures (-3 each): info, warnings, zero counts.
const NOISE: &[&str] = &[
    "[info]",
    "downloading",
    "downloaded",
    " 0 failed",
    "failures: 0",
    "errors: 0",
    "0 errors",
    "build success",
    "warning",
    "[warn",
    "debug",
    // Package managers' notices: deprecations and optional dependencies skipped.
    "npm warn",
    "skipping optional dependency",
    "deprecationwarning",
    "has been deprecated",
    "is deprecated",
];

/// Phrases that score nothing but say a closer look is worth it: a count of findings may
/// follow a number (`3 errors`), a diff may follow the line (`+ expected - actual`).
const COUNTED: &[&str] = &[" error", " fail", " problem", " offense", " violation"];
const DIFF_HEADS: &[&str] = &["diff in ", "+ expected", "- expected", "+ actual"];

/// What a phrase of the automaton is.
#[derive(PartialEq, Eq)]
enum Phrase {
    Strong,
    Noise,
    Counted,
    DiffHead,
    Epilogue,
}

fn phrase(k: usize) -> Phrase {
    let mut k = k;
    for (len, kind) in [
        (STRONG.len(), Phrase::Strong),
        (NOISE.len(), Phrase::Noise),
        (COUNTED.len(), Phrase::Counted),
        (DIFF_HEADS.len(), Phrase::DiffHead),
    ] {
        if k < len {
            return kind;
        }
        k -= len;
    }
    Phrase::Epilogue
}

/// One automaton for [`STRONG`], [`NOISE`], [`COUNTED`], [`DIFF_HEADS`] and [`EPILOGUE`], in
/// that order, over the lower-cased line: one pass instead of a search per phrase.
fn phrases() -> Option<&'static AhoCorasick> {
    static AC: OnceLock<Option<AhoCorasick>> = OnceLock::new();
    AC.get_or_init(|| {
        // A DFA: the automaton is small, and every scored line runs through it.
        AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(STRONG.iter().chain(NOISE).chain(COUNTED).chain(DIFF_HEADS).chain(EPILOGUE))
            .ok()
    })
    .as_ref()
}

/// What one line says of the failure.
#[derive(Default)]
struct Evidence {
    score: i32,
    /// A generic epilogue or a runner's note: no evidence whatever it says.
    boiler: bool,
    /// A diff follows.
    diff_head: bool,
    /// It counts findings (`8 offenses detected`).
    counts: bool,
    /// It holds a noise phrase (info, warnings, downloads, zero counts).
    noise: bool,
}

/// How strongly one line says "this is why it failed" (`lower` is its cleaned, lower-cased
/// body), whether it is a generic epilogue (no evidence whatever it says), whether it counts
/// findings and whether a diff follows it.
fn evidence(lower: &str) -> Evidence {
    let t = lower.trim();
    let boiler = Evidence { boiler: true, ..Evidence::default() };
    // Salve's runner notes (`salve: job failed: …`) say that a job failed, never why.
    if runner_note(t.as_bytes()) {
        return boiler;
    }
    if t.trim_start_matches("[error]").trim() == "-> [help 1]" {
        return boiler;
    }
    let Some(ac) = phrases() else { return Evidence::default() };
    let mut seen = 0u128;
    let mut ev = Evidence { diff_head: t.starts_with("diff --git"), ..Evidence::default() };
    let mut counted = false;
    for m in ac.find_overlapping_iter(t) {
        let k = m.pattern().as_usize();
        let kind = phrase(k);
        match kind {
            Phrase::Epilogue => return boiler,
            Phrase::Counted => counted |= counts_before(t, m.start()),
            Phrase::DiffHead => ev.diff_head = true,
            Phrase::Noise => ev.noise = true,
            Phrase::Strong => {}
        }
        // `0 warnings` warns of nothing.
        let zero = t[..m.start()].ends_with("0 ") && !t[..m.start()].ends_with("00 ");
        if k < 128 && seen & (1 << k) == 0 && !(zero && kind == Phrase::Noise) {
            seen |= 1 << k;
            ev.score += match kind {
                Phrase::Strong => 3,
                Phrase::Noise => -3,
                _ => 0,
            };
        }
    }
    let mut score = ev.score;
    if t.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '$' || c == '_'))
        .any(|w| w.len() > 9 && (w.ends_with("exception") || w.ends_with("error")) && w.contains('.'))
    {
        score += 4;
    }
    if t == "fail" {
        score += 3;
    }
    // A tool's count of what failed: `1 failing`, `8 offenses detected`, `✖ 4 problems (4
    // errors, 0 warnings)`.
    if counted {
        ev.counts = true;
        score += 3;
    }
    if t.starts_with("e ") || t.starts_with("> ") || t.starts_with("--> ") {
        score += 2;
    }
    if has_location(t) {
        score += 2;
    }
    if t.contains("exit code") || t.contains("exited with") || t.contains("returned non-zero") {
        score += 2;
    }
    ev.score = score.max(0);
    ev
}

/// A line of a step's end worth showing: not blank, not a separator, not CI bookkeeping, not
/// a generic epilogue (`Re-run Maven with -e`), not info or progress (`[INFO] Total time`).
fn says_something(body: &[u8]) -> bool {
    if blank(body) || rule(body) || marker(body).is_some() {
        return false;
    }
    let ev = evidence(lower_clean(body).trim());
    !ev.boiler && !ev.noise
}

/// Whether the word at `at` in `t` (` errors`, ` failing`: it starts with its space) is counted
/// by a number above zero just before it (`3 errors`, `(1 failing`), not a value after a
/// colon (`Failures: 1`) or a version (`v1.2 errors`).
fn counts_before(t: &str, at: usize) -> bool {
    let b = t.as_bytes();
    let digits = b[..at].iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let start = at - digits;
    digits > 0
        && b[start..at].iter().any(|c| *c != b'0')
        && start.checked_sub(1).is_none_or(|i| matches!(b[i], b' ' | b'(' | b'[' | b'\t'))
        && !b[..start].trim_ascii_end().ends_with(b":")
}

/// A line Salve's runner wrote into the job's log (`salve: …`), not the job.
fn runner_note(body: &[u8]) -> bool {
    body.starts_with(b"salve: ")
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

/// Lines of a list a count line may take from just before it.
const LISTING: usize = 40;

/// Lines of lead-in an anchor may take from just before it.
const LEAD: usize = 4;

/// A line that may lead into evidence below it: a heading, or a diagnostic with a location.
fn leads_in(body: &[u8]) -> bool {
    heading(body) || has_location(&String::from_utf8_lossy(body))
}

/// A line that introduces the next: `main.c: In function 'main':`, `=== RUN   TestParse`,
/// `[ERROR] COMPILATION ERROR :` (but not `[INFO] Results:`).
fn heading(body: &[u8]) -> bool {
    let t = body.trim_ascii();
    (t.ends_with(b":") && t.len() > 1 && (!t.starts_with(b"[") || error_tag(body)))
        || t.starts_with(b"=== RUN")
        || titled_rule(t)
}

/// A title between rules: `---- tests::adds stdout ----`, `____ test_mean ____`,
/// `==== FAILURES ====`.
fn titled_rule(t: &[u8]) -> bool {
    let marks = |b: &[u8]| b.iter().take_while(|c| matches!(c, b'-' | b'=' | b'_' | b'*')).count();
    let lead = marks(t);
    let trail = t.iter().rev().take_while(|c| matches!(c, b'-' | b'=' | b'_' | b'*')).count();
    lead >= 3 && trail >= 3 && lead + trail < t.len() && t[lead..t.len() - trail].iter().any(u8::is_ascii_alphabetic)
}

/// A leading level tag that says error: `[ERROR]`, `[FATAL]`, `[SEVERE]` (with or without colour).
fn error_tag(body: &[u8]) -> bool {
    says_error(&body[..level_tag(body)])
}

/// Whether a level tag's letters (escapes skipped) are an error level's.
fn says_error(tag: &[u8]) -> bool {
    let mut letters = [0u8; 8];
    let mut n = 0;
    let mut i = 0;
    while i < tag.len() {
        if let Some(k) = escape_len(tag, i) {
            i += k;
            continue;
        }
        if tag[i].is_ascii_alphabetic() {
            if n == letters.len() {
                return false;
            }
            letters[n] = tag[i].to_ascii_uppercase();
            n += 1;
        }
        i += 1;
    }
    matches!(&letters[..n], b"ERROR" | b"FATAL" | b"SEVERE" | b"ERR")
}

/// A tool's count of what it found: `1 error`, `2 errors generated.`, `3 failures`.
fn count_line(t: &[u8]) -> bool {
    let digits = t.iter().take_while(|c| c.is_ascii_digit()).count();
    let rest = &t[digits..];
    digits > 0
        && [&b" error"[..], b" warning", b" failure", b" failed", b" failing", b" problem", b" offense"]
            .iter()
            .any(|w| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w))
}

/// A separator: `-----`, `[INFO] ------`, `=====`.
fn rule(body: &[u8]) -> bool {
    let mut marks = 0;
    let mut i = level_tag(body);
    while i < body.len() {
        if let Some(n) = escape_len(body, i) {
            i += n;
            continue;
        }
        match body[i] {
            b'-' | b'=' | b'*' | b'_' | b'~' | b'#' => marks += 1,
            c if c.is_ascii_whitespace() => {}
            _ => return false,
        }
        i += 1;
    }
    marks >= 3
}

/// Nothing but white space and escapes, or a log level tag alone (`[ERROR] `).
fn blank(body: &[u8]) -> bool {
    let mut i = 0;
    let mut in_tag = false;
    let mut tags = 0;
    while i < body.len() {
        if let Some(n) = escape_len(body, i) {
            i += n;
            continue;
        }
        match body[i] {
            b'[' if !in_tag && tags == 0 => in_tag = true,
            b']' if in_tag => {
                in_tag = false;
                tags += 1;
            }
            c if !in_tag && !c.is_ascii_whitespace() => return false,
            _ => {}
        }
        i += 1;
    }
    !in_tag
}

/// A line that continues the one before: indented, a stack frame, a caret line, pytest's
/// `E ` and `> ` lines, another line tagged as an error, a count of errors.
fn continues(body: &[u8]) -> bool {
    let body = skip_escapes(body);
    let (tag, body) = body.split_at(level_tag(body));
    let tagged_error = says_error(tag);
    let t = body.trim_ascii_start();
    if t.is_empty() {
        return false;
    }
    tagged_error
        || count_line(t)
        || body[0] == b' '
        || body[0] == b'\t'
        || t.starts_with(b"at ")
        || t.starts_with(b"Caused by")
        || t.starts_with(b"... ")
        || t.starts_with(b"|")
        || t.starts_with(b"^")
        || t.starts_with(b"E ")
        || t.starts_with(b"> ")
        || gutter(t)
}

/// A line of a diff's body (`-old`, `+new`, ` context`), which continues a block that a diff
/// header (`Diff in …`, `diff --git`, `@@`) opened.
fn diff_line(body: &[u8]) -> bool {
    matches!(skip_escapes(body).first(), Some(b'+' | b'-' | b' ' | b'@'))
}

/// A source line quoted in a diagnostic: `42 |     count`.
fn gutter(t: &[u8]) -> bool {
    let digits = t.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && t[digits..].starts_with(b" |")
}

#[derive(Debug, Clone, Default)]
struct Block {
    lines: Vec<Line>,
    score: i32,
    /// A diff header opened it: `+`/`-` lines continue it.
    diff: bool,
}

impl Block {
    fn first(&self) -> usize {
        self.lines.first().map_or(0, |l| l.number)
    }

    fn last(&self) -> usize {
        self.lines.last().map_or(0, |l| l.number)
    }

    /// The score the choice goes by. Past [`FULL_LINES`], a line adds a quarter of its share (a
    /// long run of similar diagnostics is not that much more telling than its start), and a
    /// block weighs up to twice as much the nearer it is to the end of a log of `total` lines
    /// (a job stops at its first failing command, so the cause tends to be late).
    fn weighed(&self, total: usize) -> i32 {
        let n = self.lines.len() as i64;
        let mut score = i64::from(self.score);
        if n > FULL_LINES {
            score = score * (FULL_LINES + (n - FULL_LINES) / 4) / n;
        }
        score = score * (100 + 100 * self.last() as i64 / total.max(1) as i64) / 100;
        i32::try_from(score).unwrap_or(i32::MAX)
    }
}

/// What one pass over a log found.
#[derive(Debug, Clone)]
pub struct Excerpt {
    /// The chosen lines, in log order.
    pub lines: Vec<Line>,
    /// Their size with one line break each (what the budget counts).
    pub bytes: usize,
    /// False when no line was evidence: the lines are then the log's last ones.
    pub evidence: bool,
    /// Lines in the log.
    pub total_lines: usize,
    /// The first command that failed, when the log's commands are known.
    pub failing_command: Option<String>,
}

/// Reads a log once and picks its excerpt.
pub struct Scanner<'a> {
    baseline: &'a Baseline,
    /// The log's commands and what each was to the job: the runner's records, or at the end the
    /// steps recovered from the log.
    roles: Vec<(CommandSpan, Role)>,
    number: usize,
    ring: VecDeque<Line>,
    /// The last lines of the last chunk read.
    tail: Vec<Line>,
    open: Option<Block>,
    /// A blank line inside the open block, kept until the next line says whether it goes on.
    bridge: Option<Line>,
    /// The block closed last and the lines after it (at most [`GAP`]): evidence again that
    /// soon continues it.
    pending: Option<(Block, Vec<Line>)>,
    blocks: Vec<Block>,
    seen: HashMap<u64, u32, std::hash::BuildHasherDefault<Prehashed>>,
    threshold: i32,
    /// Steps recovered from the log's own markers, when the runner's records are not given.
    tracker: Option<Tracker>,
    /// The line of the last step that started (blocks never join across it).
    last_start: usize,
    /// The end of the first step that failed by its exit code, and of the last few steps that
    /// may have failed (their ends unknown): the failing step's own last lines.
    failed_tail: Option<(usize, Vec<Line>)>,
    recent_tails: VecDeque<(usize, Vec<Line>)>,
}

/// Lines of the failing step's end kept, and put in the excerpt when it has evidence or not.
const STEP_TAIL: usize = 24;
const TAIL_WITH_EVIDENCE: usize = 12;
const TAIL_WITHOUT_EVIDENCE: usize = 20;

/// How much a block counts by the step that printed it, as a fraction. With baselines the
/// failing step weighs less: what passing runs also print is discounted already.
fn role_weight(role: Option<Role>, any_steps: bool, with_baseline: bool) -> (i32, i32) {
    match role {
        Some(Role::Failed) if with_baseline => (3, 2),
        Some(Role::Failed) => (2, 1),
        Some(Role::FailedLater) => (1, 2),
        Some(Role::Passed | Role::Post) => (1, 3),
        Some(Role::Earlier) => (1, 2),
        // Outside every step: the runner's own preamble.
        None if any_steps => (1, 2),
        None => (1, 1),
    }
}

/// The role of the span holding lines `first..=last` (1-based).
fn role_of(spans: &[(CommandSpan, Role)], first: usize, last: usize) -> Option<(&CommandSpan, Role)> {
    spans
        .iter()
        .find(|(c, _)| (first as u64) > c.first_line && (last as u64) <= c.end_line.max(c.first_line + 1))
        .map(|(c, r)| (c, *r))
}

/// The runner's records with their roles: a command that did not exit 0 failed.
fn given_roles(commands: &[CommandSpan]) -> Vec<(CommandSpan, Role)> {
    commands.iter().map(|c| (c.clone(), if c.exit_code == Some(0) { Role::Passed } else { Role::Failed })).collect()
}

impl<'a> Scanner<'a> {
    pub fn new(baseline: &'a Baseline, commands: &'a [CommandSpan]) -> Scanner<'a> {
        Scanner {
            baseline,
            roles: given_roles(commands),
            tracker: commands.is_empty().then(Tracker::default),
            last_start: 0,
            failed_tail: None,
            recent_tails: VecDeque::new(),
            number: 0,
            ring: VecDeque::with_capacity(RING + 1),
            tail: Vec::new(),
            open: None,
            bridge: None,
            pending: None,
            blocks: Vec::new(),
            seen: HashMap::default(),
            threshold: if baseline.is_empty() { 3 } else { 4 },
        }
    }

    fn line(&mut self, raw: &[u8], hit: bool, before: &[u8]) {
        self.number += 1;
        let with_baseline = !self.baseline.is_empty();
        let (column, b) = prefixed(raw);
        let mut bookkeeping = false;
        if let Some(tracker) = &mut self.tracker {
            let (marker, closed) = tracker.line(self.number, b, column);
            if let Some(first) = closed
                && let Some(explicit) = tracker.may_have_failed(first)
            {
                self.snapshot(first, explicit, before);
            }
            if let Some(m) = marker {
                bookkeeping = true;
                if matches!(m, Marker::Start(_) | Marker::Post(_)) {
                    self.last_start = self.number;
                }
            } else if closed.is_some() {
                self.last_start = self.number;
            }
        }
        let hit = hit && !bookkeeping;
        let empty_line = blank(b) || bookkeeping;
        // Shapes cost a pass over the line: only with baselines, or for evidence lines.
        // Novelty matters for evidence and for lines that may extend a block, not elsewhere.
        let shape_of = if with_baseline && (hit || self.open.is_some()) { Some(shape(b)) } else { None };
        let novel = with_baseline && !empty_line && shape_of.is_some_and(|s| !self.baseline.contains(s));
        let mut score = 0;
        let mut boiler = false;
        let mut diff_head = false;
        let mut counts = false;
        // Evidence before repeats are discounted: a repeated error still continues a block.
        let mut strong = false;
        if hit {
            let lower = lower_clean(b);
            let ev = evidence(&lower);
            (score, boiler, counts) = (ev.score, ev.boiler, ev.counts);
            // A diff follows: rustfmt's, git's, or an assertion's (`+ expected - actual`).
            diff_head = ev.diff_head;
            if with_baseline && score > 0 {
                score = if novel { score + 2 } else { score / 4 };
            }
            strong = score >= self.threshold;
            if score > 0 {
                let s = shape_of.unwrap_or_else(|| shape(b));
                let n = self.seen.len();
                match self.seen.get_mut(&s) {
                    Some(count) => {
                        *count += 1;
                        score /= 2;
                    }
                    None if n < MAX_SEEN => {
                        self.seen.insert(s, 1);
                    }
                    None => {}
                }
            }
        } else if novel {
            score = 1;
        }
        let anchor = score >= self.threshold;
        let boiler = boiler || bookkeeping;
        let mentions = hit && !boiler && !empty_line && (novel || !with_baseline);
        let in_diff = self.open.as_ref().is_some_and(|o| o.diff) && diff_line(b);
        let extends = !empty_line && !boiler && (strong || continues(b) || in_diff || (novel && score > 0));
        match &mut self.open {
            // One blank line inside a block (between a trace and its "Caused by:") is held; a
            // second one, or a line that does not continue the block, ends it.
            Some(_) if empty_line && !boiler && self.bridge.is_none() => {
                self.bridge = Some(Line::new(self.number, raw, 0, false));
            }
            Some(block) if extends && block.lines.len() < MAX_BLOCK_LINES => {
                block.lines.extend(self.bridge.take());
                block.diff |= diff_head;
                block.score += score.max(1);
                block.lines.push(Line::new(self.number, raw, score, mentions));
            }
            _ => {
                self.close();
                if anchor {
                    let block = match self.resume() {
                        Some(block) => block,
                        // A count of findings sums up the list above it (`8 offenses detected`
                        // under rubocop's offenses, `Found 3 errors.` under ruff's).
                        None if counts => self.listing(before),
                        None => self.lead_in(),
                    };
                    let block = self.open.insert(block);
                    block.score += score;
                    block.diff |= diff_head;
                    block.lines.push(Line::new(self.number, raw, score, mentions));
                } else if let Some((_, gap)) = &mut self.pending {
                    if gap.len() < GAP {
                        gap.push(Line::new(self.number, raw, score, mentions));
                    } else {
                        self.flush();
                    }
                }
            }
        }
        self.remember(self.number, raw, score, mentions);
    }

    /// A new block and its lead-in: the lines just before that say something (a test's name, a
    /// heading, diagnostics with a location), not already in a block.
    fn lead_in(&self) -> Block {
        let mut block = Block::default();
        let taken = self.blocks.last().map_or(0, Block::last);
        let mut expect = self.number;
        let mut lead: Vec<&Line> = Vec::new();
        // One blank line may lie between a heading and the anchor (`---- x stdout ----`).
        let mut gap: Option<&Line> = None;
        for prev in self.ring.iter().rev() {
            if lead.len() == LEAD || prev.number + 1 != expect || prev.number <= taken {
                break;
            }
            let b = body(&prev.raw);
            if blank(b) {
                if gap.is_some() {
                    break;
                }
                gap = Some(prev);
                expect = prev.number;
                continue;
            }
            if !(prev.score > 0 || prev.mentions || leads_in(b) || rule(b)) {
                break;
            }
            if let Some(g) = gap.take() {
                if !heading(b) {
                    break;
                }
                lead.push(g);
            }
            lead.push(prev);
            expect = prev.number;
        }
        // A separator leads in only between a heading and the anchor.
        while lead.last().is_some_and(|l| rule(body(&l.raw))) {
            lead.pop();
        }
        for prev in lead.into_iter().rev() {
            block.score += prev.score;
            block.lines.push(prev.clone());
        }
        block
    }

    /// A new block holding the list a count line sums up: the lines just before it in this
    /// chunk (`before`), back to a double blank line, the step's start, a block already taken
    /// or [`LISTING`] lines.
    fn listing(&self, before: &[u8]) -> Block {
        let taken = self.blocks.last().map_or(0, Block::last).max(self.last_start);
        let mut lines: Vec<Line> = Vec::new();
        let mut blanks = 0;
        for (k, l) in last_lines(before, LISTING, |_| true).into_iter().enumerate() {
            let number = self.number - 1 - k;
            let b = body(l);
            if number <= taken || marker(b).is_some() {
                break;
            }
            blanks = if blank(b) { blanks + 1 } else { 0 };
            if blanks == 2 {
                break;
            }
            lines.push(Line::new(number, l, 0, false));
        }
        while lines.last().is_some_and(|l| blank(body(&l.raw))) {
            lines.pop();
        }
        lines.reverse();
        Block { lines, ..Block::default() }
    }

    /// The pending block again, with the lines since, when evidence follows it soon enough.
    fn resume(&mut self) -> Option<Block> {
        let (mut block, gap) = self.pending.take()?;
        // Two commands' output is never one block.
        let same_command = self.last_start <= block.last()
            && (self.roles.is_empty()
                || role_of(&self.roles, block.first(), block.last()).map(|(c, _)| c.first_line)
                    == role_of(&self.roles, self.number, self.number).map(|(c, _)| c.first_line));
        if same_command && block.lines.len() + gap.len() < MAX_BLOCK_LINES {
            block.lines.extend(gap);
            Some(block)
        } else {
            self.keep(block);
            None
        }
    }

    /// The last lines of a chunk: how the log ends, should it show no evidence.
    fn chunk_end(&mut self, region: &[u8]) {
        let lines = last_lines(region, STEP_TAIL, |_| true);
        self.tail = lines.iter().enumerate().rev().map(|(k, l)| Line::new(self.number - k, l, 0, false)).collect();
    }

    /// Keeps the line in the ring of recent lines, reusing its buffers: one copy, no allocation.
    fn remember(&mut self, number: usize, raw: &[u8], score: i32, mentions: bool) {
        let mut slot = if self.ring.len() == RING { self.ring.pop_front().unwrap_or_else(empty) } else { empty() };
        slot.raw.clear();
        slot.raw.extend_from_slice(&raw[..raw.len().min(LINE_CAP)]);
        slot.number = number;
        slot.cut = raw.len() > LINE_CAP;
        slot.score = score;
        slot.mentions = mentions;
        self.ring.push_back(slot);
    }

    /// Ends the open block; it waits as the pending one.
    fn close(&mut self) {
        let bridge = self.bridge.take();
        let Some(block) = self.open.take() else { return };
        self.flush();
        self.pending = Some((block, bridge.into_iter().collect()));
    }

    /// Keeps the pending block among the candidates.
    fn flush(&mut self) {
        if let Some((block, _)) = self.pending.take() {
            self.keep(block);
        }
    }

    /// Keeps `block` among the candidates.
    fn keep(&mut self, block: Block) {
        if self.blocks.len() >= 2 * KEEP_BLOCKS {
            let roles = &self.roles;
            let with_baseline = !self.baseline.is_empty();
            let w = |b: &Block| {
                let (n, d) =
                    role_weight(role_of(roles, b.first(), b.last()).map(|(_, r)| r), !roles.is_empty(), with_baseline);
                b.score * n / d
            };
            self.blocks.sort_by(|a, b| w(b).cmp(&w(a)).then(a.first().cmp(&b.first())));
            self.blocks.truncate(KEEP_BLOCKS);
            self.blocks.sort_by_key(Block::first);
        }
        // After the cut: the newest block is kept, whatever its score.
        self.blocks.push(block);
    }

    /// Keeps the last lines of the step that started at line `first` and ended just before this
    /// line (`before` holds the lines of this chunk before it).
    fn snapshot(&mut self, first: usize, explicit: bool, before: &[u8]) {
        if explicit && self.failed_tail.is_some() {
            return;
        }
        let mut lines: Vec<Line> = Vec::new();
        for (k, l) in last_lines(before, STEP_TAIL, |_| true).into_iter().enumerate() {
            let number = self.number - 1 - k;
            let b = body(l);
            // GitHub's group before a step's output holds its shell and environment.
            if number <= first || skip_escapes(b).starts_with(b"##[endgroup]") {
                break;
            }
            if self.tail_worthy(b) {
                lines.push(Line::new(number, l, 0, false));
            }
        }
        lines.reverse();
        if explicit {
            self.failed_tail = Some((first, lines));
        } else {
            if self.recent_tails.len() == 2 {
                self.recent_tails.pop_front();
            }
            self.recent_tails.push_back((first, lines));
        }
    }

    /// A line of a step's end worth showing, and not one a passing run printed too.
    fn tail_worthy(&self, b: &[u8]) -> bool {
        says_something(b) && !self.baseline.contains(shape(b))
    }

    /// The last lines of the failing step (`span`), as far as they were kept; of the whole log
    /// when it has no steps.
    fn step_tail(&self, span: Option<&CommandSpan>) -> Vec<Line> {
        let (first, end) = match span {
            Some(span) => (span.first_line as usize + 1, span.end_line as usize),
            None if self.roles.is_empty() => (0, self.number),
            None => return Vec::new(),
        };
        let kept = self.failed_tail.iter().chain(&self.recent_tails).find(|(f, _)| *f == first);
        if let Some((_, lines)) = kept {
            return lines.clone();
        }
        if end >= self.number {
            // Still open when the log ended: the log's own last lines.
            let mut recent: Vec<&Line> = self.ring.iter().chain(&self.tail).filter(|l| l.number > first).collect();
            recent.sort_by_key(|l| l.number);
            recent.dedup_by_key(|l| l.number);
            return recent.into_iter().filter(|l| self.tail_worthy(body(&l.raw))).cloned().collect();
        }
        Vec::new()
    }

    /// Chooses the excerpt: the best block, then others scoring at least half of it and the
    /// log's last block, while they fit in `max_bytes`, then the end of the failing step.
    pub fn finish(mut self, max_bytes: usize) -> Excerpt {
        self.close();
        self.flush();
        if let Some(mut tracker) = self.tracker.take() {
            self.roles = tracker.finish(self.number);
        }
        let failing = self.roles.iter().find(|(_, r)| *r == Role::Failed).map(|(c, _)| c.clone());
        let failing_command = failing.as_ref().map(|c| c.command.clone());
        let any_steps = !self.roles.is_empty();
        let with_baseline = !self.baseline.is_empty();
        let total_lines = self.number;
        let cost = |l: &Line| l.raw.len() + 1;
        let mut blocks = std::mem::take(&mut self.blocks);
        for b in &mut blocks {
            let (n, d) =
                role_weight(role_of(&self.roles, b.first(), b.last()).map(|(_, r)| r), any_steps, with_baseline);
            b.score = b.weighed(total_lines) * n / d;
        }
        blocks.sort_by(|a, b| b.score.cmp(&a.score).then(a.first().cmp(&b.first())));
        let inside_failing = |b: &Block| {
            failing.as_ref().is_none_or(|c| {
                role_of(&self.roles, b.first(), b.last()).is_some_and(|(s, _)| s.first_line == c.first_line)
            })
        };
        let tail = self.step_tail(failing.as_ref());
        // The failing step said nothing that reads as evidence, but it said something: that is
        // the answer, not louder lines of the steps around it (a package manager's warnings
        // before, an artifact upload's errors after).
        if !tail.is_empty() && !blocks.iter().any(inside_failing) {
            blocks.clear();
        }
        let best = blocks.first().map_or(0, |b| b.score);
        // The log's last block of evidence is how the tool summed the failure up; when the
        // steps are known, the failing step's last block.
        let last = blocks.iter().filter(|b| inside_failing(b)).map(Block::first).max().unwrap_or(0);
        let mut chosen: Vec<Line> = Vec::new();
        let mut bytes = 0;
        for block in blocks {
            if block.score * 2 < best && block.first() != last {
                continue;
            }
            let size: usize = block.lines.iter().map(cost).sum();
            if bytes + size > max_bytes {
                if chosen.is_empty() {
                    // The head of a block bigger than the budget.
                    for l in block.lines {
                        if bytes + cost(&l) > max_bytes {
                            break;
                        }
                        bytes += cost(&l);
                        chosen.push(l);
                    }
                }
                continue;
            }
            bytes += size;
            chosen.extend(block.lines);
        }
        let evidence = !chosen.is_empty();
        // The failing step's own end: how its tool summed up, and the whole answer when nothing
        // in it is evidence (lint output of `path:line message` lines, a silent exit).
        let taken: HashSet<usize> = chosen.iter().map(|l| l.number).collect();
        // With baselines the evidence is sharper: less of the end is needed.
        let want = match (evidence, self.baseline.is_empty()) {
            (false, _) => TAIL_WITHOUT_EVIDENCE,
            (true, true) => TAIL_WITH_EVIDENCE,
            (true, false) => 0,
        };
        for l in tail.iter().rev().take(want) {
            if taken.contains(&l.number) {
                continue;
            }
            if bytes + cost(l) > max_bytes {
                break;
            }
            bytes += cost(l);
            chosen.push(l.clone());
        }
        if chosen.is_empty() {
            // No evidence: how the log ends is the best guess.
            let mut recent: Vec<&Line> = self.ring.iter().chain(&self.tail).collect();
            recent.sort_by_key(|l| l.number);
            recent.dedup_by_key(|l| l.number);
            // The end of the failing command's own output when the commands are known; when it
            // printed nothing, the runner's note that names it; else the log's last lines.
            let inside = |l: &Line| {
                failing.as_ref().is_none_or(|c| (l.number as u64) > c.first_line && (l.number as u64) <= c.end_line)
            };
            let said = |l: &Line| !blank(body(&l.raw)) && !runner_note(body(&l.raw)) && inside(l);
            let mut last: Vec<&Line> = recent.iter().rev().filter(|l| said(l)).take(3).copied().collect();
            if last.is_empty() {
                last = recent.iter().rev().filter(|l| runner_note(body(&l.raw))).take(1).copied().collect();
            }
            if last.is_empty() {
                last = recent.iter().rev().filter(|l| !blank(body(&l.raw))).take(3).copied().collect();
            }
            for l in last {
                if bytes + cost(l) > max_bytes {
                    break;
                }
                bytes += cost(l);
                chosen.push(l.clone());
            }
        }
        chosen.sort_by_key(|l| l.number);
        chosen.dedup_by_key(|l| l.number);
        Excerpt { lines: chosen, bytes, evidence, total_lines, failing_command }
    }
}

impl Sink for Scanner<'_> {
    fn wants_every_line(&self) -> bool {
        self.open.is_some() || self.pending.is_some()
    }

    fn line(&mut self, raw: &[u8], hit: bool, before: &[u8]) {
        Scanner::line(self, raw, hit, before);
    }

    fn skipped(&mut self, gap: &[u8]) {
        if let Some(t) = &mut self.tracker
            && t.wants_name(self.number + 1)
        {
            let end = memchr::memchr2(b'\n', b'\r', gap).unwrap_or(gap.len());
            t.name_step(body(&gap[..end]));
        }
        self.number += count_lines(gap);
        // The gap's last lines may lead into the keyword line that follows: a heading, or
        // diagnostics with a location (`src/app.py:3:8: F401 …` before `Found 1 error.`).
        let leads = last_lines(gap, LEAD, |l| {
            let b = body(l);
            leads_in(b) || rule(b) || blank(b)
        });
        for (k, l) in leads.iter().enumerate().rev() {
            self.remember(self.number - k, l, 0, false);
        }
    }

    fn chunk_end(&mut self, region: &[u8]) {
        Scanner::chunk_end(self, region);
    }
}

fn empty() -> Line {
    Line { number: 0, raw: Vec::new(), cut: false, score: 0, mentions: false }
}

/// The excerpt of a log held in memory. A Semaphore event log is read as its text.
pub fn extract(log: &[u8], baseline: &Baseline, commands: &[CommandSpan], max_bytes: usize) -> Excerpt {
    let mut s = Scanner::new(baseline, commands);
    // Reading from a slice never fails.
    let _ = if semaphore::is_events(log) {
        read_lines(semaphore::Events::new(log), &mut s)
    } else {
        read_lines(log, &mut s)
    };
    s.finish(max_bytes)
}

/// The excerpt of a log read in chunks: memory stays bounded whatever its size. A Semaphore
/// event log is read as its text.
pub fn extract_reader(
    reader: impl Read,
    baseline: &Baseline,
    commands: &[CommandSpan],
    max_bytes: usize,
) -> io::Result<Excerpt> {
    let mut s = Scanner::new(baseline, commands);
    let mut reader = io::BufReader::with_capacity(64 << 10, reader);
    if semaphore::is_events(reader.fill_buf()?) {
        read_lines(semaphore::Events::new(reader), &mut s)?;
    } else {
        read_lines(reader, &mut s)?;
    }
    Ok(s.finish(max_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(log: &[u8]) -> Vec<Vec<u8>> {
        struct Collect(Vec<Vec<u8>>);
        impl Sink for Collect {
            fn wants_every_line(&self) -> bool {
                true
            }
            fn line(&mut self, raw: &[u8], _: bool, _: &[u8]) {
                self.0.push(raw.to_vec());
            }
            fn skipped(&mut self, _: &[u8]) {}
        }
        let mut c = Collect(Vec::new());
        assert!(read_lines(log, &mut c).is_ok());
        c.0
    }

    /// The keyword searcher must build (at most 64 stems, Teddy available), or every line of
    /// every log is scored and the pass slows down several times.
    #[test]
    fn the_keyword_searcher_builds() {
        assert!(KEYWORDS.len() <= 64, "{} stems", KEYWORDS.len());
        // A short stem makes the searcher check far more candidates.
        assert!(KEYWORDS.iter().all(|k| k.len() >= 3), "{KEYWORDS:?}");
        assert!(keywords().is_some());
    }

    #[test]
    fn shapes_mask_numbers_hashes_and_case() {
        assert_eq!(
            shape(b"Took 12.5s at 2021-12-01T13:01:04Z commit 3f2a9c1d"),
            shape(b"took 3.25s at 2022-01-05T00:00:00Z commit 99aa00bb")
        );
        assert_ne!(shape(b"test a failed"), shape(b"test b failed"));
        assert_eq!(shape(b"\x1b[31merror\x1b[0m  here"), shape(b"error here"));
    }

    #[test]
    fn strips_runner_prefixes() {
        assert_eq!(body(b"build\tstep\t2021-12-01T13:01:04.3811085Z     java.lang.X"), b"    java.lang.X");
        assert_eq!(body(b"2021-12-01T13:01:04Z error: x"), b"error: x");
        assert_eq!(body(b"plain line"), b"plain line");
        assert_eq!(body(b"FAIL\texample.com/b\t0.02s"), b"FAIL\texample.com/b\t0.02s");
    }

    #[test]
    fn splits_crlf_and_carriage_returns() {
        assert_eq!(lines(b"a\r\nb\rc\nd"), [&b"a"[..], b"b", b"c", b"d"]);
        assert_eq!(lines(b"a\r\n\r\nb\r\n"), [&b"a"[..], b"", b"b"]);
    }

    #[test]
    fn blank_lines_and_bare_level_tags() {
        assert!(blank(b"  \t"));
        assert!(blank(b"[ERROR] "));
        assert!(blank(b"[[1;31mERROR[m] "));
        assert!(!blank(b"[ERROR] x"));
        assert!(!blank(b"[unclosed"));
        assert!(!blank(b"x"));
    }

    #[test]
    fn cleans_escapes_with_and_without_esc() {
        assert_eq!(clean(b"\x1b[1;31mERROR\x1b[m] x"), "ERROR] x");
        assert_eq!(clean(b"[[1;31mERROR[m] x"), "[ERROR] x");
        assert_eq!(clean(b"a[1] b"), "a[1] b");
        assert_eq!(clean(b"\x1b[31m-x\x1b(B\x1b[m"), "-x");
        assert!(diff_line(b"\x1b[31m-pub fn add"));
        assert!(continues(b"\x1b[2m    at x.java:3"));
    }
}
