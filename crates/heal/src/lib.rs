//! Salve's heal policy: given a failed pipeline, find the cheapest fix that works and push it
//! to `selfheal-<sha>`, or say why not.
//!
//! Tiers, cheapest first, each recorded in the report:
//! 0. **classify**: an infrastructure failure (by its class) or a commit that passed CI before
//!    is rerun once unchanged; a pass means *flaky*: no change, no push.
//! 1. **fixers**: recipes matched on the failing command and the excerpt (`fixers.toml`, plus
//!    the project's own), run in the sandbox. Zero model tokens.
//! 2. **agent**: an external agent command (the seed's Codex recipe), when one is configured.
//!
//! Every candidate diff goes through [`guards::check`], then the failed jobs' commands run again
//! on it in the sandbox ([`verify`]); only a fix that passes is committed and pushed. Loop and
//! budget guards come first: never a `selfheal-*` branch, one heal per commit and failure
//! fingerprint (claimed on the server), a cap per branch and day, a cap on open heal pull
//! requests, and a newer push to the branch supersedes the heal.

mod agent_tier;
pub mod config;
pub mod fixers;
pub mod guards;
pub mod template;
pub mod verify;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use salve_contract::HealOutcome;
pub use salve_contract::api::{HealRefusal, HealReport, HealRun, HealTier};
use salve_git::Protected;
use salve_logs::classify::Class;
use serde_json::{Value, json};

pub use config::HealConfig;

/// Branches heals push to.
pub const HEAL_PREFIX: &str = "selfheal-";

/// Classes that may be flaky: rerun once before any fix is tried (`rerun_first`).
fn may_be_flaky(class: Class) -> bool {
    matches!(class, Class::TestFailure | Class::Unknown)
}

/// A failed pipeline, as the heal sees it.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    pub pipeline_id: String,
    pub project: String,
    pub sha: String,
    pub branch: String,
    /// The pipeline file, relative to the repository.
    pub file: String,
    /// A pipeline of the same file passed on this commit before.
    pub passed_before: bool,
    pub jobs: Vec<FailedJob>,
}

#[derive(Debug, Clone, Default)]
pub struct FailedJob {
    pub id: String,
    pub name: String,
    pub class: Class,
    pub fingerprint: String,
    pub failing_command: String,
    /// The excerpt's lines, joined.
    pub excerpt: String,
    /// How to run the job again, when the CI says it (another CI's workflow file, commands given
    /// on the command line); `None`: the job of that name in the Semaphore pipeline file.
    pub rerun: Option<verify::JobCommands>,
}

pub enum Claimed {
    /// This heal's id.
    Mine(String),
    /// Another heal has this failure: its id and state.
    Taken(String),
}

/// Why the CI could not answer the heal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CiError {
    /// It could not be reached (a network error, a server that is down); the message says which
    /// server and why.
    #[error("{0}")]
    Unreachable(String),
    /// It answered with an error: its status and message.
    #[error("the server said {status}: {message}")]
    Refused { status: u16, message: String },
    /// Its answer is not one the heal can read; the message says which and why.
    #[error("{0}")]
    Unreadable(String),
    /// What the heal was started for is not a failure it can heal.
    #[error("{0}")]
    NotHealable(String),
}

/// What the heal reads from and records on the CI server.
pub trait Ci {
    fn failure(&self) -> Result<Failure, CiError>;
    fn claim(&self, failure: &Failure, fingerprint: &str) -> Result<Claimed, CiError>;
    fn finish(&self, heal_id: &str, outcome: HealOutcome, report: &HealReport) -> Result<(), CiError>;
    /// The newest commit CI started a workflow for on `branch`.
    fn latest_sha(&self, branch: &str) -> Result<Option<String>, CiError>;
    /// Heals of `branch` created since `since_ms`.
    fn heals_since(&self, branch: &str, since_ms: i64) -> Result<usize, CiError>;
    /// Open pull requests from `selfheal-*` branches.
    fn open_heal_pulls(&self) -> Result<usize, CiError>;
    /// The last `tail` lines of a job's log (masked as stored).
    fn job_log(&self, job_id: &str, tail: usize) -> Result<String, CiError>;
}

