//! `salve heal` as the self-heal step of other CIs, end to end on this machine: a local server
//! speaks the endpoints Salve uses of Semaphore's public API, GitHub's Actions and pulls API and
//! GitLab's jobs and merge requests API (documented paths and field names, on 127.0.0.1); the
//! repository's remote is a real git repository. A failed run → the heal (tier 1, shellcheck's
//! own fix, verified in the sandbox) → `selfheal-<sha>` pushed with its trailers → the pull or
//! merge request opened once when CI on that branch is green; a second heal of the same failure,
//! and any heal of a heal branch, push nothing.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::serve::{commit, git};
use super::{stderr, stdout};

/// One request the fake API received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>);
type Handler = dyn Fn(&Request, &str) -> Reply + Send + Sync;

/// A local HTTP/1.1 server: each request recorded, answered by `handler` (given the request and
/// the server's own URL, for redirects).
struct Api {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Api {
    fn start(handler: Box<Handler>) -> Api {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, base) = (Arc::clone(&requests), url.clone());
        let handler: Arc<Handler> = Arc::from(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (log, base, handler) = (Arc::clone(&log), base.clone(), Arc::clone(&handler));
                std::thread::spawn(move || serve(conn, &log, &base, &*handler));
            }
        });
        Api { url, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(conn: std::net::TcpStream, log: &Mutex<Vec<Request>>, base: &str, handler: &Handler) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let req = Request { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() };
    log.lock().unwrap().push(req.clone());
    let (status, extra, body) = handler(&req, base);
    let mut out = conn;
    let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(&body);
}

fn json_reply(status: u16, v: Value) -> Reply {
    (status, vec![("content-type".into(), "application/json".into())], v.to_string().into_bytes())
}

fn not_found(req: &Request) -> Reply {
    json_reply(404, json!({"message": format!("no route for {} {}", req.method, req.path)}))
}

/// Pull (merge) requests the fake forge holds: open ones, as created.
#[derive(Default)]
struct Pulls(Mutex<Vec<Value>>);

const SCRIPT: &str = "#!/bin/bash\nname=$1\nif [ -z $name ]; then\n  echo \"usage\"\nfi\necho $name\n";

/// A repository with `files` pushed to `main` of a bare remote: (remote, work tree, sha).
fn repository(root: &Path, files: &[(&str, &str)]) -> (PathBuf, PathBuf, String) {
    let remote = root.join("remote.git");
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(root, &["init", "-q", "--bare", "-b", "main", &remote.to_string_lossy()]);
    git(&work, &["init", "-q", "-b", "main"]);
    let mut all: Vec<(&str, Option<&str>)> = files.iter().map(|(p, t)| (*p, Some(*t))).collect();
    all.push(("run.sh", Some(SCRIPT)));
    commit(&work, &all, "add run.sh");
    git(&work, &["remote", "add", "origin", &remote.to_string_lossy()]);
    git(&work, &["push", "-q", "origin", "main"]);
    let sha = rev(&work, "HEAD");
    (remote, work, sha)
}

