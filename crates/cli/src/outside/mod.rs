//! `salve heal` outside a Salve server: the failure read from the CI the heal runs in
//! (Semaphore's public API, GitHub Actions' REST API, GitLab's jobs API) or given on the command
//! line (`--log`, `--command`), and the heal's record kept where that CI's team looks: on the
//! checkout's remote: every heal leaves a record there (`refs/selfheal/attempts/<sha>-<failure>`,
//! a commit of no files whose message names the branch, the commit, the failure and how the heal
//! ended), and a heal that fixed it its branch, `selfheal-<sha>`, whose commit names the branch it
//! heals (`Selfheal-Branch:`); open heal pull requests are counted on the forge.
//!
//! The HTTP clients here are what a user runs against the real services; the tests run them
//! against local servers that speak the same endpoints and field names.

pub mod github;
pub mod gitlab;
pub mod local;
pub mod semaphore;
pub mod workflows;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use salve_contract::HealOutcome;
use salve_contract::api::HealReport;
use salve_git::remote::Remote;
use salve_heal::{Ci, CiError, Claimed, FailedJob, Failure, HEAL_PREFIX};
use salve_logs::excerpt::Baseline;
use serde::de::DeserializeOwned;

use crate::forges::Forge;

/// Where the heal runs: which CI tells it what failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Host {
    /// The CI this job runs in, from its variables (`GITHUB_ACTIONS`, `GITLAB_CI`,
    /// `SEMAPHORE_ORGANIZATION_URL`), else a Salve server; `--log`/`--command` mean `local`.
    Auto,
    /// A Salve server (`SALVE_SERVER`, `SALVE_TOKEN`).
    Salve,
    /// Semaphore, through its public API (`SEMAPHORE_API_TOKEN`).
    Semaphore,
    /// GitHub Actions, through its REST API (`GITHUB_TOKEN`).
    Github,
    /// GitLab CI, through its API (`GITLAB_TOKEN`, else `CI_JOB_TOKEN`).
    Gitlab,
    /// Logs and commands given with `--log` and `--command`.
    Local,
}

impl Host {
    /// The host `Auto` means in an environment.
    pub fn resolve(self, env: &dyn Fn(&str) -> Option<String>, local_inputs: bool) -> Host {
        if self != Host::Auto {
            return self;
        }
        if local_inputs {
            Host::Local
        } else if env("GITHUB_ACTIONS").as_deref() == Some("true") {
            Host::Github
        } else if env("GITLAB_CI").as_deref() == Some("true") {
            Host::Gitlab
        } else if env("SEMAPHORE_ORGANIZATION_URL").is_some() && env("SALVE_SERVER").is_none() {
            Host::Semaphore
        } else {
            Host::Salve
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Host::Auto | Host::Salve => "Salve",
            Host::Semaphore => "Semaphore",
            Host::Github => "GitHub Actions",
            Host::Gitlab => "GitLab CI",
            Host::Local => "the command line",
        }
    }
}

/// Largest log read from a CI's API; past it, its end is kept.
const MAX_LOG: usize = 64 * 1024 * 1024;
/// Lines of each failed job's log kept for the agent's `job_log` tool.
const KEPT_LINES: usize = 2000;

/// A CI's API over HTTP: a base URL, the headers that authenticate, the token masked in errors.
pub struct Http {
    name: &'static str,
    base: String,
    headers: Vec<(&'static str, String)>,
    secret: String,
    http: reqwest::blocking::Client,
}

impl Http {
    pub fn new(
        name: &'static str,
        base: &str,
        headers: Vec<(&'static str, String)>,
        secret: &str,
    ) -> Result<Http, CiError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .user_agent("salve")
            .build()
            .map_err(|e| CiError::Unreachable(format!("cannot start an HTTP client: {e}")))?;
        Ok(Http { name, base: base.trim_end_matches('/').to_owned(), headers, secret: secret.to_owned(), http })
    }

    fn mask(&self, s: &str) -> String {
        if self.secret.is_empty() { s.to_owned() } else { s.replace(&self.secret, "[MASKED]") }
    }

    fn send(&self, path: &str) -> Result<reqwest::blocking::Response, CiError> {
        let mut r = self.http.get(format!("{}{path}", self.base));
        for (k, v) in &self.headers {
            r = r.header(*k, v);
        }
        let response = r.send().map_err(|e| {
            CiError::Unreachable(self.mask(&format!(
                "cannot reach {} at {}: {}",
                self.name,
                self.base,
                e.without_url()
            )))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().or(v["error"].as_str()).map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(300).collect());
        let hint = match status.as_u16() {
            401 | 403 => " (is the token right, and may it read this project?)",
            404 => " (a wrong ID, or a token that may not see it)",
            _ => "",
        };
        Err(CiError::Refused {
            status: status.as_u16(),
            message: self.mask(&format!("{} {path}: {message}{hint}", self.name)),
        })
    }

    /// A JSON answer, read as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CiError> {
        let body = self.send(path)?.bytes().map_err(|e| CiError::Unreachable(format!("{} {path}: {e}", self.name)))?;
        serde_json::from_slice(&body)
            .map_err(|e| CiError::Unreadable(format!("{}'s answer to {path} is not what salve reads: {e}", self.name)))
    }