/// Where the heal works and pushes.
pub struct Options<'a> {
    /// The checked-out repository at the failed commit.
    pub repo: PathBuf,
    /// A folder for the heal's own runs.
    pub scratch: PathBuf,
    /// Variables commands get (the job's; the API token and model keys are withheld).
    pub env: Vec<(String, String)>,
    /// Folders commands may write besides the repository.
    pub writable: Vec<PathBuf>,
    pub no_sandbox: bool,
    /// The git URL to push to, the `Authorization` header value for it, and the secret in it
    /// (masked in errors).
    pub push_url: String,
    pub push_auth: Option<String>,
    pub push_secret: Option<String>,
    /// An external agent command, overriding `[heal.agent] command`.
    pub agent_command: Option<String>,
    /// Progress, one line at a time.
    pub say: &'a dyn Fn(&str),
}

/// How a heal ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub outcome: HealOutcome,
    pub summary: String,
    pub report: HealReport,
    /// The agent's transcript, when an agent ran.
    pub transcript: Option<Value>,
}

impl Outcome {
    /// Whether the heal job should pass: it did its job (pushed, or nothing to do).
    pub fn ok(&self) -> bool {
        self.outcome.is_success()
    }
}

/// The report being built, and the heal it belongs to. Each tier says what ran (commands,
/// exit, summary), the change's diff stat, and why it stopped.
struct Record {
    tiers: Vec<HealTier>,
    started: Instant,
    /// What ran since the last tier was recorded.
    ran: Vec<HealRun>,
    /// The change's `--stat` since the last tier was recorded.
    stat: Option<String>,
}

impl Record {
    fn tier(&mut self, tier: u8, name: &str, result: &str, detail: impl Into<String>, started: Instant) {
        self.tiers.push(HealTier {
            tier,
            name: name.to_owned(),
            result: result.to_owned(),
            detail: detail.into(),
            duration_ms: started.elapsed().as_millis() as u64,
            ran: std::mem::take(&mut self.ran),
            diff_stat: self.stat.take(),
        });
    }