fn rev(repo: &Path, what: &str) -> String {
    let out = Command::new("git").arg("-C").arg(repo).args(["rev-parse", what]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn git_out(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(repo).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// shellcheck's real output on the script, and its exit code.
fn shellcheck_output(work: &Path) -> String {
    let out = Command::new("shellcheck").arg("run.sh").current_dir(work).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "shellcheck finds the script's problems");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `salve` in `dir` with only `vars` (and PATH) in its environment: what a CI job gives it.
fn salve_in(dir: &Path, home: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_salve"));
    cmd.args(args).current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap()).env("HOME", home);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn home(root: &Path) -> PathBuf {
    let h = root.join("home");
    std::fs::create_dir_all(&h).unwrap();
    h
}

/// What every adapter's heal must have done: one push of `selfheal-<sha7>` with the fix to
/// run.sh alone and the trailers that say where it came from.
fn assert_healed(o: &Output, remote: &Path, sha: &str, pipeline: &str) -> String {
    let (out, err) = (stdout(o), stderr(o));
    assert!(o.status.success(), "{out}\n{err}");
    let branch = format!("selfheal-{}", &sha[..7]);
    assert!(out.contains(&format!("pushed {branch}")), "{out}\n{err}");
    let message = git_out(remote, &["log", "-1", "--format=%B", &branch]);
    assert!(message.starts_with("selfheal CI: apply shellcheck -f diff"), "{message}");
    for trailer in [
        format!("Selfheal-Pipeline: {pipeline}"),
        "Selfheal-Branch: main".into(),
        "Selfheal-Tier: 1 (fixers: shellcheck -f diff)".into(),
        "Selfheal-Tokens: 0".into(),
    ] {
        assert!(message.lines().any(|l| l == trailer), "{trailer} in:\n{message}");
    }
    assert_eq!(git_out(remote, &["diff", "--name-only", "main", &branch]).trim(), "run.sh");
    let fixed = git_out(remote, &["show", &format!("{branch}:run.sh")]);
    assert!(fixed.contains("[ -z \"$name\" ]") && fixed.contains("echo \"$name\""), "{fixed}");
    branch
}

/// A second heal of the same failure finds its branch and pushes nothing.
fn assert_claimed(o: &Output, branch: &str) {
    let out = stdout(o);
    assert!(o.status.success(), "{out}\n{}", stderr(o));
    assert!(out.contains("heal skipped") && out.contains(&format!("{branch} is on the remote")), "{out}");
}

/// GitHub's log format: timestamps, a group per step, the runner's error line.
fn github_log(output: &str) -> String {
    let mut log = String::new();
    let stamp = "2026-12-07T10:00:01.1234567Z";
    for l in [
        "##[group]Run actions/checkout@v4",
        "Syncing repository: acme/web",
        "##[endgroup]",
        "##[group]Run shellcheck run.sh",
        "shellcheck run.sh",
        "shell: /usr/bin/bash -e {0}",
        "##[endgroup]",
    ] {
        log.push_str(&format!("{stamp} {l}\n"));
    }
    for l in output.lines() {
        log.push_str(&format!("{stamp} {l}\n"));
    }
    log.push_str(&format!("{stamp} ##[error]Process completed with exit code 1.\n"));
    log.push_str(&format!("{stamp} Post job cleanup.\n"));
    log
}

/// The GitHub fake: one run (`run`) of the CI workflow on `branch`, its failed job `lint`, the
/// heal job still running; pulls created and found by head.
fn github_api(sha: String, branch: &'static str, log: String, pulls: Arc<Pulls>) -> Api {
    Api::start(Box::new(move |req, base| {
        let path = req.path.as_str();
        let pulls_of = |head: Option<&str>| {
            let all = pulls.0.lock().unwrap();
            Value::Array(all.iter().filter(|p| head.is_none_or(|h| p["head"]["ref"] == h)).cloned().collect())
        };
        match (req.method.as_str(), path) {
            ("GET", "/repos/acme/web/actions/runs/77") => json_reply(
                200,
                json!({"id": 77, "name": "CI", "head_sha": sha, "head_branch": branch, "path": ".github/workflows/ci.yml",
                       "status": "completed", "conclusion": "failure", "event": "push", "run_attempt": 1}),
            ),
            ("GET", "/repos/acme/web/actions/runs/77/jobs?filter=latest&per_page=100") => json_reply(
                200,
                json!({"total_count": 2, "jobs": [
                    {"id": 501, "run_id": 77, "name": "lint", "status": "completed", "conclusion": "failure", "head_sha": sha,
                     "steps": [{"name": "Run shellcheck run.sh", "status": "completed", "conclusion": "failure", "number": 2}]},
                    {"id": 502, "run_id": 77, "name": "heal", "status": "in_progress", "conclusion": null, "head_sha": sha}
                ]}),
            ),
            // The logs endpoint redirects to where the text is, as GitHub does.
            ("GET", "/repos/acme/web/actions/jobs/501/logs") => {
                (302, vec![("location".into(), format!("{base}/blob/job-501.txt"))], Vec::new())
            }
            ("GET", "/blob/job-501.txt") => {
                (200, vec![("content-type".into(), "text/plain".into())], log.clone().into_bytes())
            }
            ("GET", p) if p.starts_with("/repos/acme/web/actions/runs?head_sha=") => {
                json_reply(200, json!({"total_count": 0, "workflow_runs": []}))
            }
            ("GET", "/repos/acme/web/pulls?state=open&per_page=100") => json_reply(200, pulls_of(None)),
            ("GET", p) if p.starts_with("/repos/acme/web/pulls?state=open&head=acme%3A") => {
                let head = p.rsplit("acme%3A").next().unwrap_or("").to_owned();
                json_reply(200, pulls_of(Some(&head)))
            }
            ("POST", "/repos/acme/web/pulls") => {
                let b: Value = serde_json::from_str(&req.body).unwrap();
                let mut all = pulls.0.lock().unwrap();
                let number = all.len() as i64 + 1;
                let pr = json!({"number": number, "html_url": format!("https://github.example/acme/web/pull/{number}"),
                                "title": b["title"], "body": b["body"], "head": {"ref": b["head"]}, "base": {"ref": b["base"]}});
                all.push(pr.clone());
                json_reply(201, pr)
            }
            _ => not_found(req),
        }
    }))
}

const GITHUB_WORKFLOW: &str = "name: CI\non: [push]\njobs:\n  lint:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: shellcheck run.sh\n  heal:\n    needs: lint\n    if: ${{ failure() }}\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: salve heal\n";

fn github_env<'a>(api: &'a str, branch: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_REPOSITORY", "acme/web"),
        ("GITHUB_RUN_ID", "77"),
        ("GITHUB_API_URL", api),
        ("GITHUB_TOKEN", "ghs_heal_secret_token"),
        ("GITHUB_REF_NAME", branch),
    ]
}

#[test]
fn github_actions_a_failed_run_is_healed_and_its_pull_request_opened_once_when_green() {
    let t = tempfile::tempdir().unwrap();
    let (remote, work, sha) = repository(t.path(), &[(".github/workflows/ci.yml", GITHUB_WORKFLOW)]);
    let h = home(t.path());
    let pulls = Arc::new(Pulls::default());
    let api = github_api(sha.clone(), "main", github_log(&shellcheck_output(&work)), Arc::clone(&pulls));
    let vars = github_env(&api.url, "main");
    let o = salve_in(&work, &h, &["heal", "--report", "report.json"], &vars);
    let branch = assert_healed(&o, &remote, &sha, "77");
    // The token went to GitHub in a header on every call, and never into the output.
    let requests = api.requests();
    assert!(
        requests.iter().filter(|r| r.path.starts_with("/repos/")).all(|r| r
            .headers
            .get("authorization")
            .map(String::as_str)
            == Some("Bearer ghs_heal_secret_token"))
    );
    assert!(!stdout(&o).contains("ghs_heal_secret_token") && !stderr(&o).contains("ghs_heal_secret_token"));
    assert!(requests.iter().all(|r| r.method == "GET"), "the heal opens no pull request: {requests:#?}");
    let report: Value = serde_json::from_slice(&std::fs::read(work.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["heal_branch"], branch.as_str(), "{report:#}");
    assert_eq!(report["tokens"], 0);
    // The same failure again (a rerun checks the failed commit out afresh): its branch is there.
    git(&work, &["reset", "-q", "--hard", &sha]);
    let again = salve_in(&work, &h, &["heal"], &vars);
    assert_claimed(&again, &branch);

    // CI passed on the heal branch: its second workflow opens the pull request, once.
    let pr_work = t.path().join("pr");
    git(t.path(), &["clone", "-q", "-b", &branch, &remote.to_string_lossy(), &pr_work.to_string_lossy()]);
    let pr_vars = github_env(&api.url, &branch);
    for _ in 0..2 {
        let o = salve_in(&pr_work, &h, &["pr", "create"], &pr_vars);
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    }
    let made: Vec<Request> = api.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(made.len(), 1, "one pull request: {made:#?}");
    let body: Value = serde_json::from_str(&made[0].body).unwrap();
    assert_eq!((body["head"].as_str(), body["base"].as_str()), (Some(branch.as_str()), Some("main")));
    assert_eq!(body["title"], "selfheal CI: apply shellcheck -f diff");
    assert!(body["body"].as_str().unwrap().contains("Selfheal-Tier: 1"), "{body:#}");
}

#[test]
fn github_actions_a_heal_branch_is_never_healed() {
    let t = tempfile::tempdir().unwrap();
    let (remote, work, sha) = repository(t.path(), &[(".github/workflows/ci.yml", GITHUB_WORKFLOW)]);
    let h = home(t.path());
    let api = github_api(sha, "selfheal-1234567", github_log(&shellcheck_output(&work)), Arc::default());
    let o = salve_in(&work, &h, &["heal", "--for", "github"], &github_env(&api.url, "selfheal-1234567"));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Salve never heals a heal"), "{}", stdout(&o));
    assert_eq!(git_out(&remote, &["branch", "--list", "selfheal-*"]).trim(), "", "nothing pushed");
}

/// Semaphore's log events for a job whose one command failed with `output`.
fn semaphore_events(output: &str) -> Value {
    let mut events = vec![json!({"event": "job_started", "timestamp": 1_765_000_000})];
    for (directive, out, code) in [
        ("Exporting environment variables", "Exporting CI\n".to_owned(), 0),
        ("checkout", "HEAD is now at 1234567\n".to_owned(), 0),
        ("shellcheck run.sh", output.to_owned(), 1),
    ] {
        events.push(json!({"event": "cmd_started", "timestamp": 1_765_000_001, "directive": directive}));
        for l in out.split_inclusive('\n') {
            events.push(json!({"event": "cmd_output", "timestamp": 1_765_000_001, "output": l}));
        }
        events.push(
            json!({"event": "cmd_finished", "timestamp": 1_765_000_002, "directive": directive, "exit_code": code,
                           "started_at": 1_765_000_001, "finished_at": 1_765_000_002}),
        );
    }
    events.push(json!({"event": "job_finished", "timestamp": 1_765_000_003, "result": "failed"}));
    json!({"events": events})
}

const SEMAPHORE_YML: &str = "version: v1.0\nname: CI\nagent:\n  machine:\n    type: e1-standard-2\n    os_image: ubuntu2204\nblocks:\n  - name: Lint\n    task:\n      jobs:\n        - name: shellcheck\n          commands:\n            - checkout\n            - shellcheck run.sh\npromotions:\n  - name: Self-heal\n    pipeline_file: selfheal.yml\n    auto_promote:\n      when: \"result = 'failed' AND branch !~ '^selfheal-.*'\"\n";

#[test]
fn semaphore_the_heal_pipeline_reads_the_failed_pipeline_through_the_public_api() {
    let t = tempfile::tempdir().unwrap();
    let (remote, work, sha) = repository(t.path(), &[(".semaphore/semaphore.yml", SEMAPHORE_YML)]);
    let h = home(t.path());
    let events = semaphore_events(&shellcheck_output(&work));
    let pipeline = |id: &str, file: &str, result: &str| {
        json!({"ppl_id": id, "wf_id": "wf-1", "yaml_file_name": file, "working_directory": ".semaphore", "state": "done",
               "result": result, "result_reason": "test", "commit_sha": sha, "branch_name": "main", "project_id": "proj-1",
               "created_at": "2026-12-07 10:00:00.000000Z", "error_description": ""})
    };
    let (failed, heal) =
        (pipeline("ppl-failed", "semaphore.yml", "failed"), pipeline("ppl-heal", "selfheal.yml", "passed"));
    let api = Api::start(Box::new(move |req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/api/v1alpha/pipelines/ppl-heal?detailed=true") => {
            json_reply(200, json!({"pipeline": heal, "blocks": []}))
        }
        ("GET", "/api/v1alpha/pipelines?wf_id=wf-1") => {
            let mut h = heal.clone();
            h["state"] = "RUNNING".into();
            h["result"] = "".into();
            let mut f = failed.clone();
            f["state"] = "DONE".into();
            f["result"] = "FAILED".into();
            json_reply(200, json!([h, f]))
        }
        ("GET", "/api/v1alpha/pipelines/ppl-failed?detailed=true") => json_reply(
            200,
            json!({"pipeline": failed, "blocks": [{"name": "Lint", "state": "done", "result": "failed", "result_reason": "test",
                   "block_id": "b-1", "build_req_id": "r-1", "error_description": "",
                   "jobs": [{"job_id": "job-1", "name": "shellcheck", "status": "FINISHED", "result": "FAILED", "index": 0}]}]}),
        ),
        ("GET", "/api/v1alpha/logs/job-1") => json_reply(200, events.clone()),
        ("GET", "/api/v1alpha/pipelines?project_id=proj-1&branch_name=main") => json_reply(200, json!([failed])),
        _ => not_found(req),
    }));
    let vars = [
        ("SEMAPHORE_ORGANIZATION_URL", api.url.as_str()),
        ("SEMAPHORE_API_TOKEN", "sem_api_secret"),
        ("SEMAPHORE_PIPELINE_ID", "ppl-heal"),
        ("SEMAPHORE_WORKFLOW_ID", "wf-1"),
        ("SEMAPHORE_GIT_BRANCH", "main"),
    ];
    let o = salve_in(&work, &h, &["heal"], &vars);
    assert_healed(&o, &remote, &sha, "ppl-failed");
    let requests = api.requests();
    assert!(
        requests.iter().all(|r| r.headers.get("authorization").map(String::as_str) == Some("Token sem_api_secret"))
    );
    assert!(
        requests.iter().all(|r| r.headers.get("user-agent").map(String::as_str) == Some("SemaphoreCI v2.0 Client"))
    );
    assert!(!stdout(&o).contains("sem_api_secret"));
    let branch = format!("selfheal-{}", &sha[..7]);
    git(&work, &["reset", "-q", "--hard", &sha]);
    assert_claimed(&salve_in(&work, &h, &["heal"], &vars), &branch);
    // Without a token the heal says which secret it needs.
    let o = salve_in(&work, &h, &["heal", "--for", "semaphore"], &vars[..1]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("SEMAPHORE_API_TOKEN"), "{}", stderr(&o));

    // The second promotion, as `salve init --for semaphore` writes it: `salve pr create --base
    // main` in a checkout of the heal branch whose origin is on GitHub (Semaphore's deploy-key
    // URL), with no Salve server: the pull request is opened there, once.
    let forge = github_api(sha.clone(), "main", String::new(), Arc::default());
    let pr_work = t.path().join("pr");
    git(t.path(), &["clone", "-q", "-b", &branch, &remote.to_string_lossy(), &pr_work.to_string_lossy()]);
    git(&pr_work, &["remote", "set-url", "origin", "git@github.com:acme/web.git"]);
    let pr_vars = [
        ("SEMAPHORE_GIT_BRANCH", branch.as_str()),
        ("SEMAPHORE_PROJECT_NAME", "web"),
        ("GITHUB_TOKEN", "ghp_pr_token"),
        ("GITHUB_API_URL", forge.url.as_str()),
    ];
    for _ in 0..2 {
        let o = salve_in(&pr_work, &h, &["pr", "create", "--base", "main"], &pr_vars);
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    }
    let made: Vec<Request> = forge.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(made.len(), 1, "one pull request: {made:#?}");
    let body: Value = serde_json::from_str(&made[0].body).unwrap();
    assert_eq!((body["head"].as_str(), body["base"].as_str()), (Some(branch.as_str()), Some("main")));
}