    /// A text answer (a log), its last [`MAX_LOG`] bytes.
    pub fn bytes(&self, path: &str) -> Result<Vec<u8>, CiError> {
        let mut response = self.send(path)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = std::io::Read::read(&mut response, &mut buf)
                .map_err(|e| CiError::Unreachable(format!("{} {path}: {e}", self.name)))?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.len() > 2 * MAX_LOG {
                out.drain(..out.len() - MAX_LOG);
            }
        }
        if out.len() > MAX_LOG {
            out.drain(..out.len() - MAX_LOG);
        }
        Ok(out)
    }
}

/// A failed job read from its log: class, fingerprint, failing command and excerpt, as a Salve
/// server would report them; and the log's last lines.
pub fn analysed(id: &str, name: &str, log: &[u8], baseline: &Baseline, hint: Option<&str>) -> (FailedJob, String) {
    analysed_with(id, name, log, baseline, hint, &[])
}

/// [`analysed`], with where each command's output is in the log when that is known.
pub fn analysed_with(
    id: &str,
    name: &str,
    log: &[u8],
    baseline: &Baseline,
    hint: Option<&str>,
    commands: &[salve_logs::excerpt::CommandSpan],
) -> (FailedJob, String) {
    let inputs = salve_logs::report::Inputs { baseline: Some(baseline), hint, commands, ..Default::default() };
    let report = if salve_logs::semaphore::is_events(log) {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut salve_logs::semaphore::Events::new(log), &mut text);
        let r = salve_logs::report::report(&text, &inputs, 4096);
        return (job(id, name, r), tail(&text));
    } else {
        salve_logs::report::report(log, &inputs, 4096)
    };
    (job(id, name, report), tail(log))
}

fn job(id: &str, name: &str, r: salve_logs::report::Report) -> FailedJob {
    FailedJob {
        id: id.to_owned(),
        name: name.to_owned(),
        class: r.class,
        fingerprint: r.fingerprint,
        failing_command: r.failing_command.unwrap_or_default(),
        excerpt: r.excerpt.into_iter().map(|l| l.text).collect::<Vec<_>>().join("\n"),
        rerun: None,
    }
}

fn tail(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(KEPT_LINES)..].join("\n")
}

/// What a CI adapter read: the failure and each failed job's log.
pub struct Read {
    pub failure: Failure,
    /// Job id → the last lines of its log.
    pub logs: BTreeMap<String, String>,
}

/// The heal's record outside Salve: the remote's `selfheal-*` branches and the forge's pulls.
pub struct Outside {
    pub read: Read,
    pub remote: Remote,
    /// The forge pull requests go to, and the token for it.
    pub forge: Option<(Forge, String)>,
    /// Where the report is written, besides the job's output.
    pub report: Option<PathBuf>,
    pub host: Host,
    /// This heal's record on the remote (its name and first lines), once claimed.
    pub claimed: std::cell::RefCell<Option<(String, String)>>,
    /// The remote's heal records as they were when this heal began, fetched once.
    pub records: std::cell::OnceCell<Vec<salve_git::remote::Tip>>,
}

/// A record's name: the failed commit and the failure's fingerprint.
fn record_name(sha: &str, fingerprint: &str) -> String {
    format!("{}-{}", &sha[..sha.len().min(7)], &format!("{:x}", md5::compute(fingerprint))[..8])
}

impl Outside {
    /// The remote's records of earlier heals (the cap and the claim both read them).
    fn records(&self) -> Result<&[salve_git::remote::Tip], CiError> {
        if let Some(r) = self.records.get() {
            return Ok(r);
        }
        let r = self
            .remote
            .records()
            .map_err(|e| CiError::Unreachable(format!("cannot read the remote's heal records: {e}")))?;
        Ok(self.records.get_or_init(|| r))
    }
}

impl Ci for Outside {
    fn failure(&self) -> Result<Failure, CiError> {
        Ok(self.read.failure.clone())
    }