    /// One run of commands (a fixer, a job rerun, the agent's command).
    fn ran(&mut self, what: &str, commands: &[String], ran: &verify::Ran) {
        self.ran.push(HealRun {
            what: what.to_owned(),
            commands: commands.to_vec(),
            passed: ran.passed,
            exit_code: ran.exit_code,
            summary: ran.summary.clone(),
            duration_ms: ran.duration_ms,
        });
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// The failure's fingerprint: its jobs', sorted, so reruns of the same failure match.
pub fn fingerprint(failure: &Failure) -> String {
    let mut fps: Vec<&str> = failure.jobs.iter().map(|j| j.fingerprint.as_str()).filter(|f| !f.is_empty()).collect();
    fps.sort_unstable();
    fps.dedup();
    let joined = fps.join("+");
    if joined.is_empty() { "unknown".into() } else { joined.chars().take(200).collect() }
}

/// Heals the failure `ci` describes; never panics, every end is an [`Outcome`].
pub fn heal(ci: &dyn Ci, opts: &Options<'_>) -> Outcome {
    let say = opts.say;
    let end = |outcome: HealOutcome, summary: String, report: HealReport| {
        say(&format!("heal {outcome}: {summary}"));
        Outcome { outcome, summary, report, transcript: None }
    };
    let config = match HealConfig::load(&opts.repo) {
        Ok(c) => c,
        Err(e) => return end(HealOutcome::Failed, e, HealReport::default()),
    };
    let failure = match ci.failure() {
        Ok(f) => f,
        Err(e) => return end(HealOutcome::Failed, format!("cannot read the failure: {e}"), HealReport::default()),
    };
    say(&format!(
        "failed pipeline {} on {} at {}: {} failed job(s)",
        failure.pipeline_id,
        failure.branch,
        short(&failure.sha),
        failure.jobs.len()
    ));
    for j in &failure.jobs {
        say(&format!("  {}: {} in `{}`", j.name, j.class.words(), j.failing_command));
    }
    let base = HealReport {
        failed_pipeline: failure.pipeline_id.clone(),
        sha: failure.sha.clone(),
        branch: failure.branch.clone(),
        ..HealReport::default()
    };
    if failure.branch.starts_with(HEAL_PREFIX) {
        return end(
            HealOutcome::Skipped,
            format!("'{}' is a heal branch: Salve never heals a heal", failure.branch),
            base,
        );
    }
    if failure.jobs.is_empty() {
        return end(
            HealOutcome::Skipped,
            "no job failed (the pipeline itself did): nothing a fix to the code can do".into(),
            base,
        );
    }
    let limits = (config.max_attempts_per_day.unwrap_or(3), config.max_open_prs.unwrap_or(5));
    match ci.heals_since(&failure.branch, now_ms() - 24 * 3600 * 1000) {
        Ok(n) if n >= limits.0 as usize => {
            return end(
                HealOutcome::Skipped,
                format!(
                    "{n} heal(s) of '{}' in the last 24 hours; the cap is {} (max_attempts_per_day)",
                    failure.branch, limits.0
                ),
                base,
            );
        }
        Err(e) => return end(HealOutcome::Failed, format!("cannot count earlier heals: {e}"), base),
        Ok(_) => {}
    }
    match ci.open_heal_pulls() {
        Ok(n) if n >= limits.1 as usize => {
            return end(
                HealOutcome::Skipped,
                format!("{n} heal pull request(s) are open; the cap is {} (max_open_prs): review them first", limits.1),
                base,
            );
        }
        Err(e) => return end(HealOutcome::Failed, format!("cannot count open pull requests: {e}"), base),
        Ok(_) => {}
    }
    let fp = fingerprint(&failure);
    let heal_id = match ci.claim(&failure, &fp) {
        Ok(Claimed::Mine(id)) => id,
        Ok(Claimed::Taken(other)) => {
            return end(
                HealOutcome::Skipped,
                format!("this failure of {} has a heal already ({other})", short(&failure.sha)),
                base,
            );
        }
        Err(e) => return end(HealOutcome::Failed, format!("cannot claim the heal: {e}"), base),
    };
    let mut record = Record { tiers: Vec::new(), started: Instant::now(), ran: Vec::new(), stat: None };
    let owner = std::fs::metadata(&opts.repo).ok().map(|m| (m.uid(), m.gid()));
    let (outcome, summary, extra) = attempt(ci, opts, &config, &failure, &mut record);
    // A root caller's sandboxed commands ran as the job user, which owned the checkout for them:
    // it goes back to its owner (the CI job's later steps, git among them, expect that). Only
    // then: the runner chowns the checkout's root with the rest.
    let job = salve_runner::sandbox::JOB_UID;
    let taken = std::fs::metadata(&opts.repo).is_ok_and(|m| m.uid() == job);
    if let Some((uid, gid)) = owner.filter(|(uid, _)| *uid != job && taken) {
        give_back(&opts.repo, uid, gid);
    }
    // The agent's transcript goes to the job's artifacts, not into the record.
    let mut extra = extra;
    let transcript = extra.as_object_mut().and_then(|r| r.remove("transcript")).filter(|t| !t.is_null());
    // What the tier that ended the heal adds (its fix, its refusals, its model), as typed.
    let mut report: HealReport = serde_json::from_value(extra).unwrap_or_else(|e| {
        say(&format!("the heal's findings do not fit its report ({e}); they are left out"));
        HealReport::default()
    });
    report.failed_pipeline = base.failed_pipeline;
    report.sha = base.sha;
    report.branch = base.branch;
    report.heal_id = Some(heal_id.clone());
    report.fingerprint = Some(fp);
    report.tiers = record.tiers;
    report.summary = summary.clone();
    report.duration_ms = Some(record.started.elapsed().as_millis() as u64);
    if transcript.is_some() {
        report.transcript_artifact = Some("selfheal/transcript.json".into());
    }
    if let Err(e) = ci.finish(&heal_id, outcome, &report) {
        say(&format!("cannot record the heal's outcome: {e}"));
    }
    let mut o = end(outcome, summary, report);
    o.transcript = transcript;
    o
}

/// The tiers; returns the outcome, its summary, and what to add to the report.
fn attempt(
    ci: &dyn Ci,
    opts: &Options<'_>,
    config: &HealConfig,
    failure: &Failure,
    record: &mut Record,
) -> (HealOutcome, String, Value) {
    let say = opts.say;
    if let Some(s) = superseded(ci, failure) {
        return (HealOutcome::Superseded, s, json!({}));
    }
    // A tool or toolchain the job's machine lacks: no change to the code fixes that, and no
    // fixer or agent may try.
    // A failure the job's machine caused (a missing tool) is never healed by a change.
    if let Some(j) = failure.jobs.iter().find(|j| j.class == Class::Environment) {
        let line = j.excerpt.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        record.tier(0, "classify", "environment", line.to_owned(), Instant::now());
        return (
            HealOutcome::Skipped,
            format!(
                "{} failed because its machine lacks a tool or toolchain ({line}): no change to the code fixes that; \
                 install it in the job (sem-version, an install step, the machine image) and run it again",
                j.name
            ),
            json!({}),
        );
    }

    let mut runner = match verify::Runner::new(&opts.scratch, opts.env.clone(), opts.writable.clone(), opts.no_sandbox)
    {
        Ok(r) => r,
        Err(e) => return (HealOutcome::Failed, format!("no sandbox to run commands in: {e}"), json!({})),
    };
    let jobs = match rerun_jobs(&opts.repo, failure) {
        Ok(j) => j,
        Err(e) => return (HealOutcome::Failed, format!("cannot find the failed jobs' commands: {e}"), json!({})),
    };
    let extra = json!({"isolation": runner.isolation()});
    // From here on sandboxed commands write the work tree: the heal's own git works on the
    // checkout's `.git` moved out of their reach, never on what they leave in its place.
    let repo = match Protected::take(&opts.repo, &opts.scratch.join("protected")) {
        Ok(r) => r,
        Err(e) => return (HealOutcome::Failed, format!("cannot protect the checkout's git folder: {e}"), extra),
    };
    runner.also_readable(repo.git_dir());
    // A commit that changed no test was judged by right tests: agents and the project's own
    // recipes may not change what they expect. Unknown (the parent is not in the clone): the same.
    let frozen = repo.commit_diff(&failure.sha).map_or(true, |d| !guards::touches_tests(&d));
    let a = Attempt { ci, opts, config, failure, jobs, runner, repo, frozen };
    let (runner, jobs, repo) = (&a.runner, &a.jobs, &a.repo);

    // Tier 0: rerun, unchanged, an infrastructure failure, a commit that passed before, and
    // (unless the project says rerun_first = false) a test failure or one Salve cannot class:
    // a pass on the same commit is flaky.
    let infra: Vec<Class> = failure.jobs.iter().map(|j| j.class).filter(|c| c.is_infrastructure()).collect();
    let maybe_flaky: Vec<Class> = failure
        .jobs
        .iter()
        .map(|j| j.class)
        .filter(|c| may_be_flaky(*c) && config.rerun_first.unwrap_or(true))
        .collect();
    if !infra.is_empty() || failure.passed_before || !maybe_flaky.is_empty() {
        let t = Instant::now();
        let why = if failure.passed_before {
            "this commit passed CI before".to_owned()
        } else if let Some(c) = infra.first() {
            format!("{} is not the code's fault", c.words())
        } else {
            format!("a {} may be flaky", maybe_flaky[0].words())
        };
        say(&format!("tier 0: {why}; rerunning the failed job(s) once"));
        match verify_jobs(runner, &opts.repo, jobs, say, record) {
            Ok(None) => {
                record.tier(0, "rerun", "passed", why, t);
                let names: Vec<&str> = failure.jobs.iter().map(|j| j.name.as_str()).collect();
                let cause = infra.first().or(maybe_flaky.first()).map_or("passed before", |c| c.as_str());
                return (
                    HealOutcome::Flaky,
                    format!("the failed job(s) passed on a rerun of the same commit ({cause}): flaky, no change made"),
                    merge(extra, json!({"flaky_jobs": names})),
                );
            }
            Ok(Some(failed)) => record.tier(0, "rerun", "failed", format!("{failed} failed again"), t),
            Err(e) => return (HealOutcome::Failed, e, extra),
        }
    }

    // Tier 1: deterministic fixers. What the work tree had untracked before they ran is never
    // theirs to commit.
    let untracked_before = match repo.untracked() {
        Ok(u) => u,
        Err(e) => return (HealOutcome::Failed, format!("cannot list the work tree's files: {e}"), extra),
    };
    let recipes = config.recipes();
    let mut applied: Vec<&fixers::Recipe> = Vec::new();
    // Recipes that ran and did not get through, with why.
    let mut tried: Vec<(&str, String)> = Vec::new();
    let t = Instant::now();
    for j in &failure.jobs {
        for r in fixers::matching(&recipes, &j.failing_command, &j.excerpt) {
            if applied.iter().map(|a| a.name.as_str()).chain(tried.iter().map(|(n, _)| *n)).any(|n| n == r.name) {
                continue;
            }
            say(&format!("tier 1: fixer '{}' ({})", r.name, r.run.join("; ")));
            let env = jobs.iter().find(|c| c.name == j.name).map_or(&[][..], |c| c.env.as_slice());
            match runner.run(&r.name, &opts.repo, &r.run, env, r.network) {
                Ok(ran) => {
                    record.ran(&format!("fixer '{}'", r.name), &r.run, &ran);
                    if ran.passed {
                        applied.push(r);
                    } else {
                        say(&format!("  fixer '{}' failed: {}", r.name, ran.summary));
                        tried.push((&r.name, format!("failed: {}", ran.summary)));
                    }
                }
                Err(e) => {
                    say(&format!("  fixer '{}' could not run: {e}", r.name));
                    tried.push((&r.name, format!("could not run: {e}")));
                }
            }
        }
    }
    if applied.is_empty() {
        let (result, why) = if tried.is_empty() {
            ("none", "no fixer recipe matched the failure".to_owned())
        } else {
            let each: Vec<String> = tried.iter().map(|(n, why)| format!("'{n}' {why}")).collect();
            ("failed", format!("the matching fixer(s) did not run through: {}", each.join("; ")))
        };
        record.tier(1, "fixers", result, why, t);
    } else {
        let names = applied.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
        let summary = format!("apply {names}");
        let provenance = Provenance { tier: 1, name: names, model: None, tokens: 0 };
        match candidate(&a, record, &provenance, &summary, t, &untracked_before, &applied) {
            Some(end) => return (end.0, end.1, merge(extra, end.2)),
            None => {
                if let Err(e) = repo.reset() {
                    return (HealOutcome::Failed, format!("cannot drop the fixers' change: {e}"), extra);
                }
            }
        }
    }

    // Tier 2: an agent: the configured command, else the built-in agent when a model is set.
    let t = Instant::now();
    let done = match agent_tier::run(&a) {
        agent_tier::Tier2::Skipped(why) => {
            record.tier(2, "agent", "skipped", why.clone(), t);
            return (HealOutcome::Failed, format!("no tier could fix this failure (tier 2 skipped: {why})"), extra);
        }
        agent_tier::Tier2::Failed(why, transcript) => {
            record.tier(2, "agent", "failed", why.clone(), t);
            return (HealOutcome::Failed, why, merge(extra, json!({"transcript": transcript})));
        }
        agent_tier::Tier2::Changed(done) => done,
    };
    let provenance = Provenance { tier: 2, name: done.name.clone(), model: done.model.clone(), tokens: done.tokens };
    let extra = merge(
        extra,
        json!({"transcript": done.transcript, "agent": done.name, "turns": done.turns, "cost_usd": done.cost_usd}),
    );
    match candidate(&a, record, &provenance, &done.summary, t, &untracked_before, &[]) {
        Some(end) => (end.0, end.1, merge(extra, end.2)),
        None => (HealOutcome::Failed, "the agent's change did not fix the failed job(s)".into(), extra),
    }
}

/// How each failed job runs again: as its CI said, else from the pipeline file.
fn rerun_jobs(repo: &Path, failure: &Failure) -> Result<Vec<verify::JobCommands>, String> {
    let from_file: Vec<String> = failure.jobs.iter().filter(|j| j.rerun.is_none()).map(|j| j.name.clone()).collect();
    let mut read =
        if from_file.is_empty() { Vec::new() } else { verify::failed_jobs(repo, &failure.file, &from_file)? }
            .into_iter();
    Ok(failure.jobs.iter().filter_map(|j| j.rerun.clone().or_else(|| read.next())).collect())
}

/// One heal at work: what it knows of the failure and what it runs commands with.
pub(crate) struct Attempt<'a> {
    pub ci: &'a dyn Ci,
    pub opts: &'a Options<'a>,
    pub config: &'a HealConfig,
    pub failure: &'a Failure,
    /// The failed jobs' commands, as the pipeline file has them.
    pub jobs: Vec<verify::JobCommands>,
    pub runner: verify::Runner,
    pub repo: Protected,
    /// The failing commit changed no test ([`guards::Policy::frozen_expectations`]).
    pub frozen: bool,
}

/// Who made a change, for the commit's trailers and the report.
pub struct Provenance {
    pub tier: u8,
    /// The fixers' names, or the agent's.
    pub name: String,
    pub model: Option<String>,
    pub tokens: u64,
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        a.extend(b.clone());
    }
    a
}

