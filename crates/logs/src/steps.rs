//! The steps of a log Salve did not run, recovered from the markers CI systems write: where a
//! command starts, how it ended, where the job's own commands stop and its clean-up begins.
//!
//! Salve's own jobs keep per-command records beside the log; a log from elsewhere has only its
//! text. Each CI marks its steps in its own way, all documented and stable for years:
//!
//! | CI | a step starts | it ended | the job failed | after the commands |
//! | --- | --- | --- | --- | --- |
//! | Travis | `$ cmd` | `The command "cmd" exited with N.` | `Done. Your build exited with 1.` | `travis_fold:start:after_…` |
//! | GitHub Actions | `##[group]Run cmd`, the step column of `gh run view --log` | `##[error]Process completed with exit code N.` | | `Post job cleanup.`, `Post …` steps |
//! | GitLab CI | `$ cmd`, `section_start:…:name` | | `ERROR: Job failed: exit code N` | `after_script`, artifact upload and clean-up sections |
//! | Jenkins | `+ cmd` (`sh` traces), `[Pipeline] { (stage)` | `script returned exit code N` | `Finished: FAILURE` | `Declarative: Post Actions` |
//! | CircleCI | the line after `#!/bin/bash -eo pipefail` | `Exited with code N` | | |
//! | Buildkite | `--- title`, `+++ title`, `~~~ title`, `$ cmd` | `Error: The command exited with status N` | | |
//! | Semaphore | `cmd_started` events (see [`crate::semaphore`]) | `cmd_finished` with its exit code | | epilogue commands |
//! | `set -x` | `+ cmd` | | | |
//!
//! [`Tracker`] is fed the lines that hold a marker (the excerpt's keyword search finds them) and
//! turns them into [`CommandSpan`]s: explicit exit codes where the CI wrote one, and otherwise
//! the last step before the clean-up is the one that failed.

use crate::line::{clean, skip_escapes};

/// One command of a Salve job log: its lines (0-based, end exclusive) and how it ended.
#[derive(Debug, Clone)]
pub struct CommandSpan {
    pub command: String,
    pub first_line: u64,
    pub end_line: u64,
    pub exit_code: Option<i32>,
}

/// Steps kept at most; past it, new starts extend the last step (a `set -x` log of a loop).
const MAX_STEPS: usize = 4096;
/// Bytes of a step's name kept.
const NAME_CAP: usize = 200;

/// What one line says about the job's structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// A command or step starts: its name.
    Start(String),
    /// The next line is the command that starts (CircleCI prints its shell first).
    StartNext,
    /// The job's commands are over; what follows is clean-up (after_script, post steps, artifact
    /// uploads, cache saving): its name.
    Post(String),
    /// The open step ended with this exit code.
    Exit(i32),
    /// The step with this name ended with this exit code (Travis names it).
    ExitOf(String, i32),
    /// The whole job ended with this result (0 passed).
    JobEnd(i32),
    /// A marker that says nothing of a step (`travis_time:end:…`, `##[endgroup]`): never output.
    Quiet,
}

/// The first whole number in `s`.
fn number(s: &str) -> Option<i32> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let digits: String = s[start..].chars().take_while(char::is_ascii_digit).collect();
    let n: i32 = digits.parse().ok()?;
    Some(if s[..start].ends_with('-') { -n } else { n })
}

fn name(s: &str) -> String {
    let s = s.trim();
    let mut end = s.len().min(NAME_CAP);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A Buildkite section title, not a diff's file header or `go test`'s verdict.
fn section_title(title: &str) -> bool {
    let t = title.trim();
    !t.is_empty()
        && !t.contains('\t')
        && !t.starts_with("a/")
        && !t.starts_with("b/")
        && !t.starts_with('/')
        && !["FAIL", "PASS", "SKIP", "RUN", "BENCH", "ok "].iter().any(|p| t.starts_with(p))
        // A path alone (`--- src/x.rs`) is a diff header; a title has words.
        && t.contains(' ')
}

/// Names of sections and steps that run after the job's own commands.
fn post_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("after_")
        || n.starts_with("post ")
        || n.contains("post job cleanup")
        || n.contains("post actions")
        || n.contains("upload_artifacts")
        || n.contains("uploading artifacts")
        || n.contains("cleanup_file_variables")
        || n.contains("cleaning up project directory")
        || n.contains("running after_script")
        || n.contains("archive_cache")
        || n.contains("saving cache")
        || n == "cache.2"
}

