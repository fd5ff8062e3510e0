//! `salve heal replay`: the heal's tiers over past failures, pushing nowhere, so a team sees what
//! self-healing would have done before it turns it on: the fix rate per failure class, the model
//! tokens and cost, the time.
//!
//! Failures come from a folder of cases, or from a Salve server's stored failed pipelines. A case
//! is a folder with the repository at the failed commit (the folder itself, or its `repo/`), the
//! failed jobs' logs (`logs/<job name>.log`) and, optionally, `case.toml`: `branch`, `file` (the
//! pipeline file; default `.semaphore/semaphore.yml`), `commands` (how the job runs again, when
//! not from the pipeline file), `kind` and `expect` (the outcome it should have: the table says
//! how many did). Each heal works on a copy; its "push" goes to a scratch repository.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use salve_contract::api::HealReport;
use salve_contract::{HealOutcome, RunResult, api};
use salve_heal::{Ci, CiError, Claimed, Failure};
use salve_logs::excerpt::Baseline;
use serde::{Deserialize, Serialize};

use crate::client::{Client, ServerArgs, encode};
use crate::outside;
use crate::{err, out};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// A folder of cases (see `salve heal replay --help`); without it, the failed pipelines of a
    /// Salve server.
    #[arg(long, value_name = "DIR")]
    cases: Option<PathBuf>,
    /// The server's project whose failed pipelines are replayed.
    #[arg(long)]
    project: Option<String>,
    /// At most this many failed pipelines, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// An external agent for tier 2, as for `salve heal`.
    #[arg(long)]
    agent_command: Option<String>,
    /// Run fixers and verification without bubblewrap where it cannot start.
    #[arg(long)]
    no_sandbox: bool,
    /// Also write every case's result and report as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CaseFile {
    branch: Option<String>,
    file: Option<String>,
    commands: Vec<String>,
    kind: Option<String>,
    expect: Option<String>,
}

/// One replayed failure.
#[derive(Serialize)]
struct Replayed {
    name: String,
    class: String,
    kind: Option<String>,
    outcome: HealOutcome,
    expected: Option<bool>,
    tier: Option<u8>,
    tokens: u64,
    cost_usd: f64,
    ms: u64,
    summary: String,
    report: HealReport,
}

/// The failure as read, answered like a CI that has never seen a heal: nothing claimed,
/// capped or superseded, nothing open.
struct ReplayCi {
    failure: Failure,
    logs: BTreeMap<String, String>,
    report: RefCell<Option<HealReport>>,
}

impl Ci for ReplayCi {
    fn failure(&self) -> Result<Failure, CiError> {
        Ok(self.failure.clone())
    }
    fn claim(&self, failure: &Failure, _: &str) -> Result<Claimed, CiError> {
        Ok(Claimed::Mine(format!("replay:{}", failure.pipeline_id)))
    }
    fn finish(&self, _: &str, _: HealOutcome, report: &HealReport) -> Result<(), CiError> {
        *self.report.borrow_mut() = Some(report.clone());
        Ok(())
    }
    fn latest_sha(&self, _: &str) -> Result<Option<String>, CiError> {
        Ok(Some(self.failure.sha.clone()))
    }
    fn heals_since(&self, _: &str, _: i64) -> Result<usize, CiError> {
        Ok(0)
    }
    fn open_heal_pulls(&self) -> Result<usize, CiError> {
        Ok(0)
    }
    fn job_log(&self, job_id: &str, tail: usize) -> Result<String, CiError> {
        let log = self.logs.get(job_id).ok_or_else(|| CiError::NotHealable(format!("no failed job '{job_id}'")))?;
        let lines: Vec<&str> = log.lines().collect();
        Ok(lines[lines.len().saturating_sub(tail)..].join("\n"))
    }
}