const GITLAB_CI: &str = "stages: [test, heal]\nlint:\n  stage: test\n  script:\n    - shellcheck run.sh\nselfheal:\n  stage: heal\n  when: on_failure\n  script:\n    - salve heal\n";

#[test]
fn gitlab_ci_an_on_failure_job_heals_and_its_merge_request_is_opened_once() {
    let t = tempfile::tempdir().unwrap();
    let (remote, work, sha) = repository(t.path(), &[(".gitlab-ci.yml", GITLAB_CI)]);
    let h = home(t.path());
    let output = shellcheck_output(&work);
    let mut trace = String::from(
        "Running with gitlab-runner 17.0.0\nsection_start:1765000000:step_script\r\x1b[0K\x1b[0KExecuting \"step_script\" stage of the job script\x1b[0;m\n",
    );
    trace.push_str("\x1b[32;1m$ shellcheck run.sh\x1b[0;m\n");
    trace.push_str(&output);
    trace.push_str("section_end:1765000001:step_script\r\x1b[0K\x1b[31;1mERROR: Job failed: exit code 1\n\x1b[0;m\n");
    let mrs = Arc::new(Pulls::default());
    let held = Arc::clone(&mrs);
    let sha2 = sha.clone();
    let api = Api::start(Box::new(move |req, _| {
        let list = |source: Option<&str>| {
            let all = held.0.lock().unwrap();
            Value::Array(all.iter().filter(|m| source.is_none_or(|s| m["source_branch"] == s)).cloned().collect())
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/api/v4/projects/42/pipelines/900") => json_reply(
                200,
                json!({"id": 900, "iid": 12, "project_id": 42, "sha": sha2, "ref": "main", "status": "failed", "source": "push"}),
            ),
            ("GET", "/api/v4/projects/42/pipelines/900/jobs?scope%5B%5D=failed&per_page=100") => json_reply(
                200,
                json!([{"id": 601, "name": "lint", "stage": "test", "status": "failed", "allow_failure": false, "failure_reason": "script_failure"},
                       {"id": 602, "name": "flaky-docs", "stage": "test", "status": "failed", "allow_failure": true}]),
            ),
            ("GET", "/api/v4/projects/42/jobs/601/trace") => (200, vec![], trace.clone().into_bytes()),
            ("GET", p) if p.starts_with("/api/v4/projects/42/pipelines?sha=") => json_reply(200, json!([])),
            ("GET", "/api/v4/projects/group%2Fapp/merge_requests?state=opened&per_page=100") => {
                json_reply(200, list(None))
            }
            ("GET", p) if p.starts_with("/api/v4/projects/group%2Fapp/merge_requests?state=opened&source_branch=") => {
                let source = p.rsplit('=').next().unwrap_or("").to_owned();
                json_reply(200, list(Some(&source)))
            }
            ("POST", "/api/v4/projects/group%2Fapp/merge_requests") => {
                let b: Value = serde_json::from_str(&req.body).unwrap();
                let mut all = held.0.lock().unwrap();
                let iid = all.len() as i64 + 1;
                let mr = json!({"iid": iid, "web_url": format!("https://gitlab.example/group/app/-/merge_requests/{iid}"),
                                "source_branch": b["source_branch"], "target_branch": b["target_branch"], "title": b["title"]});
                all.push(mr.clone());
                json_reply(201, mr)
            }
            _ => not_found(req),
        }
    }));
    let api_v4 = format!("{}/api/v4", api.url);
    let vars = |branch: &str| -> Vec<(String, String)> {
        [
            ("GITLAB_CI", "true"),
            ("CI_API_V4_URL", api_v4.as_str()),
            ("CI_PROJECT_ID", "42"),
            ("CI_PROJECT_PATH", "group/app"),
            ("CI_PIPELINE_ID", "900"),
            ("CI_COMMIT_BRANCH", branch),
            ("CI_JOB_TOKEN", "job-token-secret"),
            ("GITLAB_TOKEN", "glpat-heal-secret"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    };
    let main_vars = vars("main");
    let o = salve_in(&work, &h, &["heal"], &pairs(&main_vars));
    let branch = assert_healed(&o, &remote, &sha, "900");
    assert!(stdout(&o).contains("1 failed job(s)"), "a job allowed to fail is not healed: {}", stdout(&o));
    let requests = api.requests();
    assert!(requests.iter().all(|r| r.headers.get("private-token").map(String::as_str) == Some("glpat-heal-secret")));
    git(&work, &["reset", "-q", "--hard", &sha]);
    assert_claimed(&salve_in(&work, &h, &["heal"], &pairs(&main_vars)), &branch);

    let pr_work = t.path().join("mr");
    git(t.path(), &["clone", "-q", "-b", &branch, &remote.to_string_lossy(), &pr_work.to_string_lossy()]);
    let branch_vars = vars(&branch);
    let refs = pairs(&branch_vars);
    for _ in 0..2 {
        let o = salve_in(&pr_work, &h, &["pr", "create", "--forge", "gitlab"], &refs);
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    }
    let made: Vec<Request> = api.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(made.len(), 1, "one merge request: {made:#?}");
    let body: Value = serde_json::from_str(&made[0].body).unwrap();
    assert_eq!((body["source_branch"].as_str(), body["target_branch"].as_str()), (Some(branch.as_str()), Some("main")));
}

#[test]
fn anywhere_logs_and_commands_given_directly() {
    let t = tempfile::tempdir().unwrap();
    let (remote, work, sha) = repository(t.path(), &[]);
    let h = home(t.path());
    let log = t.path().join("lint.log");
    std::fs::write(&log, format!("$ shellcheck run.sh\n{}", shellcheck_output(&work))).unwrap();
    let log_arg = log.to_string_lossy().into_owned();
    let o = salve_in(&work, &h, &["heal", "--log", &log_arg, "--command", "shellcheck run.sh", "--job", "lint"], &[]);
    assert_healed(&o, &remote, &sha, &format!("local-{}", &sha[..7]));
    let records =
        git_out(&remote, &["for-each-ref", "--format=%(refname) %(contents:body)", "refs/selfheal/attempts/"]);
    assert!(records.contains(&format!("refs/selfheal/attempts/{}-", &sha[..7])), "{records}");
    assert!(records.contains("Selfheal-Outcome: pushed"), "{records}");
    // Misuse says what is missing.
    let o = salve_in(&work, &h, &["heal", "--log", &log_arg], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--command"), "{}", stderr(&o));
}

/// Outside Salve every heal leaves a record on the remote, pushed or not: a failure no tier
/// fixes is not healed again, and such heals count toward the branch's daily cap.
#[test]
fn anywhere_failed_heals_are_recorded_and_capped() {
    let t = tempfile::tempdir().unwrap();
    let (remote, work, _) = repository(t.path(), &[]);
    let h = home(t.path());
    let broken = t.path().join("broken.log");
    std::fs::write(&broken, "$ ./check.sh\nerror: the frobnicator is misaligned\n").unwrap();
    let broken_arg = broken.to_string_lossy().into_owned();
    let args = ["heal", "--log", &broken_arg, "--command", "echo 'error: the frobnicator is misaligned'; exit 3"];
    let first = salve_in(&work, &h, &args, &[]);
    assert_eq!(first.status.code(), Some(1), "{}", stdout(&first));
    let again = salve_in(&work, &h, &args, &[]);
    assert!(again.status.success(), "{}", stdout(&again));
    assert!(stdout(&again).contains("a heal of this failure ended failed"), "{}", stdout(&again));
    let records = git_out(&remote, &["for-each-ref", "--format=%(refname)", "refs/selfheal/attempts/"]);
    assert_eq!(records.lines().count(), 1, "{records}");
    assert!(git_out(&remote, &["log", "-1", "--format=%B", records.trim()]).contains("Selfheal-Outcome: failed"));
    // The checkout is its owner's again (the sandboxed commands ran as the job user).
    git(&work, &["status", "--porcelain"]);
    // One heal of main today: with a cap of one, another failure is not healed.
    std::fs::write(work.join("salve.toml"), "[heal]\nmax_attempts_per_day = 1\n").unwrap();
    let other = t.path().join("other.log");
    std::fs::write(&other, "$ ./other.sh\nerror: another thing\n").unwrap();
    let other_arg = other.to_string_lossy().into_owned();
    let capped = salve_in(&work, &h, &["heal", "--log", &other_arg, "--command", "exit 4"], &[]);
    assert!(capped.status.success(), "{}", stdout(&capped));
    assert!(stdout(&capped).contains("1 heal(s) of 'main' in the last 24 hours"), "{}", stdout(&capped));
}

/// `salve init --self-heal --for …` writes each CI's files: Semaphore's pass `salve lint`,
/// GitHub's workflow runs on the repository's CI workflows, GitLab's jobs sit in `.post`; each
/// install line stops with a message that says what to set when salve cannot be had.
#[test]
fn init_writes_each_cis_self_heal_files() {
    let t = tempfile::tempdir().unwrap();
    let h = home(t.path());
    let (_, sem, _) = repository(&t.path().join("sem"), &[(".semaphore/semaphore.yml", SEMAPHORE_YML)]);
    // The file has the seed's heal promotion already: only the pull request's is added.
    let o = salve_in(&sem, &h, &["init", "--self-heal", "--for", "semaphore"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let heal = std::fs::read_to_string(sem.join(".semaphore/selfheal.yml")).unwrap();
    assert!(heal.contains("salve heal --for semaphore") && heal.contains("name: salve-selfheal"), "{heal}");
    let pr = std::fs::read_to_string(sem.join(".semaphore/selfheal-pr.yml")).unwrap();
    assert!(pr.contains("salve pr create --base main"), "{pr}");
    let lint = salve_in(
        &sem,
        &h,
        &["lint", ".semaphore/semaphore.yml", ".semaphore/selfheal.yml", ".semaphore/selfheal-pr.yml"],
        &[],
    );
    assert!(lint.status.success(), "{}{}", stdout(&lint), stderr(&lint));
    let main = std::fs::read_to_string(sem.join(".semaphore/semaphore.yml")).unwrap();
    assert!(main.contains("pipeline_file: selfheal-pr.yml"), "{main}");

    let (_, gh, _) = repository(&t.path().join("gh"), &[(".github/workflows/ci.yml", GITHUB_WORKFLOW)]);
    let o = salve_in(&gh, &h, &["init", "--self-heal", "--for", "github"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let wf = std::fs::read_to_string(gh.join(".github/workflows/selfheal.yml")).unwrap();
    assert!(wf.contains("workflows: ['CI']") && wf.contains("salve heal --for github"), "{wf}");
    assert!(wf.contains("--head \"${{ github.event.workflow_run.head_branch }}\""), "{wf}");
    let again = salve_in(&gh, &h, &["init", "--self-heal", "--for", "github"], &[]);
    assert!(stdout(&again).contains("kept    .github/workflows/selfheal.yml"), "{}", stdout(&again));

    let (_, gl, _) = repository(
        &t.path().join("gl"),
        &[(".gitlab-ci.yml", "stages: [test]\nlint:\n  script:\n    - shellcheck run.sh\n")],
    );
    let o = salve_in(&gl, &h, &["init", "--self-heal", "--for", "gitlab"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ci = std::fs::read_to_string(gl.join(".gitlab-ci.yml")).unwrap();
    assert!(ci.starts_with("stages: [test]\nlint:") && ci.contains("salve-heal:\n  stage: .post"), "{ci}");
    let again = salve_in(&gl, &h, &["init", "--self-heal", "--for", "gitlab"], &[]);
    assert!(stdout(&again).contains("kept    .gitlab-ci.yml"), "{}", stdout(&again));
    assert_eq!(std::fs::read_to_string(gl.join(".gitlab-ci.yml")).unwrap(), ci);
    // No CI file yet: say what to write first.
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for ci in ["github", "gitlab"] {
        let o = salve_in(&empty, &h, &["init", "--self-heal", "--for", ci], &[]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("first"), "{}", stderr(&o));
    }
    // The install line, on a machine with no salve and nothing set, stops and says what to set.
    let line = heal.lines().find(|l| l.contains("command -v salve")).unwrap().trim();
    let line = line.trim_start_matches("- '").trim_end_matches('\'');
    let install = Command::new("bash")
        .args(["-c", &format!("{line}\necho unreachable")])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &h)
        .output()
        .unwrap();
    assert!(!install.status.success());
    assert!(stderr(&install).contains("set SALVE_SOURCE"), "{}", stderr(&install));
    assert!(!stdout(&install).contains("unreachable"));
}

/// `salve heal replay` over a folder of cases (a repository at the failed commit, its failed
/// jobs' logs, the project's cache): each heal runs, pushes nowhere, and the per-class table
/// says how they ended, against what each case expects.
#[test]
fn replay_prints_what_healing_would_have_done_per_class() {
    let t = tempfile::tempdir().unwrap();
    let h = home(t.path());
    let cases = t.path().join("cases");
    let case = |name: &str, yml_command: &str, log: &str, toml: &str| -> PathBuf {
        let folder = cases.join(name);
        let yml = SEMAPHORE_YML.replace("shellcheck run.sh", yml_command);
        let (remote, work, _) = repository(&folder, &[(".semaphore/semaphore.yml", &yml)]);
        std::fs::remove_dir_all(remote).unwrap();
        std::fs::create_dir_all(folder.join("logs")).unwrap();
        std::fs::write(folder.join("logs/shellcheck.log"), log).unwrap();
        std::fs::write(folder.join("case.toml"), toml).unwrap();
        work
    };
    let shell = case("format", "shellcheck run.sh", "", "kind = \"mechanical\"\nexpect = \"pushed\"\n");
    let output = shellcheck_output(&shell);
    std::fs::write(cases.join("format/logs/shellcheck.log"), format!("$ shellcheck run.sh\n{output}")).unwrap();
    // A network failure whose rerun finds what the failed run left in the project's cache.
    let flaky_log = "$ test -e \"$SALVE_CACHE_DIR/fetched\"\ncurl: (7) Failed to connect to registry.internal port 443 after 3 ms: Couldn't connect to server\n";
    case("network", "test -e \"$SALVE_CACHE_DIR/fetched\"", flaky_log, "expect = \"flaky\"\n");
    std::fs::create_dir_all(cases.join("network/cache")).unwrap();
    std::fs::write(cases.join("network/cache/fetched"), "").unwrap();
    let env_log = "$ protoc-gen-lint --check proto/\nbash: line 1: protoc-gen-lint: command not found\n";
    case("missing-tool", "protoc-gen-lint --check proto/", env_log, "expect = \"skipped\"\n");
    // A case that is not one says why and the others still run.
    std::fs::create_dir_all(cases.join("not-a-case")).unwrap();
    let json = t.path().join("replay.json");
    let o = salve_in(t.path(), &h, &["heal", "replay", "--cases", "cases", "--json", &json.to_string_lossy()], &[]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(stderr(&o).contains("not-a-case"), "{}", stderr(&o));
    for row in [
        "| environment | 1 | 0 (0%) | 0 | 0 | 0 | 1 | 1/1 |",
        "| lint_format | 1 | 1 (100%) | 0 | 0 | 0 | 0 | 1/1 |",
        "| network_infrastructure | 1 | 0 (0%) | 1 | 0 | 0 | 0 | 1/1 |",
        "| all | 3 | 1 (33%) | 1 | 0 | 0 | 1 | 3/3 |",
    ] {
        assert!(out.contains(row), "{row} in:\n{out}");
    }
    let results: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let format = results.as_array().unwrap().iter().find(|r| r["name"] == "format").unwrap();
    assert_eq!(format["report"]["heal_branch"].as_str().map(|b| b.starts_with("selfheal-")), Some(true), "{format:#}");
    // The cases are as they were: the fix went to a scratch copy.
    assert_eq!(std::fs::read_to_string(shell.join("run.sh")).unwrap(), SCRIPT);
    assert!(git_out(&shell, &["branch", "--list"]).trim() == "* main");
}

/// `salve heal replay --project` over a Salve server's failed pipelines: the failure read through
/// the API, the commit checked out from the server's git with the token in a header, the fix
/// pushed nowhere (the server's repository keeps its branches).
#[test]
fn replay_reads_a_servers_failed_pipelines() {
    let t = tempfile::tempdir().unwrap();
    let server = super::serve::Server::start(&t.path().join("data"));
    let created = server.salve(&["project", "create", "lint"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let (_, work, sha) = repository(&t.path().join("p"), &[(".semaphore/semaphore.yml", SEMAPHORE_YML)]);
    server.push(&work, "lint", "HEAD:refs/heads/main");
    server.wait("lint", "CI to fail", |l| l.iter().any(|p| p["name"] == "CI" && p["state"] == "done"));
    let h = home(t.path());
    let o = Command::new(env!("CARGO_BIN_EXE_salve"))
        .args(["heal", "replay", "--project", "lint", "--server", &server.url])
        .env("SALVE_TOKEN", &server.token)
        .env("HOME", &h)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains(&format!("main {}", &sha[..7])), "{out}");
    assert!(out.contains("| lint_format | 1 | 1 (100%) |"), "{out}");
    let repo = t.path().join("data/repos/lint.git");
    assert_eq!(git_out(&repo, &["branch", "--list", "selfheal-*"]).trim(), "", "a replay pushes nothing");
}

/// In the failing GitHub Actions job itself (a last step with `if: failure()`), `salve heal --log
/// FILE` reruns that job's own `run:` steps from its workflow (`GITHUB_JOB`,
/// `GITHUB_WORKFLOW_REF`), each as GitHub runs it: with `shell: bash`, a failing command before
/// `| tee` fails the step (pipefail), so the rerun before the fix fails and after it passes.
#[test]
fn github_actions_the_failing_job_heals_itself_from_its_log() {
    let workflow = "name: CI\non: [push]\njobs:\n  lint:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - name: Lint\n        shell: bash\n        run: shellcheck run.sh 2>&1 | tee lint.log\n      - name: Heal\n        if: failure()\n        run: salve heal --log lint.log\n";
    let t = tempfile::tempdir().unwrap();
    let (remote, work, sha) = repository(t.path(), &[(".github/workflows/ci.yml", workflow)]);
    let h = home(t.path());
    std::fs::write(t.path().join("lint.log"), format!("$ shellcheck run.sh\n{}", shellcheck_output(&work))).unwrap();
    let log = t.path().join("lint.log").to_string_lossy().into_owned();
    let vars = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_JOB", "lint"),
        ("GITHUB_WORKFLOW_REF", "acme/web/.github/workflows/ci.yml@refs/heads/main"),
        ("GITHUB_REF_NAME", "main"),
    ];
    let o = salve_in(&work, &h, &["heal", "--log", &log, "--remote", &remote.to_string_lossy()], &vars);
    let out = stdout(&o);
    assert_healed(&o, &remote, &sha, &format!("local-{}", &sha[..7]));
    // The rerun before the fix failed: tier 0 (an unknown failure may be flaky) did not pass it.
    assert!(!out.contains("heal flaky"), "{out}");
    // Without the job's name, it says what to give.
    let o = salve_in(&work, &h, &["heal", "--log", &log], &vars[2..]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--command"), "{}", stderr(&o));
}

/// An API that names another commit than the checkout's (a wrong `ref:`, or a hostile answer:
/// an option, a path) heals nothing and says what to check out.
#[test]
fn a_failure_of_another_commit_than_the_checkout_is_not_healed() {
    let t = tempfile::tempdir().unwrap();
    let (remote, work, _) = repository(t.path(), &[(".github/workflows/ci.yml", GITHUB_WORKFLOW)]);
    let h = home(t.path());
    for sha in ["0123456789abcdef0123456789abcdef01234567", "--output=/tmp/x", "../../etc"] {
        let api = github_api(sha.to_owned(), "main", github_log(&shellcheck_output(&work)), Arc::default());
        let o = salve_in(&work, &h, &["heal", "--for", "github"], &github_env(&api.url, "main"));
        assert_eq!(o.status.code(), Some(2), "{}\n{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains("but the checkout is at"), "{}", stderr(&o));
    }
    assert_eq!(
        git_out(&remote, &["for-each-ref", "refs/selfheal/", "refs/heads/selfheal-*"]).trim(),
        "",
        "nothing pushed"
    );
}