/// A newer push to the failed branch, when there is one.
fn superseded(ci: &dyn Ci, failure: &Failure) -> Option<String> {
    match ci.latest_sha(&failure.branch) {
        Ok(Some(latest)) if latest != failure.sha => Some(format!(
            "'{}' moved on to {} since {} failed: the newer push's CI decides",
            failure.branch,
            short(&latest),
            short(&failure.sha)
        )),
        _ => None,
    }
}

/// Runs each failed job again; `Ok(None)` when all passed, else the first that failed.
fn verify_jobs(
    runner: &verify::Runner,
    repo: &Path,
    jobs: &[verify::JobCommands],
    say: &dyn Fn(&str),
    record: &mut Record,
) -> Result<Option<String>, String> {
    for j in jobs {
        let ran = runner.rerun(j, repo)?;
        record.ran(&format!("job '{}'", j.name), &j.commands, &ran);
        say(&format!(
            "  verify {}: {} in {:.1}s",
            j.name,
            if ran.passed { "passed" } else { "failed" },
            ran.duration_ms as f64 / 1000.0
        ));
        if !ran.passed {
            for l in ran.tail.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev() {
                say(&format!("    | {l}"));
            }
            return Ok(Some(j.name.clone()));
        }
    }
    Ok(None)
}

