//! The failure report of one job: its class, the failing command, the excerpt (line numbers and
//! cleaned text), a fingerprint and the failing tests. `salve triage --format json` prints it;
//! the server serves it per job.

use std::io::{self, Read};

use crate::classify::{self, Class};
use crate::excerpt::{self, Baseline, CommandSpan, Excerpt};
use crate::junit::{self, Suite};

pub use salve_contract::api::{ExcerptLine, FailingTest, FailureReport as Report};

/// What the report needs besides the log.
#[derive(Default)]
pub struct Inputs<'a> {
    pub baseline: Option<&'a Baseline>,
    pub suites: &'a [Suite],
    pub commands: &'a [CommandSpan],
    /// What the runner knows of the failure: `timeout`, `out_of_memory`, `killed`, `malformed`.
    pub hint: Option<&'a str>,
}

/// The report of a log read in chunks (memory stays bounded).
pub fn report_reader(log: impl Read, inputs: &Inputs<'_>, max_bytes: usize) -> io::Result<Report> {
    let empty = Baseline::default();
    let ex = excerpt::extract_reader(log, inputs.baseline.unwrap_or(&empty), inputs.commands, max_bytes)?;
    Ok(from_excerpt(&ex, inputs))
}

/// The report of a log held in memory.
pub fn report(log: &[u8], inputs: &Inputs<'_>, max_bytes: usize) -> Report {
    let empty = Baseline::default();
    from_excerpt(&excerpt::extract(log, inputs.baseline.unwrap_or(&empty), inputs.commands, max_bytes), inputs)
}

/// The report of an excerpt already taken.
pub fn from_excerpt(ex: &Excerpt, inputs: &Inputs<'_>) -> Report {
    let failing_tests: Vec<FailingTest> = junit::failing(inputs.suites)
        .map(|(s, t)| {
            let f = t.failure.as_ref().or(t.error.as_ref());
            FailingTest {
                suite: s.name.clone(),
                file: t.file.clone(),
                classname: t.classname.clone(),
                name: t.name.clone(),
                message: f.map(|f| f.message.clone()),
                body: f.map(|f| f.body.clone()),
            }
        })
        .collect();
    let (mut class, class_lines) =
        classify::classify(if ex.evidence { &ex.lines } else { &[] }, inputs.hint, ex.failing_command.as_deref());
    if class == Class::Unknown && !failing_tests.is_empty() {
        class = Class::TestFailure;
    }
    Report {
        class,
        class_lines,
        fingerprint: classify::fingerprint(class, &ex.lines),
        failing_command: ex.failing_command.clone(),
        evidence: ex.evidence,
        excerpt: ex.lines.iter().map(|l| ExcerptLine { line: l.number, text: l.text() }).collect(),
        bytes: ex.bytes,
        total_lines: ex.total_lines,
        failing_tests,
    }
}