/// What `line` (a log line after its runner prefix) says about the job's structure, if anything.
/// Cheap for lines that say nothing: a look at their first bytes.
pub fn marker(line: &[u8]) -> Option<Marker> {
    let head = skip_escapes(line);
    let first = *head.first()?;
    if !matches!(first, b'$' | b'+' | b'-' | b'~' | b'#' | b'T' | b'D' | b't' | b's' | b'E' | b'e' | b'[' | b'F' | b'R')
        && !matches!(first, b'C' | b'S' | b'P' | b'J' | b'U' | b'\xf0' | b'B' | b'u' | b'^')
    {
        return None;
    }
    let text = clean(line);
    let t = text.trim_end();
    let t = t.trim_start_matches(['\r']);
    if let Some(cmd) = t.strip_prefix("$ ") {
        return Some(Marker::Start(name(cmd)));
    }
    if let Some(cmd) = t.strip_prefix("+ ") {
        // `set -x` traces one level deep; `++` is a substitution inside the command.
        // A command starts with a word or a path; a diff's `+ 'text'` or `+ ` with spaces does not.
        let command_like = cmd.chars().next().is_some_and(|c| c.is_alphanumeric() || "./_$[~".contains(c));
        return command_like.then(|| Marker::Start(name(cmd)));
    }
    for lead in ["--- ", "+++ ", "~~~ "] {
        if let Some(title) = t.strip_prefix(lead) {
            return section_title(title).then(|| Marker::Start(name(title)));
        }
    }
    if let Some(rest) = t.strip_prefix("##[") {
        if let Some(cmd) = rest.strip_prefix("group]Run ") {
            return Some(Marker::Start(name(cmd)));
        }
        if let Some(msg) = rest.strip_prefix("error]Process completed with exit code") {
            return number(msg).map(Marker::Exit);
        }
        return rest.starts_with("endgroup]").then_some(Marker::Quiet);
    }
    if t.starts_with("travis_time:") || t.starts_with("travis_fold:end:") || t.starts_with("section_end:") {
        return Some(Marker::Quiet);
    }
    if let Some(fold) = t.strip_prefix("travis_fold:start:") {
        return Some(if post_name(fold) { Marker::Post(name(fold)) } else { Marker::Quiet });
    }
    if let Some(section) = t.strip_prefix("section_start:") {
        // `section_start:1560896352:step_script[collapsed=true]`
        let sec = section.split_once(':').map_or(section, |(_, s)| s);
        let sec = sec.split('[').next().unwrap_or(sec);
        return Some(if post_name(sec) {
            Marker::Post(name(sec))
        } else if sec == "step_script" || sec == "build_script" {
            Marker::Quiet
        } else {
            Marker::Start(name(sec))
        });
    }
    if let Some(rest) = t.strip_prefix("The command \"") {
        // `The command "npm test" exited with 1.`, `… failed and exited with 1 during install.`,
        // `… failed 3 times.`
        let (cmd, after) = rest.rsplit_once('"')?;
        if after.contains("exited with") {
            return number(after.split("exited with").nth(1)?).map(|n| Marker::ExitOf(name(cmd), n));
        }
        return after.contains("failed").then(|| Marker::ExitOf(name(cmd), 1));
    }
    if let Some(rest) = t.strip_prefix("Done. Your build exited with") {
        return number(rest).map(Marker::JobEnd);
    }
    if let Some(rest) = t.strip_prefix("ERROR: Job failed") {
        return Some(Marker::JobEnd(number(rest).filter(|n| *n != 0).unwrap_or(1)));
    }
    if t == "Job succeeded" || t == "Finished: SUCCESS" {
        return Some(Marker::JobEnd(0));
    }
    if let Some(result) = t.strip_prefix("Finished: ") {
        return matches!(result, "FAILURE" | "UNSTABLE" | "ABORTED").then_some(Marker::JobEnd(1));
    }
    if let Some(rest) =
        t.strip_prefix("ERROR: script returned exit code").or_else(|| t.strip_prefix("script returned exit code"))
    {
        return number(rest).map(Marker::Exit);
    }
    if t.starts_with("Build step '") && t.ends_with("marked build as failure") {
        return Some(Marker::Exit(1));
    }
    if let Some(rest) = t.strip_prefix("[Pipeline] ") {
        if let Some(stage) = rest.strip_prefix("{ (").and_then(|s| s.strip_suffix(')')) {
            return Some(if post_name(stage) { Marker::Post(name(stage)) } else { Marker::Start(name(stage)) });
        }
        return Some(Marker::Quiet);
    }
    if t.starts_with("#!/bin/bash -eo pipefail") || t.starts_with("#!/bin/sh -eo pipefail") {
        return Some(Marker::StartNext);
    }
    if let Some(rest) = t.strip_prefix("Exited with code").or_else(|| t.strip_prefix("CircleCI received exit code")) {
        return number(rest).map(Marker::Exit);
    }
    // Buildkite: `🚨 Error: The command exited with status 1`, `user command error: exit status 1`.
    let bk = t.trim_start_matches(|c: char| !c.is_ascii());
    if let Some(rest) = bk.trim_start().strip_prefix("Error: The command exited with status") {
        return number(rest).map(Marker::Exit);
    }
    if let Some(rest) = t.strip_prefix("user command error: exit status") {
        return number(rest).map(Marker::Exit);
    }
    if t.starts_with("^^^ +++") {
        return Some(Marker::Quiet);
    }
    if t == "Post job cleanup." || t.starts_with("Running after_script") || t.starts_with("Uploading artifacts") {
        return Some(Marker::Post(name(t)));
    }
    None
}

