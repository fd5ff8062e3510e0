//! Self-hosted agents end to end: `salve agent` processes claim jobs of their type from a real
//! server, fetch the commit over git smart HTTP, run it in the sandbox and stream the log; an
//! agent killed with SIGKILL mid-job loses its attempt and the job runs again on another agent.
//! The agent protocol's bad input is driven over raw HTTP: a chunk after a gap, a chunk sent
//! twice, a report before the whole log, a report sent twice, a stale attempt, and an agent that
//! claims and never reports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::serve::{Server, commit, git};

/// A pipeline whose jobs run on agents of `s1-e2e`.
fn pipeline(jobs: &str) -> String {
    format!(
        "version: v1.0\nname: CI\nagent:\n  machine:\n    type: s1-e2e\nblocks:\n  - name: Test\n    task:\n      secrets:\n        - name: deploy-key\n      jobs:\n{jobs}"
    )
}

const JOBS: &str = "        - name: slow
          commands:
            - checkout
            - echo \"slow-start on $SEMAPHORE_GIT_BRANCH\"
            - sleep 4
            - test -f README && echo slow-done
        - name: secret
          commands:
            - echo \"key=$DEPLOY_KEY\"
            - test \"$DEPLOY_KEY\" = hunter2-hunter2
        - name: lines
          commands:
            - for i in $(seq 1 2000); do echo \"line $i\"; done
        - name: cache
          commands:
            - checkout
            - cache store readme-$SEMAPHORE_GIT_SHA README
            - artifact push workflow README -d readme-copy --force
            - printf '<testsuite name=\"s\" tests=\"1\"><testcase classname=\"c\" name=\"works\"/></testsuite>' > junit.xml
            - test-results publish junit.xml
  - name: Use
    task:
      jobs:
        - name: pull
          commands:
            - artifact pull workflow readme-copy
            - grep -qE '^(hello|again)$' readme-copy
            - cache restore readme-$SEMAPHORE_GIT_SHA
            - cat README
";

struct Agent {
    child: Child,
    name: String,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(server: &Server, token: &str, name: &str) -> Agent {
        Agent::start_at(&server.url, token, name)
    }