/// Guards, verification, commit and push of the work tree's change. `None`: the change did not
/// fix the failure (the caller resets and tries the next tier); `Some` ends the heal.
/// The change is what the tier changed in tracked files, plus the new files it may keep
/// ([`fixers::kept_new_files`]: those its recipes say they create, or for an agent (`recipes`
/// empty) any that is not build output); files untracked before it ran are never part of it.
fn candidate(
    a: &Attempt<'_>,
    record: &mut Record,
    provenance: &Provenance,
    summary: &str,
    started: Instant,
    untracked_before: &[String],
    recipes: &[&fixers::Recipe],
) -> Option<(HealOutcome, String, Value)> {
    let Attempt { ci, opts, config, failure, jobs, runner, repo, frozen } = a;
    let say = opts.say;
    let tier = provenance.tier;
    let name = if tier == 1 { "fixers" } else { "agent" };
    // A formatter run over the whole repository also reformats the pipeline files: that is not
    // part of its fix (and a fix may not touch them), so it is dropped, not refused.
    if tier == 1
        && !config.allow_ci_edits
        && let Err(e) = repo.restore(&[".semaphore", "selfheal"])
    {
        return Some((
            HealOutcome::Failed,
            format!("cannot drop the fixers' changes to the pipeline files: {e}"),
            json!({}),
        ));
    }
    let new: Vec<String> = match repo.untracked() {
        Ok(now) => now.into_iter().filter(|p| !untracked_before.contains(p)).collect(),
        Err(e) => return Some((HealOutcome::Failed, format!("cannot list the work tree's files: {e}"), json!({}))),
    };
    let kept = fixers::kept_new_files(&new, recipes);
    if kept.len() < new.len() {
        say(&format!(
            "  left out {} new file(s) that are build output or that no recipe creates (e.g. {})",
            new.len() - kept.len(),
            new.iter().find(|p| !kept.contains(p)).map_or("", String::as_str)
        ));
    }
    let diff = match repo.stage(&kept) {
        Ok(d) => d,
        Err(e) => return Some((HealOutcome::Failed, format!("cannot read the change: {e}"), json!({}))),
    };
    if diff.trim().is_empty() {
        record.tier(tier, name, "no_change", format!("{summary}: nothing changed"), started);
        return None;
    }
    let stat = repo.staged_stat().unwrap_or_default();
    let stat_line = stat.lines().last().unwrap_or("").trim().to_owned();
    say(&format!("  change: {stat_line}"));
    record.stat = Some(stat_line);
    let mut policy = config.policy();
    // Salve's own recipes are formatters and linters' fix modes; an agent's or the project's
    // recipes are held to the tests the failing commit left alone.
    policy.frozen_expectations = *frozen && (recipes.is_empty() || recipes.iter().any(|r| !r.builtin));
    let refusals = guards::check(&diff, &policy);
    if !refusals.is_empty() {
        for r in &refusals {
            say(&format!("  refused ({}): {} {}", r.rule, r.file, r.detail));
        }
        let first = &refusals[0];
        record.tier(tier, name, "refused", format!("{}: {} {}", first.rule, first.file, first.detail), started);
        let why = format!("the fix was refused: {} ({} {})", first.rule, first.file, first.detail);
        return Some((HealOutcome::Refused, why, json!({"refusals": refusals, "diff_stat": stat, "diff": cut(&diff)})));
    }
    say("  guards passed; verifying: the failed job(s) run again on the change");
    match verify_jobs(runner, &opts.repo, jobs, say, record) {
        Ok(None) => {}
        Ok(Some(failed)) => {
            record.tier(tier, name, "not_verified", format!("{summary}: {failed} still fails"), started);
            return None;
        }
        Err(e) => return Some((HealOutcome::Failed, e, json!({}))),
    }
    record.tier(tier, name, "verified", summary, started);
    if let Some(s) = superseded(*ci, failure) {
        return Some((HealOutcome::Superseded, s, json!({})));
    }
    let branch = format!("{HEAL_PREFIX}{}", short(&failure.sha));
    let tier_name = match tier {
        1 => format!("1 (fixers: {})", provenance.name),
        _ => format!("2 ({})", provenance.name),
    };
    let model = provenance.model.as_deref().unwrap_or("none");
    let message = format!(
        "selfheal CI: {summary}\n\nThe failed pipeline {} ({} at {}) passes its failed job(s) with this change.\n\n\
         Selfheal-Pipeline: {}\nSelfheal-Branch: {}\nSelfheal-Tier: {tier_name}\nSelfheal-Model: {model}\n\
         Selfheal-Tokens: {}\n",
        failure.pipeline_id,
        failure.branch,
        short(&failure.sha),
        failure.pipeline_id,
        failure.branch,
        provenance.tokens,
    );
    let commit = match repo.commit(&message, "Salve", "salve@localhost") {
        Ok(c) => c,
        Err(e) => return Some((HealOutcome::Failed, format!("cannot commit the fix: {e}"), json!({}))),
    };
    say(&format!("  committed {} on {branch}: selfheal CI: {summary}", short(&commit)));
    if let Err(e) = repo.push(
        &opts.push_url,
        &format!("HEAD:refs/heads/{branch}"),
        opts.push_auth.as_deref(),
        opts.push_secret.as_deref(),
    ) {
        return Some((HealOutcome::Failed, format!("cannot push {branch}: {e}"), json!({})));
    }
    say(&format!("  pushed {branch}"));
    Some((
        HealOutcome::Pushed,
        format!("selfheal CI: {summary}"),
        json!({
            "heal_branch": branch, "commit": commit, "diff_stat": stat, "diff": cut(&diff), "tier": tier,
            "model": provenance.model, "tokens": provenance.tokens,
        }),
    ))
}