/// One recovered step: lines are 1-based and inclusive.
#[derive(Debug, Clone)]
struct Step {
    command: String,
    /// The marker's line.
    first: usize,
    /// The step's last line (0 while it is open).
    end: usize,
    exit: Option<i32>,
    /// Clean-up after the job's commands.
    post: bool,
}

/// Recovers steps from the markers of one log, line by line.
#[derive(Debug, Default)]
pub struct Tracker {
    steps: Vec<Step>,
    open: bool,
    /// Clean-up began: later steps are post steps.
    post: bool,
    job_end: Option<i32>,
    /// The line that names the step CircleCI's shell line started.
    name_next: Option<usize>,
    /// A marker other than a `set -x` trace was seen: traces are then output, not steps.
    framed: bool,
    /// The step column of a `gh run view --log` export, hashed, and its line.
    column: Option<u64>,
}

impl Tracker {
    /// Feeds line `number` (1-based): `line` is its text after the runner prefix, `column` the
    /// step column a GitHub export puts before it. Returns the marker the line holds, and the
    /// step it closed (its first and last line), if it closed one.
    pub fn line(&mut self, number: usize, line: &[u8], column: Option<&[u8]>) -> (Option<Marker>, Option<usize>) {
        if let Some(col) = column {
            let h = crate::line::shape(col);
            if self.column != Some(h) {
                self.column = Some(h);
                let n = name(&clean(col));
                let closed = if post_name(&n) { self.post_step(number, n) } else { self.start(number, n) };
                return (None, closed);
            }
        }
        if self.wants_name(number) {
            self.name_step(line);
            return (Some(Marker::Quiet), None);
        }
        self.name_next = None;
        let Some(m) = marker(line) else { return (None, None) };
        let trace = skip_escapes(line).starts_with(b"+ ");
        if trace && self.framed {
            return (None, None);
        }
        // Jenkins' stages hold `sh` traces; every other CI's markers frame the commands.
        if !trace && !matches!(m, Marker::Quiet) && !skip_escapes(line).starts_with(b"[Pipeline]") {
            self.framed = true;
        }
        let closed = match &m {
            Marker::Start(cmd) => self.start(number, cmd.clone()),
            Marker::StartNext => {
                self.name_next = Some(number + 1);
                self.start(number, String::new())
            }
            Marker::Post(n) => self.post_step(number, n.clone()),
            Marker::Exit(code) => self.exit(number, None, *code),
            Marker::ExitOf(cmd, code) => self.exit(number, Some(cmd), *code),
            Marker::JobEnd(code) => {
                self.job_end = Some(*code);
                self.close(number.saturating_sub(1))
            }
            Marker::Quiet => None,
        };
        (Some(m), closed)
    }