    /// An agent of the server (or comma-separated replicas) at `servers`.
    fn start_at(servers: &str, token: &str, name: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_salve"))
            .args(["agent", "--server", servers, "--token", token, "--name", name, "--slots", "2", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Agent { child, name: name.to_owned(), _dir: dir }
    }

    fn data(&self) -> PathBuf {
        self._dir.path().to_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent_type(server: &Server, name: &str) -> String {
    let made = server.salve(&["agent-type", "create", name]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    String::from_utf8_lossy(&made.stdout).lines().last().unwrap().trim().to_owned()
}

fn new_repo(files: &[(&str, Option<&str>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    commit(dir.path(), files, "init");
    dir
}

/// The pipeline as `salve pipeline show ID --json` prints it.
fn shown(server: &Server, id: &str) -> Value {
    let out = server.salve(&["pipeline", "show", id, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn jobs(p: &Value) -> Vec<Value> {
    p["blocks"].as_array().unwrap().iter().flat_map(|b| b["jobs"].as_array().unwrap().clone()).collect()
}

/// A done job's whole log, from the server (`salve logs --follow` exits 1 for a failed job).
fn log_of(server: &Server, job_id: &str) -> String {
    let out = server.salve(&["logs", job_id, "--follow"]);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines a job's log holds so far.
fn lines_so_far(server: &Server, job_id: &str) -> Vec<String> {
    let window = server.get(&format!("/api/v1/jobs/{job_id}/logs"));
    window["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn agents_run_jobs_and_a_job_whose_agent_is_killed_runs_again_elsewhere() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--agent-lost-after", "3"], None);
    assert!(server.salve(&["project", "create", "web"]).status.success());
    let token = agent_type(&server, "s1-e2e");
    let secret = server.salve(&["secret", "create", "deploy-key", "-e", "DEPLOY_KEY=hunter2-hunter2"]);
    assert!(secret.status.success(), "{}", String::from_utf8_lossy(&secret.stderr));
    let mut agents = [Agent::start(&server, &token, "one"), Agent::start(&server, &token, "two")];
    let repo = new_repo(&[(".semaphore/semaphore.yml", Some(&pipeline(JOBS))), ("README", Some("hello"))]);
    server.push(repo.path(), "web", "main");

    // Kill the agent running `slow` once it printed its first line.
    let start = Instant::now();
    let (pid, slow) = loop {
        assert!(start.elapsed() < Duration::from_secs(60), "the slow job never started");
        let list = server.pipelines("web");
        if let Some(p) = list.first() {
            let p = shown(&server, p["id"].as_str().unwrap());
            let slow = jobs(&p).into_iter().find(|j| j["name"] == "slow").unwrap();
            let started =
                || lines_so_far(&server, slow["id"].as_str().unwrap()).iter().any(|l| l.contains("slow-start"));
            if slow["agent"].is_string() && started() {
                break (p["id"].as_str().unwrap().to_owned(), slow);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let victim = slow["agent"].as_str().unwrap().to_owned();
    // While it runs: the agents list, the agents page and /metrics show who runs what.
    let listed = server.get("/api/v1/agents");
    let runner = listed["agents"].as_array().unwrap().iter().find(|a| a["name"] == victim.as_str()).unwrap().clone();
    assert!(runner["jobs"].as_array().unwrap().contains(&slow["id"]), "{listed:#}");
    assert_eq!(runner["state"], "connected");
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.post(format!("{}/login", server.url)).form(&[("token", server.token.as_str())]).send().unwrap();
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(format!("{}/agents", server.url)).header("cookie", &session).send().unwrap().text().unwrap();
    assert!(page.contains("s1-e2e") && page.contains(&format!("/jobs/{}", slow["id"].as_str().unwrap())), "{page}");
    let metrics = http.get(format!("{}/metrics", server.url)).send().unwrap().text().unwrap();
    assert!(metrics.contains("salve_agents_connected{agent_type=\"s1-e2e\"} 2"), "{metrics}");
    assert!(metrics.contains("salve_agent_wait_seconds_count{agent_type=\"s1-e2e\"}"), "{metrics}");
    let survivor = agents.iter().find(|a| a.name != victim).unwrap().name.clone();
    // SIGKILL: no goodbye, no last chunk.
    agents.iter_mut().find(|a| a.name == victim).unwrap().child.kill().unwrap();

    let list = server
        .wait_for("web", "the pipeline to pass", Duration::from_secs(90), |l| l.len() == 1 && l[0]["state"] == "done");
    let p = shown(&server, &pid);
    let failed_logs: Vec<String> = jobs(&p)
        .iter()
        .filter(|j| j["result"] == "failed")
        .map(|j| log_of(&server, j["id"].as_str().unwrap()))
        .collect();
    assert_eq!(list[0]["result"], "passed", "{p:#}\n{failed_logs:#?}");
    let all = jobs(&p);
    assert_eq!(all.len(), 5);
    for j in &all {
        assert_eq!(j["result"], "passed", "{j:#}");
        assert!(j["agent"].is_string(), "every job ran on an agent: {j:#}");
    }
    // The killed agent's attempt is in the job's history, lost; the second one passed.
    let slow = all.iter().find(|j| j["name"] == "slow").unwrap();
    let attempts = slow["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{slow:#}");
    assert_eq!(
        (attempts[0]["agent"].as_str(), attempts[0]["result"].as_str(), attempts[0]["result_reason"].as_str()),
        (Some(victim.as_str()), Some("failed"), Some("agent_lost"))
    );
    assert_eq!(
        (attempts[1]["agent"].as_str(), attempts[1]["result"].as_str()),
        (Some(survivor.as_str()), Some("passed"))
    );
    assert_eq!(slow["agent"].as_str(), Some(survivor.as_str()));
    // Its stored log is the whole second attempt, once.
    let log = log_of(&server, slow["id"].as_str().unwrap());
    assert_eq!(log.matches("slow-start on main").count(), 1, "{log}");
    assert!(log.contains("slow-done\n") && log.ends_with("salve: job passed\n"), "{log}");
    // Every line of a long log arrived, in order; the secret reached the job and was masked.
    let lines = log_of(&server, all.iter().find(|j| j["name"] == "lines").unwrap()["id"].as_str().unwrap());
    let expected: String = (1..=2000).map(|i| format!("line {i}\n")).collect::<String>() + "salve: job passed\n";
    assert_eq!(lines, expected);
    let secret = log_of(&server, all.iter().find(|j| j["name"] == "secret").unwrap()["id"].as_str().unwrap());
    assert!(secret.contains("key=[MASKED]") && !secret.contains("hunter2"), "{secret}");
    // The job's commands were recorded from the agent's report.
    let job = server.get(&format!("/api/v1/jobs/{}", slow["id"].as_str().unwrap()));
    let commands: Vec<&str> =
        job["commands"].as_array().unwrap().iter().map(|c| c["command"].as_str().unwrap()).collect();
    assert!(commands.contains(&"sleep 4"), "{job:#}");
    // The agents list shows both, the killed one silent.
    let listed = server.get("/api/v1/agents");
    assert_eq!(listed["agents"].as_array().unwrap().len(), 2, "{listed:#}");
    // Caches, artifacts and test results went to the server's storage through the API: the
    // next block's job (on any agent) pulled and restored them, and the server reads them.
    let pull = log_of(&server, all.iter().find(|j| j["name"] == "pull").unwrap()["id"].as_str().unwrap());
    assert!(pull.contains("HIT: 'readme-") && pull.contains("\nhello\n"), "{pull}");
    let cache_job = all.iter().find(|j| j["name"] == "cache").unwrap()["id"].as_str().unwrap().to_owned();
    let results = server.get(&format!("/api/v1/jobs/{cache_job}/test-results"));
    assert_eq!(results["summary"]["passed"], 1, "{results:#}");
    for a in &agents {
        let kept = std::fs::read_dir(a.data().join("cache")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(kept, 0, "nothing is cached on the agent itself");
    }
    // The storage takes project tokens of its project only, never a path out of it.
    let project = server.get("/api/v1/projects/web")["id"].as_str().unwrap().to_owned();
    let storage = |path: &str, token: &str| {
        server.http().get(format!("{}/api/v1/storage/{project}/{path}", server.url)).bearer_auth(token).send().unwrap()
    };
    assert_eq!(storage("artifacts?list", &server.token).status(), 200);
    assert_eq!(storage("artifacts?list", "salve_nope").status(), 401);
    assert_eq!(storage("artifacts/..%2F..%2Fsecrets.key", &server.token).status(), 400);
    assert_eq!(storage("elsewhere/x", &server.token).status(), 404);
    // A link a job on the server could plant in its project's storage leads nowhere.
    let planted = data.path().join("artifacts").join(&project).join("planted");
    std::os::unix::fs::symlink("/etc", &planted).unwrap();
    assert_eq!(storage("artifacts/planted/passwd", &server.token).status(), 403);
    assert_eq!(storage("artifacts/planted?list", &server.token).status(), 403);
    let put = server
        .http()
        .put(format!("{}/api/v1/storage/{project}/artifacts/planted/x", server.url))
        .bearer_auth(&server.token)
        .body("x")
        .send()
        .unwrap();
    assert_eq!(put.status(), 403);
    assert!(!std::path::Path::new("/etc/x").exists());

    // SIGTERM while a job runs: the agent claims nothing more, finishes the job (one attempt,
    // passed), says goodbye and exits 0; a new agent takes the rest.
    commit(repo.path(), &[("README", Some("again"))], "again");
    server.push(repo.path(), "web", "main");
    let start = Instant::now();
    let (pid, slow) = loop {
        assert!(start.elapsed() < Duration::from_secs(60), "the second slow job never started");
        let list = server.pipelines("web");
        if let Some(p) = list.iter().find(|p| p["id"] != pid.as_str()) {
            let p = shown(&server, p["id"].as_str().unwrap());
            if let Some(slow) = jobs(&p).into_iter().find(|j| j["name"] == "slow" && j["agent"].is_string())
                && lines_so_far(&server, slow["id"].as_str().unwrap()).iter().any(|l| l.contains("slow-start"))
            {
                break (p["id"].as_str().unwrap().to_owned(), slow);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _three = Agent::start(&server, &token, "three");
    let draining = agents.iter_mut().find(|a| a.name == survivor).unwrap();
    assert_eq!(slow["agent"].as_str(), Some(survivor.as_str()));
    Command::new("kill").args(["-TERM", &draining.child.id().to_string()]).status().unwrap();
    let exited = draining.child.wait().unwrap();
    assert!(exited.success(), "{exited:?}");
    let list = server.wait("web", "the second pipeline", |l| l.len() == 2 && l.iter().all(|p| p["state"] == "done"));
    assert!(list.iter().all(|p| p["result"] == "passed"), "{list:#?}");
    let slow = jobs(&shown(&server, &pid)).into_iter().find(|j| j["name"] == "slow").unwrap();
    let attempts = slow["attempts"].as_array().unwrap();
    assert_eq!((attempts.len(), slow["agent"].as_str()), (1, Some(survivor.as_str())), "{slow:#}");
    let listed = server.get("/api/v1/agents");
    let gone = listed["agents"].as_array().unwrap().iter().find(|a| a["name"] == survivor.as_str()).unwrap().clone();
    assert_eq!(gone["state"], "disconnected", "{listed:#}");

    // A wrong registration token: a clear refusal, before anything runs.
    let refused = Command::new(env!("CARGO_BIN_EXE_salve"))
        .args(["agent", "--server", &server.url, "--token", "salve_wrong", "--name", "x", "--data-dir"])
        .arg(data.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("cannot register") && said.contains("registration token"), "{said}");
}

/// Registers an agent over HTTP; its own token.
fn register(server: &Server, token: &str, name: &str) -> String {
    let r = server
        .http()
        .post(format!("{}/api/v1/agents/register", server.url))
        .bearer_auth(token)
        .json(&json!({"name": name, "version": env!("CARGO_PKG_VERSION"), "slots": 2}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().unwrap()["token"].as_str().unwrap().to_owned()
}

fn post(server: &Server, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = server.http().post(format!("{}{path}", server.url)).bearer_auth(token).json(body).send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn chunk(
    server: &Server,
    token: &str,
    job: &str,
    attempt: u64,
    stream: &str,
    offset: u64,
    bytes: &[u8],
) -> (u16, Value) {
    let r = server
        .http()
        .post(format!("{}/api/v1/agents/jobs/{job}/log", server.url))
        .query(&[("attempt", attempt.to_string()), ("stream", stream.to_owned()), ("offset", offset.to_string())])
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn claim(server: &Server, token: &str) -> Value {
    let (status, body) = post(server, token, "/api/v1/agents/claim", &json!({"wait_seconds": 20}));
    assert_eq!(status, 200, "{body}");
    body["job"].clone()
}

fn report(attempt: u64, log_bytes: u64) -> Value {
    json!({
        "attempt": attempt, "result": "passed", "stop_reason": null, "summary": "passed", "commands": [
            {"phase": "main", "index": 0, "command": "echo hello", "started_ms": 1, "duration_ms": 1,
             "exit_code": 0, "first_line": 0, "end_line": 1}
        ], "started_ms": 1, "finished_ms": 2, "log_lines": 1, "log_bytes": log_bytes
    })
}

fn message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_agent_protocol_refuses_gaps_doubles_stale_attempts_and_recovers_from_silent_agents() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--agent-lost-after", "2"], None);
    assert!(server.salve(&["project", "create", "api"]).status.success());
    let reg = agent_type(&server, "s1-e2e");
    let agent = register(&server, &reg, "by-hand");
    let one = "        - name: one\n          commands:\n            - echo one\n";
    let repo = new_repo(&[(
        ".semaphore/semaphore.yml",
        Some(&pipeline(one).replace("      secrets:\n        - name: deploy-key\n", "")),
    )]);
    server.push(repo.path(), "api", "main");
    // An agent's token reads no repository before it holds one of its jobs.
    let git_with = |token: &str, args: &[&str]| {
        Command::new("git")
            .args(["-c", &format!("http.extraHeader=Authorization: Bearer {token}")])
            .args(args)
            .current_dir(repo.path())
            .output()
            .unwrap()
    };
    let remote = format!("{}/git/api.git", server.url);
    let before = git_with(&agent, &["ls-remote", &remote]);
    assert!(!before.status.success() && String::from_utf8_lossy(&before.stderr).contains("403"), "{before:?}");
    let job = claim(&server, &agent);
    let id = job["job_id"].as_str().unwrap().to_owned();
    // Holding one, it fetches that repository, and never pushes to it.
    let fetched = git_with(&agent, &["ls-remote", &remote]);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    let pushed = git_with(&agent, &["push", &remote, "HEAD:refs/heads/planted"]);
    assert!(!pushed.status.success(), "an agent's token pushed");
    // The job's storage token opens its project's storage and nothing else.
    let storage_token = job["storage_token"].as_str().unwrap();
    let project = job["project"]["id"].as_str().unwrap();
    let listed =
        server.http().get(format!("{}/api/v1/storage/{project}/cache?list", server.url)).bearer_auth(storage_token);
    assert_eq!(listed.send().unwrap().status(), 200);
    for path in ["/api/v1/projects", "/api/v1/pipelines?project=api"] {
        let r = server.http().get(format!("{}{path}", server.url)).bearer_auth(storage_token).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    assert!(!git_with(storage_token, &["ls-remote", &remote]).status.success(), "a storage token read git");
    assert_eq!((job["attempt"].as_u64(), job["lease_seconds"].as_u64()), (Some(1), Some(2)), "{job:#}");
    assert_eq!(job["commands"], json!(["echo one"]));
    let env: Vec<&str> = job["env"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(
        env.contains(&"SEMAPHORE_JOB_ID") && !env.contains(&"SEMAPHORE_GIT_URL"),
        "server places stay home: {env:?}"
    );

    // API tokens open no agent route, nor agent tokens the API.
    assert_eq!(chunk(&server, &server.token, &id, 1, "log", 0, b"x").0, 401);
    let r = server.http().get(format!("{}/api/v1/projects", server.url)).bearer_auth(&agent).send().unwrap();
    assert_eq!(r.status(), 401);
    // A chunk after a gap is refused with where to send from; chunks sent twice are stored once.
    let (status, body) = chunk(&server, &agent, &id, 1, "log", 5, b"world\n");
    assert_eq!(status, 409);
    assert!(message(&body).contains("the server holds 0 bytes"), "{body}");
    assert_eq!(chunk(&server, &agent, &id, 1, "log", 0, b"hello\n").1["stored"], 6);
    assert_eq!(chunk(&server, &agent, &id, 1, "log", 0, b"hello\n").1["stored"], 6);
    assert_eq!(chunk(&server, &agent, &id, 1, "log", 3, b"lo\nbye\n").1["stored"], 10);
    let (status, body) = chunk(&server, &agent, &id, 1, "index", 0, b"short");
    assert_eq!(status, 400, "{body}");
    let (status, body) = chunk(&server, &agent, &id, 1, "log", 0, b"");
    assert_eq!((status, body["stored"].as_u64(), body["stop"].clone()), (200, Some(10), Value::Null));
    let (status, body) = chunk(&server, &agent, &id, 1, "sideways", 0, b"");
    assert_eq!(status, 400, "{body}");
    // Another attempt than the one held, or another agent, is told the job is not its own.
    assert_eq!(chunk(&server, &agent, &id, 2, "log", 10, b"x").0, 410);
    let other = register(&server, &reg, "other");
    assert_eq!(chunk(&server, &other, &id, 1, "log", 10, b"x").0, 410);
    // No report before the whole log; one report only.
    let (status, body) = post(&server, &agent, &format!("/api/v1/agents/jobs/{id}/finish"), &report(1, 20));
    assert_eq!(status, 409);
    assert!(message(&body).contains("holds 10 of the log's 20 bytes"), "{body}");
    let (status, body) = post(&server, &agent, &format!("/api/v1/agents/jobs/{id}/finish"), &json!({"attempt": 1}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(&server, &agent, &format!("/api/v1/agents/jobs/{id}/finish"), &report(1, 10));
    assert_eq!((status, body["result"].as_str()), (200, Some("passed")), "{body}");
    let (status, body) = post(&server, &agent, &format!("/api/v1/agents/jobs/{id}/finish"), &report(1, 10));
    assert_eq!(status, 409);
    assert!(message(&body).contains("reported its end already"), "{body}");
    let list = server.wait("api", "the first pipeline", |l| l.len() == 1 && l[0]["state"] == "done");
    assert_eq!(list[0]["result"], "passed");
    assert_eq!(log_of(&server, &id), "hello\nbye\n");

    // An agent that claims and never reports loses the job, which is queued again; lost twice,
    // the job fails with agent_lost and the late agent's words are refused.
    commit(repo.path(), &[("again", Some("1"))], "again");
    server.push(repo.path(), "api", "main");
    let first = claim(&server, &agent);
    let id = first["job_id"].as_str().unwrap().to_owned();
    let second = claim(&server, &other);
    assert_eq!((second["job_id"].as_str(), second["attempt"].as_u64()), (Some(id.as_str()), Some(2)), "{second:#}");
    assert_eq!(chunk(&server, &agent, &id, 1, "log", 0, b"late\n").0, 410);
    let (status, _) = post(&server, &agent, &format!("/api/v1/agents/jobs/{id}/finish"), &report(1, 0));
    assert_eq!(status, 410);
    assert_eq!(chunk(&server, &other, &id, 2, "log", 0, b"second\n").1["stored"], 7);
    let list = server.wait("api", "the lost job to fail", |l| l.len() == 2 && l.iter().all(|p| p["state"] == "done"));
    let failed = list.iter().find(|p| p["result"] != "passed").unwrap();
    let p = shown(&server, failed["id"].as_str().unwrap());
    let j = &jobs(&p)[0];
    assert_eq!((j["result"].as_str(), j["result_reason"].as_str()), (Some("failed"), Some("agent_lost")), "{j:#}");
    let attempts: Vec<(&str, &str)> = j["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["agent"].as_str().unwrap(), a["result_reason"].as_str().unwrap()))
        .collect();
    assert_eq!(attempts, [("by-hand", "agent_lost"), ("other", "agent_lost")]);
    // The second attempt's log is its own.
    assert_eq!(log_of(&server, &id), "second\n");
}

/// Runs `sql` on PostgreSQL at `url` with psql.
fn psql(url: &str, sql: &str) {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Six jobs in two blocks, each printing 300 numbered lines between a begin and an end line.
const SIX: &str = "version: v1.0
name: CI
agent:
  machine:
    type: s1-e2e
blocks:
  - name: Build
    task:
      prologue:
        commands:
          - 'echo \"begin $SEMAPHORE_JOB_NAME\"'
      epilogue:
        always:
          commands:
            - 'echo \"end $SEMAPHORE_JOB_NAME\"'
      jobs:
        - name: a
          commands: ['for i in $(seq 1 300); do echo \"a line $i\"; done', 'sleep 1']
        - name: b
          commands: ['for i in $(seq 1 300); do echo \"b line $i\"; done', 'sleep 1']
        - name: c
          commands: ['for i in $(seq 1 300); do echo \"c line $i\"; done', 'sleep 2']
        - name: d
          commands: ['for i in $(seq 1 300); do echo \"d line $i\"; done', 'sleep 1']
  - name: Test
    task:
      prologue:
        commands:
          - 'echo \"begin $SEMAPHORE_JOB_NAME\"'
      epilogue:
        always:
          commands:
            - 'echo \"end $SEMAPHORE_JOB_NAME\"'
      jobs:
        - name: e
          commands: ['for i in $(seq 1 300); do echo \"e line $i\"; done', 'sleep 1']
        - name: f
          commands: ['for i in $(seq 1 300); do echo \"f line $i\"; done', 'sleep 1']
promotions:
  - name: Done
    pipeline_file: done.yml
    auto_promote:
      when: \"result = 'passed'\"
";

/// The pipeline every passed one promotes, once.
const DONE: &str = "version: v1.0
name: Done
agent:
  machine:
    type: s1-e2e
blocks:
  - name: Done
    task:
      jobs:
        - name: done
          commands: ['echo done']
";

#[test]
fn two_replicas_and_three_agents_finish_ten_branches_through_a_killed_agent_and_a_killed_replica() {
    let admin = std::env::var("SALVE_TEST_POSTGRES_URL")
        .expect("SALVE_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts PostgreSQL");
    let name = format!("salve_replicas_{}", std::process::id());
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    // Two replicas: one database, one data folder.
    let data = tempfile::tempdir().unwrap();
    let lease = ["--agent-lost-after", "3"];
    let mut first = Server::start_on(data.path(), Some(&url), &lease, None);
    let second = Server::start_on(data.path(), Some(&url), &lease, None);
    assert!(first.salve(&["project", "create", "shop"]).status.success());
    let token = agent_type(&second, "s1-e2e");
    let both = format!("{},{}", first.url, second.url);
    let other_first = format!("{},{}", second.url, first.url);
    let mut agents: Vec<Agent> = ["one", "two", "three"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let servers = if i == 1 { &other_first } else { &both };
            Agent::start_at(servers, &token, n)
        })
        .collect();
    let repo = new_repo(&[(".semaphore/semaphore.yml", Some(SIX)), (".semaphore/done.yml", Some(DONE))]);
    for i in 0..10 {
        git(repo.path(), &["checkout", "-q", "-B", &format!("branch-{i}"), "main"]);
        commit(repo.path(), &[("n", Some(&i.to_string()))], "n");
        let server = if i % 2 == 0 { &first } else { &second };
        server.push(repo.path(), "shop", &format!("branch-{i}"));
    }
    // An agent dies mid-job...
    let start = Instant::now();
    let victim = loop {
        assert!(start.elapsed() < Duration::from_secs(90), "no job started");
        let running: Vec<Value> = second
            .pipelines("shop")
            .iter()
            .filter(|p| p["state"] == "running")
            .flat_map(|p| jobs(&shown(&second, p["id"].as_str().unwrap())))
            .filter(|j| j["state"] == "running" && j["agent"].is_string())
            .collect();
        if let Some(j) = running.iter().find(|j| lines_so_far(&second, j["id"].as_str().unwrap()).len() > 1) {
            break j["agent"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    agents.iter_mut().find(|a| a.name == victim).unwrap().child.kill().unwrap();
    // ...then a replica, while pipelines still run.
    std::thread::sleep(Duration::from_millis(1500));
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    // Ten pipelines and the ten they promote, each promotion fired once across the replicas.
    let all = second.wait_for("shop", "twenty pipelines", Duration::from_secs(240), |l| {
        l.len() >= 20 && l.iter().all(|p| p["state"] == "done")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let all = second.wait("shop", "nothing more", |l| l.len() == all.len());
    assert_eq!(all.len(), 20, "{all:#?}");
    let list: Vec<Value> = all.iter().filter(|p| p["promotion_of"].is_null()).cloned().collect();
    assert_eq!(list.len(), 10);
    for p in &list {
        let children: Vec<&Value> = all.iter().filter(|c| c["promotion_of"] == p["id"]).collect();
        assert_eq!(children.len(), 1, "promotions of {}: {all:#?}", p["id"]);
        assert_eq!(children[0]["result"], "passed");
    }
    let mut lost = 0;
    for p in &list {
        let shown = shown(&second, p["id"].as_str().unwrap());
        assert_eq!(p["result"], "passed", "{shown:#}");
        let all = jobs(&shown);
        assert_eq!(all.len(), 6);
        for j in &all {
            let name = j["name"].as_str().unwrap();
            // The stored log is whole: every line once, in order.
            let log = log_of(&second, j["id"].as_str().unwrap());
            let expected: String = format!("begin {name}\n")
                + &(1..=300).map(|i| format!("{name} line {i}\n")).collect::<String>()
                + &format!("end {name}\n");
            assert!(
                log.contains(&expected) && log.matches("begin ").count() == 1,
                "job {name} of {}: {log}",
                p["branch"]
            );
            // No job ran twice at once: each attempt began after the one before it ended.
            let attempts = j["attempts"].as_array().unwrap();
            for pair in attempts.windows(2) {
                assert!(pair[1]["started_ms"].as_i64() >= pair[0]["finished_ms"].as_i64(), "{j:#}");
                assert_eq!(pair[0]["result_reason"], "agent_lost", "{j:#}");
                lost += 1;
            }
            assert!(attempts.last().unwrap()["agent"].as_str().is_some_and(|a| a != victim || attempts.len() == 1));
        }
    }
    assert!(lost >= 1, "the killed agent's attempt was lost and run again");
    drop(agents);
    drop(second);
    drop(first);
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

#[test]
fn stopping_a_pipeline_reaches_its_job_on_an_agent() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    assert!(server.salve(&["project", "create", "halt"]).status.success());
    let token = agent_type(&server, "s1-e2e");
    let _agent = Agent::start(&server, &token, "worker");
    let long = "        - name: long\n          commands:\n            - echo started\n            - sleep 300\n";
    let yaml = pipeline(long).replace("      secrets:\n        - name: deploy-key\n", "");
    let repo = new_repo(&[(".semaphore/semaphore.yml", Some(&yaml))]);
    server.push(repo.path(), "halt", "main");
    let start = Instant::now();
    let (pid, job) = loop {
        assert!(start.elapsed() < Duration::from_secs(60), "the job never started");
        if let Some(p) = server.pipelines("halt").first() {
            let id = p["id"].as_str().unwrap().to_owned();
            let j = jobs(&shown(&server, &id)).remove(0);
            if j["agent"].is_string() && lines_so_far(&server, j["id"].as_str().unwrap()).iter().any(|l| l == "started")
            {
                break (id, j["id"].as_str().unwrap().to_owned());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stopped = server.salve(&["pipeline", "stop", &pid]);
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    // Well before the job's own end: the agent heard the stop and killed it.
    let list = server.wait_for("halt", "the stop", Duration::from_secs(20), |l| l[0]["state"] == "done");
    assert_eq!((list[0]["result"].as_str(), list[0]["result_reason"].as_str()), (Some("stopped"), Some("user")));
    let j = server.get(&format!("/api/v1/jobs/{job}"));
    assert_eq!((j["result"].as_str(), j["result_reason"].as_str()), (Some("stopped"), Some("user")), "{j:#}");
    assert_eq!(j["attempts"].as_array().unwrap().len(), 1);
}
