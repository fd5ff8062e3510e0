//! A failure given on the command line, in any checkout and any CI: the failed commands
//! (`--command`, run again to verify a fix) and their output (`--log`, read as a Salve server
//! reads a job's log, with `--baseline` logs of passing runs as its baseline). In the failing job
//! itself (a GitHub Actions step with `if: failure()`, a GitLab job's `after_script`), the
//! commands default to that job's own, from the CI's file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use salve_heal::verify::JobCommands;
use salve_heal::{CiError, Failure};
use salve_logs::excerpt::Baseline;

use super::{MAX_LOG, Read, analysed};

pub struct Given<'a> {
    pub logs: &'a [PathBuf],
    pub commands: &'a [String],
    pub job: &'a str,
    pub branch: Option<&'a str>,
    pub time_limit: Duration,
}

/// The last [`MAX_LOG`] bytes of a file.
pub fn read_log(path: &Path) -> Result<Vec<u8>, CiError> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = std::fs::File::open(path)
        .map_err(|e| CiError::NotHealable(format!("cannot read the log {}: {e}", path.display())))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_LOG as u64 {
        let _ = f.seek(SeekFrom::Start(len - MAX_LOG as u64));
    }
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| CiError::NotHealable(format!("cannot read the log {}: {e}", path.display())))?;
    Ok(out)
}

/// The branch a CI job runs for, from the variables each CI sets.
pub fn ci_branch(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    [
        "GITHUB_HEAD_REF",
        "GITHUB_REF_NAME",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
        "CI_COMMIT_BRANCH",
        "SEMAPHORE_GIT_BRANCH",
    ]
    .iter()
    .find_map(|k| env(k).filter(|v| !v.is_empty()))
}

/// The commands of the CI job this runs in, from its file: GitHub Actions' `GITHUB_JOB` of the
/// workflow `GITHUB_WORKFLOW_REF` names, GitLab CI's `CI_JOB_NAME` of `.gitlab-ci.yml`.
fn this_job(repo: &Path, env: &dyn Fn(&str) -> Option<String>) -> Option<Result<JobCommands, String>> {
    if env("GITHUB_ACTIONS").as_deref() == Some("true") {
        let job = env("GITHUB_JOB")?;
        // `owner/repo/.github/workflows/ci.yml@refs/heads/main`
        let reference = env("GITHUB_WORKFLOW_REF")?;
        let path = reference.split('@').next()?.splitn(3, '/').nth(2)?.to_owned();
        return Some(super::workflows::github_job(repo, &path, &job));
    }
    if env("GITLAB_CI").as_deref() == Some("true") {
        let job = env("CI_JOB_NAME")?;
        let file = env("CI_CONFIG_PATH")
            .filter(|f| !f.contains("://") && !f.contains('@'))
            .unwrap_or_else(|| ".gitlab-ci.yml".into());
        return Some(super::workflows::gitlab_job(repo, &file, &job));
    }
    None
}

pub fn read(
    given: &Given<'_>,
    repo: &Path,
    scratch: &Path,
    baseline: &Baseline,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Read, CiError> {
    let commands: Vec<String> = given.commands.iter().filter(|c| !c.trim().is_empty()).cloned().collect();
    let rerun = if commands.is_empty() {
        match this_job(repo, env) {
            Some(Ok(job)) => job,
            Some(Err(e)) => {
                return Err(CiError::NotHealable(format!("{e}; or say how the failed job runs: --command 'CMD'")));
            }
            None => {
                return Err(CiError::NotHealable(
                    "say how the failed job runs: --command 'CMD' (repeatable, in order); a fix is verified by running them"
                        .into(),
                ));
            }
        }
    } else {
        JobCommands { name: given.job.to_owned(), commands, time_limit: given.time_limit, ..Default::default() }
    };
    if given.logs.is_empty() {
        return Err(CiError::NotHealable(
            "give the failed run's output: --log FILE (e.g. `cargo test 2>&1 | tee test.log`)".into(),
        ));
    }
    let head = salve_git::remote::checkout_head(repo, &scratch.join("head"))
        .ok_or_else(|| CiError::NotHealable(format!("{} is not a git checkout with a commit", repo.display())))?;
    let branch =
        given.branch.map(str::to_owned).or_else(|| ci_branch(env)).or(head.branch).ok_or_else(|| {
            CiError::NotHealable("HEAD is detached: say which branch failed with --branch NAME".into())
        })?;
    let mut log = Vec::new();
    for path in given.logs {
        log.extend(read_log(path)?);
        if !log.ends_with(b"\n") {
            log.push(b'\n');
        }
    }
    let id = "local".to_owned();
    let (mut job, tail) = analysed(&id, given.job, &log, baseline, None);
    job.rerun = Some(rerun);
    let project = repo.file_name().map_or_else(|| "repository".into(), |n| n.to_string_lossy().into_owned());
    Ok(Read {
        failure: Failure {
            pipeline_id: format!("local-{}", &head.sha[..head.sha.len().min(7)]),
            project,
            sha: head.sha,
            branch,
            file: String::new(),
            passed_before: false,
            jobs: vec![job],
        },
        logs: BTreeMap::from([(id, tail)]),
    })
}