    /// The line CircleCI's shell line said names the step, if it is line `number`.
    pub fn wants_name(&self, number: usize) -> bool {
        self.name_next == Some(number)
    }

    /// Names the open step after `line` (the command under CircleCI's shell line).
    pub fn name_step(&mut self, line: &[u8]) {
        self.name_next = None;
        if let Some(s) = self.steps.last_mut().filter(|_| self.open) {
            s.command = name(&clean(line));
        }
    }

    fn close(&mut self, end: usize) -> Option<usize> {
        if !self.open {
            return None;
        }
        self.open = false;
        let s = self.steps.last_mut()?;
        s.end = end.max(s.first);
        Some(s.first)
    }

    fn start(&mut self, number: usize, command: String) -> Option<usize> {
        if self.steps.len() >= MAX_STEPS && self.open {
            return None;
        }
        let closed = self.close(number - 1);
        self.steps.push(Step { command, first: number, end: 0, exit: None, post: self.post });
        self.open = true;
        closed
    }

    fn post_step(&mut self, number: usize, name: String) -> Option<usize> {
        self.post = true;
        if self.steps.len() >= MAX_STEPS {
            // Past the cap the open step goes on, but it is clean-up from here.
            return None;
        }
        self.start(number, name)
    }

    fn exit(&mut self, number: usize, command: Option<&String>, code: i32) -> Option<usize> {
        // Travis names the command; it is the open step, or the last one when output followed.
        let target = match command {
            Some(c) => self.steps.iter().rposition(|s| &s.command == c).or(self.steps.len().checked_sub(1)),
            None => self.steps.len().checked_sub(1),
        };
        let i = target?;
        self.steps[i].exit = Some(code);
        if i + 1 == self.steps.len() { self.close(number) } else { None }
    }

    /// Whether the step starting at line `first` may be the failing one: `Some(true)` when its
    /// exit code says it failed, `Some(false)` when its end is unknown and it is not clean-up.
    pub fn may_have_failed(&self, first: usize) -> Option<bool> {
        let s = self.steps.iter().rev().find(|s| s.first == first)?;
        match s.exit {
            Some(0) => None,
            Some(_) => Some(true),
            None => (!s.post).then_some(false),
        }
    }

    /// The steps as command spans with their roles: exit codes the CI wrote stand; when none
    /// failed, the last step that is not clean-up is the one that did (a job stops at its
    /// failing command). Empty when the log had no markers.
    pub fn finish(&mut self, total_lines: usize) -> Vec<(CommandSpan, Role)> {
        if self.open {
            self.close(total_lines);
        }
        let explicit = self.steps.iter().any(|s| s.exit.is_some_and(|e| e != 0));
        let passed = self.job_end == Some(0);
        let designated =
            if explicit || passed { None } else { self.steps.iter().rposition(|s| !s.post && s.exit.is_none()) };
        let failure = self.steps.iter().position(|s| s.exit.is_some_and(|e| e != 0)).or(designated);
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let role = match s.exit {
                    Some(0) => Role::Passed,
                    Some(_) if failure.is_some_and(|f| i > f) => Role::FailedLater,
                    Some(_) => Role::Failed,
                    None if Some(i) == designated => Role::Failed,
                    // After the failure, steps that say nothing of their end are clean-up.
                    None if s.post || failure.is_some_and(|f| i > f) => Role::Post,
                    None => Role::Earlier,
                };
                let span = CommandSpan {
                    command: s.command.clone(),
                    first_line: (s.first - 1) as u64,
                    end_line: s.end as u64,
                    exit_code: match role {
                        Role::Failed | Role::FailedLater => s.exit,
                        _ => Some(s.exit.unwrap_or(0)),
                    },
                };
                (span, role)
            })
            .collect()
    }
}