/// A failure to replay: where its repository is copied from, and what failed.
struct Case {
    name: String,
    /// The project's cache as the failed run left it (`cache/` of a case folder).
    cache: Option<PathBuf>,
    kind: Option<String>,
    expect: Option<HealOutcome>,
    ci: ReplayCi,
    source: Source,
}

/// Where a case's work tree comes from.
enum Source {
    /// A copy of the case's repository.
    Folder(PathBuf),
    /// A checkout of `sha` from the server's git (the token in a header).
    Server { url: String, token: String, sha: String, home: PathBuf },
}

impl Source {
    fn check_out(&self, work: &Path) -> Result<(), String> {
        match self {
            Source::Folder(from) => copy_tree(from, work),
            Source::Server { url, token, sha, home } => {
                let auth = format!("Bearer {token}");
                let remote =
                    salve_git::remote::Remote::open(url, Some(&auth), Some(token), home).map_err(|e| e.to_string())?;
                remote.check_out(sha, work).map_err(|e| e.to_string())
            }
        }
    }
}

pub fn run(args: &ReplayArgs) -> u8 {
    let scratch = match std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_dir()) {
        Some(h) => h.join(format!(".salve-replay-{}", std::process::id())),
        None => std::env::temp_dir().join(format!("salve-replay-{}", std::process::id())),
    };
    let cases = match (&args.cases, &args.project) {
        (Some(dir), _) => from_folder(dir),
        (None, Some(project)) => from_server(&args.server, project, args.limit, &scratch),
        (None, None) => {
            Err("say what to replay: --cases DIR (a folder of cases) or --project NAME (a server's)".into())
        }
    };
    let cases = match cases {
        Ok(c) if c.is_empty() => {
            err!("salve heal replay: no failures to replay");
            return 1;
        }
        Ok(c) => c,
        Err(e) => {
            err!("salve heal replay: {e}");
            return 2;
        }
    };
    let mut done = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        out!("[{}/{}] {}", i + 1, cases.len(), case.name);
        let dir = scratch.join(format!("case-{i}"));
        let r = replay(case, &dir, args);
        let _ = std::fs::remove_dir_all(&dir);
        match r {
            Ok(r) => {
                out!("  {} ({}): {}", r.outcome, r.class, r.summary);
                done.push(r);
            }
            Err(e) => err!("  cannot replay {}: {e}", case.name),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    out!("");
    out!("{}", table(&done));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&done).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            err!("salve heal replay: cannot write {}: {e}", path.display());
            return 1;
        }
    }
    if done.len() < cases.len() { 1 } else { 0 }
}

fn replay(case: &Case, dir: &Path, args: &ReplayArgs) -> Result<Replayed, String> {
    let work = dir.join("work");
    let pushed = dir.join("pushed.git");
    std::fs::create_dir_all(&pushed).map_err(|e| format!("cannot create {}: {e}", pushed.display()))?;
    case.source.check_out(&work)?;
    salve_git::Repo::new(&pushed).init_bare(None).map_err(|e| e.to_string())?;
    // The project's cache as the failed run left it (`cache store` in a job), as a heal job has
    // it; a copy, so that a replay changes no case.
    let mut env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k != "SALVE_CACHE_DIR").collect();
    let mut writable = Vec::new();
    if let Some(cache) = &case.cache {
        let copy = dir.join("cache");
        copy_tree(cache, &copy)?;
        env.push(("SALVE_CACHE_DIR".into(), copy.to_string_lossy().into_owned()));
        writable.push(copy);
    }
    let quiet = |_: &str| {};
    let options = salve_heal::Options {
        repo: work,
        scratch: dir.join("heal"),
        env,
        writable,
        no_sandbox: args.no_sandbox,
        push_url: pushed.to_string_lossy().into_owned(),
        push_auth: None,
        push_secret: None,
        agent_command: args.agent_command.clone(),
        say: &quiet,
    };
    let started = Instant::now();
    let o = salve_heal::heal(&case.ci, &options);
    let report = case.ci.report.borrow_mut().take().unwrap_or(o.report);
    let class = case.ci.failure.jobs.first().map_or("unknown", |j| j.class.as_str()).to_owned();
    Ok(Replayed {
        name: case.name.clone(),
        class,
        kind: case.kind.clone(),
        outcome: o.outcome,
        expected: case.expect.map(|e| e == o.outcome),
        tier: report.tier,
        tokens: report.tokens.unwrap_or(0),
        cost_usd: report.cost_usd.unwrap_or(0.0),
        ms: started.elapsed().as_millis() as u64,
        summary: o.summary,
        report,
    })
}