    fn claim(&self, failure: &Failure, fingerprint: &str) -> Result<Claimed, CiError> {
        let unreadable =
            |e: salve_git::GitError| CiError::Unreachable(format!("cannot read the remote's heal records: {e}"));
        let branch = format!("{HEAL_PREFIX}{}", &failure.sha[..failure.sha.len().min(7)]);
        if let Some(sha) = self.remote.head(&branch).map_err(unreadable)? {
            return Ok(Claimed::Taken(format!("{branch} is on the remote at {}", &sha[..sha.len().min(7)])));
        }
        let name = record_name(&failure.sha, fingerprint);
        if let Some(r) = self.records()?.iter().find(|r| r.branch == name) {
            let ended = r.message.lines().find_map(|l| l.strip_prefix("Selfheal-Outcome: ")).unwrap_or("unknown");
            return Ok(Claimed::Taken(format!(
                "a heal of this failure ended {ended} (refs/selfheal/attempts/{name} on the remote)"
            )));
        }
        let head = format!(
            "selfheal attempt of {} at {}\n\nSelfheal-Branch: {}\nSelfheal-Commit: {}\nSelfheal-Fingerprint: {fingerprint}\nSelfheal-CI: {}\n",
            failure.branch,
            &failure.sha[..failure.sha.len().min(7)],
            failure.branch,
            failure.sha,
            self.host.name()
        );
        // Without a record (a remote that refuses refs outside branches) the heal still runs;
        // its budget then counts the heal branches it pushed.
        match self.remote.record(&name, &format!("{head}Selfheal-Outcome: running\n")) {
            Ok(()) => *self.claimed.borrow_mut() = Some((name, head)),
            Err(e) => crate::err!(
                "salve heal: cannot keep a record of this heal on the remote ({e}); heals that push nothing are not counted"
            ),
        }
        Ok(Claimed::Mine(format!("{}:{}:{fingerprint}", self.host.name(), failure.pipeline_id)))
    }

    fn finish(&self, _heal_id: &str, outcome: HealOutcome, report: &HealReport) -> Result<(), CiError> {
        if let Some((name, head)) = self.claimed.borrow().as_ref() {
            let message = format!("{head}Selfheal-Outcome: {outcome}\n");
            if let Err(e) = self.remote.record(name, &message) {
                crate::err!("salve heal: cannot record how the heal ended on the remote: {e}");
            }
        }
        if let Some(path) = &self.report {
            let text = serde_json::to_string_pretty(report).unwrap_or_default();
            std::fs::write(path, text)
                .map_err(|e| CiError::Unreadable(format!("cannot write {}: {e}", path.display())))?;
        }
        // GitHub shows a job's summary on the run's page.
        if self.host == Host::Github
            && let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").map(PathBuf::from)
        {
            let mut text = format!("### Salve heal: {outcome}\n\n{}\n\n", report.summary);
            for t in &report.tiers {
                text.push_str(&format!("- tier {} {}: {} ({})\n", t.tier, t.name, t.result, t.detail));
            }
            use std::io::Write as _;
            let _ = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(summary)
                .and_then(|mut f| f.write_all(text.as_bytes()));
        }
        Ok(())
    }

    fn latest_sha(&self, branch: &str) -> Result<Option<String>, CiError> {
        self.remote.head(branch).map_err(|e| CiError::Unreachable(format!("cannot read the remote's branches: {e}")))
    }

    fn heals_since(&self, branch: &str, since_ms: i64) -> Result<usize, CiError> {
        let unreadable =
            |e: salve_git::GitError| CiError::Unreachable(format!("cannot read the remote's heal records: {e}"));
        let trailer = format!("Selfheal-Branch: {branch}");
        let of_branch =
            |t: &salve_git::remote::Tip| t.time * 1000 >= since_ms && t.message.lines().any(|l| l.trim() == trailer);
        // Every heal's record; and heal branches pushed where no record could be kept.
        let records: Vec<&str> = self.records()?.iter().filter(|t| of_branch(t)).map(|r| r.branch.as_str()).collect();
        let pushed = self
            .remote
            .tips(HEAL_PREFIX)
            .map_err(unreadable)?
            .into_iter()
            .filter(of_branch)
            .filter(|t| {
                let sha7 = t.branch.trim_start_matches(HEAL_PREFIX);
                !records.iter().any(|r| r.starts_with(&format!("{sha7}-")))
            })
            .count();
        Ok(records.len() + pushed)
    }

    fn open_heal_pulls(&self) -> Result<usize, CiError> {
        match &self.forge {
            Some((forge, token)) => forge.open_pulls_from(token, HEAL_PREFIX).map_err(CiError::Unreachable),
            None => Ok(0),
        }
    }

    fn job_log(&self, job_id: &str, tail: usize) -> Result<String, CiError> {
        let log =
            self.read.logs.get(job_id).ok_or_else(|| CiError::NotHealable(format!("no failed job '{job_id}'")))?;
        let lines: Vec<&str> = log.lines().collect();
        Ok(lines[lines.len().saturating_sub(tail)..].join("\n"))
    }
}