/// Gives what the job user owns under `dir` (links themselves, not their targets) to `uid:gid`.
fn give_back(dir: &Path, uid: u32, gid: u32) {
    let job = salve_runner::sandbox::JOB_UID;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        if std::fs::symlink_metadata(&d).is_ok_and(|m| m.uid() == job) {
            let _ = std::os::unix::fs::lchown(&d, Some(uid), Some(gid));
        }
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                _ => {
                    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.uid() == job) {
                        let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
                    }
                }
            }
        }
    }
}

/// A diff for the record: at most 64 KiB (the commit has all of it).
fn cut(diff: &str) -> String {
    const MAX: usize = 64 * 1024;
    if diff.len() <= MAX {
        return diff.to_owned();
    }
    let mut end = MAX;
    while !diff.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n... (cut at 64 KiB)\n", &diff[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the job user owns in the tree goes back; a link out of it is changed itself, never
    /// what it points at.
    #[test]
    fn give_back_stays_in_the_tree_and_follows_no_link() {
        if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            return; // Changing owners needs root (CI runs as root).
        }
        let job = salve_runner::sandbox::JOB_UID;
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tree = t.path().join("tree");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(tree.join("sub")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(tree.join("sub/f"), "x").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&outside, "host").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&outside, tree.join("sub/link")).unwrap_or_else(|e| panic!("{e}"));
        for p in [tree.clone(), tree.join("sub"), tree.join("sub/f"), outside.clone()] {
            std::os::unix::fs::lchown(&p, Some(job), Some(job)).unwrap_or_else(|e| panic!("{e}"));
        }
        std::os::unix::fs::lchown(tree.join("sub/link"), Some(job), Some(job)).unwrap_or_else(|e| panic!("{e}"));
        give_back(&tree, 0, 0);
        for p in [tree.clone(), tree.join("sub"), tree.join("sub/f"), tree.join("sub/link")] {
            assert_eq!(std::fs::symlink_metadata(&p).map(|m| m.uid()).ok(), Some(0), "{}", p.display());
        }
        assert_eq!(std::fs::metadata(&outside).map(|m| m.uid()).ok(), Some(job), "the link's target is not the tree's");
    }
}