/// The per-class table: cases, and how they ended.
fn table(done: &[Replayed]) -> String {
    #[derive(Default)]
    struct Row {
        cases: usize,
        by: BTreeMap<&'static str, usize>,
        expected: (usize, usize),
        tokens: u64,
        cost: f64,
        ms: u64,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for r in done {
        for key in [r.class.clone(), "all".to_owned()] {
            let row = rows.entry(key).or_default();
            row.cases += 1;
            *row.by.entry(r.outcome.as_str()).or_default() += 1;
            if let Some(e) = r.expected {
                row.expected.0 += 1;
                row.expected.1 += usize::from(e);
            }
            row.tokens += r.tokens;
            row.cost += r.cost_usd;
            row.ms += r.ms;
        }
    }
    let all = rows.remove("all");
    let mut t = String::from(
        "| class | cases | fixed (pushed) | flaky | refused | failed | skipped | as expected | tokens | cost | time |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (class, row) in rows.iter().map(|(k, v)| (k.as_str(), v)).chain(all.as_ref().map(|a| ("all", a))) {
        let n = |o: &str| row.by.get(o).copied().unwrap_or(0);
        let fixed = n("pushed");
        let expected =
            if row.expected.0 == 0 { "-".to_owned() } else { format!("{}/{}", row.expected.1, row.expected.0) };
        t.push_str(&format!(
            "| {class} | {} | {fixed} ({:.0}%) | {} | {} | {} | {} | {expected} | {} | ${:.4} | {:.1}s |\n",
            row.cases,
            100.0 * fixed as f64 / row.cases.max(1) as f64,
            n("flaky"),
            n("refused"),
            n("failed"),
            n("skipped") + n("superseded"),
            row.tokens,
            row.cost,
            row.ms as f64 / 1000.0
        ));
    }
    t
}

/// `cp -a`: a folder copied with its links and modes.
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("cannot copy {}: {}", from.display(), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The cases in a folder, by name.
fn from_folder(dir: &Path) -> Result<Vec<Case>, String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    names.sort();
    let mut cases = Vec::new();
    for path in names {
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match folder_case(&path, &name) {
            Ok(c) => cases.push(c),
            Err(e) => err!("salve heal replay: {name}: {e}; skipped"),
        }
    }
    Ok(cases)
}

fn folder_case(path: &Path, name: &str) -> Result<Case, String> {
    let spec: CaseFile = match std::fs::read_to_string(path.join("case.toml")) {
        Ok(t) => toml::from_str(&t).map_err(|e| format!("case.toml: {e}"))?,
        Err(_) => CaseFile::default(),
    };
    // The repository: `repo/`, else the one subfolder that is a git repository, else the folder.
    let inner: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(".git").is_dir())
        .collect();
    let repo = match inner.as_slice() {
        _ if path.join("repo").is_dir() => path.join("repo"),
        [one] => one.clone(),
        _ => path.to_owned(),
    };
    let scratch = std::env::temp_dir().join(format!("salve-replay-head-{}", std::process::id()));
    let head = salve_git::remote::checkout_head(&repo, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let head = head.ok_or_else(|| format!("{} is not a git repository with a commit", repo.display()))?;
    let mut logs: Vec<PathBuf> = std::fs::read_dir(path.join("logs"))
        .map_err(|e| format!("no logs/ folder of failed jobs' logs ({e})"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    if logs.is_empty() {
        return Err("logs/ has no <job>.log".into());
    }
    let mut jobs = Vec::new();
    let mut texts = BTreeMap::new();
    for log in &logs {
        let job = log.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let bytes = outside::local::read_log(log).map_err(|e| e.to_string())?;
        // A Salve job's per-command records (`commands.json` of its folder), when kept beside.
        let records: Vec<salve_runner::CommandRecord> = std::fs::read(log.with_extension("commands.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let spans: Vec<salve_logs::excerpt::CommandSpan> = records
            .into_iter()
            .map(|c| salve_logs::excerpt::CommandSpan {
                command: c.command,
                first_line: c.first_line,
                end_line: c.end_line,
                exit_code: c.exit_code,
            })
            .collect();
        let (mut j, tail) = outside::analysed_with(&job, &job, &bytes, &Baseline::default(), None, &spans);
        if !spec.commands.is_empty() {
            j.rerun = Some(salve_heal::verify::JobCommands {
                name: job.clone(),
                commands: spec.commands.clone(),
                time_limit: std::time::Duration::from_secs(3600),
                ..Default::default()
            });
        }
        texts.insert(job, tail);
        jobs.push(j);
    }
    let expect = match &spec.expect {
        Some(e) => Some(HealOutcome::parse(e).ok_or_else(|| format!("case.toml: expect = '{e}' is not an outcome"))?),
        None => None,
    };
    let failure = Failure {
        pipeline_id: name.to_owned(),
        project: name.to_owned(),
        sha: head.sha,
        branch: spec.branch.or(head.branch).unwrap_or_else(|| "main".into()),
        file: spec.file.unwrap_or_else(|| ".semaphore/semaphore.yml".into()),
        passed_before: false,
        jobs,
    };
    let source = repo.clone();
    Ok(Case {
        name: name.to_owned(),
        cache: Some(path.join("cache")).filter(|c| c.is_dir()),
        kind: spec.kind,
        expect,
        ci: ReplayCi { failure, logs: texts, report: RefCell::new(None) },
        source: Source::Folder(source),
    })
}

/// The newest failed pipelines of a project on a Salve server.
fn from_server(server: &ServerArgs, project: &str, limit: usize, scratch: &Path) -> Result<Vec<Case>, String> {
    let client = Client::new(server)?;
    let list: api::PipelineList =
        client.get(&format!("/api/v1/pipelines?project={}&limit={}", encode(project), limit.max(1) * 4))?;
    let token = std::env::var("SALVE_TOKEN").unwrap_or_default();
    let url = format!("{}/git/{project}.git", server.server.trim_end_matches('/'));
    let mut cases = Vec::new();
    for p in list.pipelines.iter().filter(|p| p.result == Some(RunResult::Failed)).take(limit) {
        let ci = crate::server_ci::server_ci(Client::new(server)?, p.id.clone());
        let failure = match ci.failure() {
            Ok(f) if !f.branch.starts_with(salve_heal::HEAL_PREFIX) && !f.jobs.is_empty() => f,
            _ => continue,
        };
        let mut logs = BTreeMap::new();
        for j in &failure.jobs {
            logs.insert(j.id.clone(), ci.job_log(&j.id, 2000).unwrap_or_default());
        }
        let (url, token, sha) = (url.clone(), token.clone(), failure.sha.clone());
        let home = scratch.join("remote");
        cases.push(Case {
            cache: None,
            name: format!(
                "{} {} {}",
                p.id.get(..8).unwrap_or(&p.id),
                failure.branch,
                &failure.sha[..failure.sha.len().min(7)]
            ),
            kind: None,
            expect: None,
            ci: ReplayCi { failure, logs, report: RefCell::new(None) },
            source: Source::Server { url, token, sha, home },
        });
    }
    Ok(cases)
}