/// A URL without the user and password a CI put in it (GitLab's `gitlab-ci-token:…@`): the
/// token goes in a header.
pub fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.starts_with("http") => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}/{path}")
        }
        _ => url.to_owned(),
    }
}

/// Where a heal outside Salve pushes, and the forge its pull requests go to: the checkout's
/// origin (`--remote` overrides it), as an HTTPS URL with the forge's token in a header when the
/// origin is on GitHub or GitLab.
pub struct Target {
    pub url: String,
    pub auth: Option<String>,
    pub secret: Option<String>,
    pub forge: Option<(Forge, String)>,
}

pub fn target(
    repo: &Path,
    scratch: &Path,
    remote: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target, String> {
    let origin = match remote {
        Some(r) => r.to_owned(),
        None => salve_git::remote::origin_url(repo, &scratch.join("origin")).ok_or_else(|| {
            format!("{} has no origin remote: say where the heal pushes with --remote URL", repo.display())
        })?,
    };
    let forge = crate::forges::from_ci(env).or_else(|| crate::forges::detect(&origin, env));
    let Some(forge) = forge else {
        // A remote on no known forge (a local path, a plain git host): no pull requests, git's own
        // access.
        return Ok(Target { url: without_userinfo(&origin), auth: None, secret: None, forge: None });
    };
    let token = forge.token(env).ok_or_else(|| {
        format!(
            "the heal pushes its fix to {} and counts its pull requests there: give the job {} (a secret with a token \
             that may push branches and open pull requests)",
            forge.name(),
            forge.token_variable()
        )
    })?;
    // An SSH origin (Semaphore checks out with a deploy key) gets the forge's HTTPS URL; a path or
    // an HTTP(S) URL is used as it is.
    let url = if origin.contains("://") && !origin.starts_with("ssh://") || origin.starts_with('/') {
        without_userinfo(&origin)
    } else {
        forge.https_url(env)
    };
    Ok(Target { url, auth: Some(forge.git_auth(&token)), secret: Some(token.clone()), forge: Some((forge, token)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn auto_finds_the_ci_from_its_variables() -> R {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(Host::Auto.resolve(&env(&[("GITHUB_ACTIONS", "true")]), false), Host::Github);
        assert_eq!(Host::Auto.resolve(&env(&[("GITLAB_CI", "true")]), false), Host::Gitlab);
        assert_eq!(
            Host::Auto.resolve(&env(&[("SEMAPHORE_ORGANIZATION_URL", "https://o.example")]), false),
            Host::Semaphore
        );
        let salve_job = env(&[("SEMAPHORE_ORGANIZATION_URL", "x"), ("SALVE_SERVER", "http://127.0.0.1:1")]);
        assert_eq!(Host::Auto.resolve(&salve_job, false), Host::Salve);
        assert_eq!(Host::Auto.resolve(&env(&[("GITHUB_ACTIONS", "true")]), true), Host::Local);
        assert_eq!(Host::Gitlab.resolve(&env(&[("GITHUB_ACTIONS", "true")]), false), Host::Gitlab);
        Ok(())
    }

    #[test]
    fn tokens_leave_urls() -> R {
        assert_eq!(
            without_userinfo("https://gitlab-ci-token:glcbt-secret@gitlab.example.com/g/p.git"),
            "https://gitlab.example.com/g/p.git"
        );
        assert_eq!(without_userinfo("https://github.com/o/r"), "https://github.com/o/r");
        assert_eq!(without_userinfo("git@github.com:o/r.git"), "git@github.com:o/r.git");
        assert_eq!(without_userinfo("/srv/r.git"), "/srv/r.git");
        Ok(())
    }

    #[test]
    fn the_push_target_follows_the_forge() -> R {
        let t = tempfile::tempdir()?;
        let repo = t.path().join("r");
        std::fs::create_dir_all(repo.join(".git"))?;
        std::fs::write(repo.join(".git/config"), "[remote \"origin\"]\n\turl = git@github.com:acme/web.git\n")?;
        let none = |_: &str| None;
        let e = target(&repo, t.path(), None, &none).err().ok_or("an error was expected")?;
        assert!(e.contains("GITHUB_TOKEN"), "{e}");
        let with = |k: &str| (k == "GITHUB_TOKEN").then(|| "tok".to_owned());
        let tg = target(&repo, t.path(), None, &with)?;
        assert_eq!(tg.url, "https://github.com/acme/web.git");
        assert!(tg.auth.is_some_and(|a| a.starts_with("Basic ")));
        let plain = target(&repo, t.path(), Some("/srv/x.git"), &none)?;
        assert_eq!((plain.url.as_str(), plain.forge.is_none()), ("/srv/x.git", true));
        assert!(target(&t.path().join("none"), t.path(), None, &none).err().is_some_and(|e| e.contains("--remote")));
        Ok(())
    }
}
