//! The failure report of one job: the excerpt (line numbers and cleaned text) and the failing
//! tests. `salve triage --format json` prints it; the server serves it per job.

use serde::Serialize;

use crate::excerpt::{self, Baseline};
use crate::junit::{self, Suite};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub excerpt: Vec<ExcerptLine>,
    /// The excerpt's size in bytes (what the budget counts).
    pub bytes: usize,
    pub failing_tests: Vec<FailingTest>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExcerptLine {
    /// 1-based, in the log.
    pub line: usize,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailingTest {
    pub suite: String,
    pub file: String,
    pub classname: String,
    pub name: String,
    pub message: Option<String>,
    pub body: Option<String>,
}

pub fn report(log: &[u8], baseline: &Baseline, suites: &[Suite], max_bytes: usize) -> Report {
    let all = excerpt::lines(log);
    let ex = excerpt::extract(&all, baseline, max_bytes);
    Report {
        excerpt: ex.lines.iter().map(|&n| ExcerptLine { line: n, text: excerpt::clean(all[n - 1].raw) }).collect(),
        bytes: ex.bytes,
        failing_tests: junit::failing(suites)
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
            .collect(),
    }
}