/// What a step was to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It failed (its exit code says so, or it is the last before the clean-up).
    Failed,
    /// It failed too, after the first failure (a later script command, a clean-up step).
    FailedLater,
    /// Its exit code was 0.
    Passed,
    /// Its end is unknown and another step followed before the failure: it most likely passed.
    Earlier,
    /// Clean-up after the failure (after_script, post steps, artifact uploads).
    Post,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_of_each_ci() {
        let m = |s: &str| marker(s.as_bytes());
        assert_eq!(m("$ bundle exec rake"), Some(Marker::Start("bundle exec rake".into())));
        assert_eq!(m("\x1b[0K$ npm test"), Some(Marker::Start("npm test".into())));
        assert_eq!(m("\x1b[32;1m$ npm test\x1b[0;m"), Some(Marker::Start("npm test".into())));
        assert_eq!(m("The command \"npm test\" exited with 1."), Some(Marker::ExitOf("npm test".into(), 1)));
        assert_eq!(
            m("The command \"npm install\" failed and exited with 127 during install."),
            Some(Marker::ExitOf("npm install".into(), 127))
        );
        assert_eq!(m("Done. Your build exited with 1."), Some(Marker::JobEnd(1)));
        assert_eq!(m("##[group]Run cargo test --locked"), Some(Marker::Start("cargo test --locked".into())));
        assert_eq!(m("##[error]Process completed with exit code 101."), Some(Marker::Exit(101)));
        assert_eq!(m("section_start:1560896352:after_script"), Some(Marker::Post("after_script".into())));
        assert_eq!(m("section_start:1560896352:step_script"), Some(Marker::Quiet));
        assert_eq!(m("ERROR: Job failed: exit code 2"), Some(Marker::JobEnd(2)));
        assert_eq!(m("+ make test"), Some(Marker::Start("make test".into())));
        assert_eq!(m("++ git rev-parse HEAD"), None);
        assert_eq!(m("+    indented diff line"), None);
        assert_eq!(m("+ 'hello_world'"), None);
        assert_eq!(m("ERROR: script returned exit code 2"), Some(Marker::Exit(2)));
        assert_eq!(m("Finished: FAILURE"), Some(Marker::JobEnd(1)));
        assert_eq!(
            m("[Pipeline] { (Declarative: Post Actions)"),
            Some(Marker::Post("Declarative: Post Actions".into()))
        );
        assert_eq!(m("#!/bin/bash -eo pipefail"), Some(Marker::StartNext));
        assert_eq!(m("Exited with code exit status 1"), Some(Marker::Exit(1)));
        assert_eq!(m("--- :rspec: Running specs"), Some(Marker::Start(":rspec: Running specs".into())));
        assert_eq!(m("--- FAIL: TestParse (0.00s)"), None);
        assert_eq!(m("--- a/src/lib.rs"), None);
        assert_eq!(m("+++ b/src/lib.rs"), None);
        assert_eq!(m("🚨 Error: The command exited with status 1"), Some(Marker::Exit(1)));
        assert_eq!(m("error: could not compile"), None);
        assert_eq!(m(""), None);
    }

    /// The steps of a log given as lines.
    fn track(log: &[&str]) -> Vec<(CommandSpan, Role)> {
        let mut t = Tracker::default();
        for (i, l) in log.iter().enumerate() {
            t.line(i + 1, l.as_bytes(), None);
        }
        t.finish(log.len())
    }

    #[test]
    fn the_last_step_before_clean_up_failed_when_no_exit_code_says_so() {
        let spans = track(&[
            "section_start:1:get_sources",
            "Fetching",
            "$ npm ci",
            "added 3",
            "$ npm test",
            "boom",
            "section_start:2:after_script",
            "$ upload",
            "ERROR: Job failed: exit code 1",
        ]);
        let roles: Vec<_> = spans.iter().map(|(s, r)| (s.command.as_str(), *r)).collect();
        assert_eq!(
            roles,
            [
                ("get_sources", Role::Earlier),
                ("npm ci", Role::Earlier),
                ("npm test", Role::Failed),
                ("after_script", Role::Post),
                ("upload", Role::Post)
            ]
        );
        let test = &spans[2].0;
        assert_eq!((test.first_line, test.end_line), (4, 6));
    }

    #[test]
    fn explicit_exit_codes_stand() {
        let spans = track(&[
            "$ make lint",
            "ok",
            "The command \"make lint\" exited with 0.",
            "$ make test",
            "FAIL x",
            "The command \"make test\" exited with 2.",
            "$ make docs",
            "fine",
            "The command \"make docs\" exited with 0.",
            "Done. Your build exited with 1.",
        ]);
        let codes: Vec<_> = spans.iter().map(|(s, _)| (s.command.as_str(), s.exit_code)).collect();
        assert_eq!(codes, [("make lint", Some(0)), ("make test", Some(2)), ("make docs", Some(0))]);
    }
}
