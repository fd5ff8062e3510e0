//! The heal corpus (`tests/heal_corpus.toml`): every case a small project with a green commit
//! and a breaking commit of a real failure class, pushed through one `salve serve`, all at once.
//! Each must end as it should: mechanical failures healed by a verified pull request with zero
//! model tokens, flaky and infrastructure failures rerun with no pull request, environment
//! failures left alone, logic bugs (no model here) with no pull request and a report that says
//! what an agent would need, test-weakening agents refused with the rule named. The per-kind
//! table is printed (run with `--nocapture`) and written to `target/heal-corpus.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::serve::{Server, commit, git};

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    kind: String,
    class: String,
    expect: String,
    #[serde(default)]
    rule: Option<String>,
    commands: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    salve_toml: Option<String>,
    green: BTreeMap<String, String>,
    #[serde(rename = "break")]
    broken: BTreeMap<String, String>,
}

const HEAL_YML: &str = "version: v1.0\nname: Self-heal\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: Heal\n    task:\n      jobs:\n        - name: salve heal\n          commands:\n            - checkout\n            - salve heal\n";
const PR_YML: &str = "version: v1.0\nname: PR\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: PR\n    task:\n      jobs:\n        - name: pr\n          commands:\n            - checkout\n            - salve pr create --base main --title \"$(git log -1 --format=%s)\"\n";

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The case's CI pipeline with `salve init --self-heal`'s two promotions.
fn pipeline(case: &Case) -> String {
    let env: String = case
        .env
        .iter()
        .map(|(k, v)| format!("            - name: {k}\n              value: {}\n", quoted(v)))
        .collect();
    let env = if env.is_empty() { String::new() } else { format!("          env_vars:\n{env}") };
    let commands: String = case.commands.iter().map(|c| format!("            - {}\n", quoted(c))).collect();
    format!(
        "version: v1.0\nname: CI\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: Check\n    task:\n      jobs:\n        - name: check\n{env}          commands:\n            - checkout\n{commands}promotions:\n  - name: Self-heal\n    pipeline_file: selfheal.yml\n    auto_promote:\n      when: \"(result = 'failed' OR (result = 'stopped' AND result_reason = 'timeout')) AND branch !~ '^selfheal-.*'\"\n  - name: Open pull request\n    pipeline_file: selfheal-pr.yml\n    auto_promote:\n      when: \"result = 'passed' AND branch =~ '^selfheal-.*'\"\n"
    )
}

fn job_log(server: &Server, pipeline: &Value) -> String {
    let p = server.get(&format!("/api/v1/pipelines/{}", pipeline["id"].as_str().unwrap_or("")));
    let job = p["blocks"][0]["jobs"][0]["id"].as_str().unwrap_or("").to_owned();
    let log = server.get(&format!("/api/v1/jobs/{job}/logs?tail=40"));
    log["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| format!("    {}\n", l["text"].as_str().unwrap_or("")))
        .collect()
}

/// What went wrong with one case, if anything.
fn judge(server: &Server, case: &Case, sha: &str, list: &[Value]) -> Result<String, String> {
    let h = server.get(&format!("/api/v1/heals?project={}", case.name));
    let heal = h["heals"].as_array().and_then(|a| a.iter().find(|x| x["sha"] == sha)).ok_or("no heal")?;
    let report = &heal["report"];
    let outcome = heal["outcome"].as_str().unwrap_or("");
    let failing = list.iter().find(|p| p["name"] == "CI" && p["sha"] == sha).ok_or("no CI run of the break")?;
    let job = server.get(&format!("/api/v1/pipelines/{}", failing["id"].as_str().unwrap_or("")));
    let job_id = job["blocks"][0]["jobs"][0]["id"].as_str().unwrap_or("").to_owned();
    let failure = server.get(&format!("/api/v1/jobs/{job_id}/failure"));
    let class = failure["class"].as_str().unwrap_or("");
    let mut problems = Vec::new();
    if outcome != case.expect {
        problems.push(format!("outcome {outcome}, want {}: {}", case.expect, report["summary"]));
    }
    if class != case.class {
        problems.push(format!("class {class}, want {}", case.class));
    }
    if let Some(rule) = &case.rule {
        let rules: Vec<&str> =
            report["refusals"].as_array().into_iter().flatten().filter_map(|r| r["rule"].as_str()).collect();
        if !rules.contains(&rule.as_str()) {
            problems.push(format!("refused by {rules:?}, want {rule}"));
        }
    }
    if report["tokens"].as_u64().unwrap_or(0) > 0 {
        problems.push("spent model tokens".into());
    }
    let branch = report["heal_branch"].as_str();
    let pulls = server.get(&format!("/api/v1/pulls?project={}&state=all", case.name));
    let opened = pulls["pulls"].as_array().map_or(0, Vec::len);
    match (case.expect.as_str(), branch) {
        ("pushed", Some(b)) => {
            let ci = list.iter().find(|p| p["branch"] == b && p["name"] == "CI");
            if ci.is_none_or(|p| p["result"] != "passed") {
                problems.push(format!("CI on {b} did not pass"));
            }
            if opened != 1 {
                problems.push(format!("{opened} pull requests, want 1"));
            }
        }
        ("pushed", None) => problems.push("no heal branch".into()),
        (_, _) if opened > 0 || branch.is_some() => problems.push("pushed or opened a pull request".into()),
        _ => {}
    }
    if case.kind == "logic" && !report["summary"].as_str().unwrap_or("").contains("model") {
        problems.push(format!("the report does not say what an agent needs: {}", report["summary"]));
    }
    if problems.is_empty() {
        return Ok(format!("{outcome} ({class})"));
    }
    let heal = list.iter().find(|p| p["name"] == "Self-heal" && p["sha"] == sha);
    Err(format!(
        "{}\n  the failed job's log:\n{}  the heal's log:\n{}",
        problems.join("; "),
        job_log(server, failing),
        heal.map(|h| job_log(server, h)).unwrap_or_default()
    ))
}

#[test]
fn the_heal_corpus_ends_as_it_should() {
    let corpus: Corpus =
        toml::from_str(include_str!("../heal_corpus.toml")).expect("tests/heal_corpus.toml is a corpus");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let mut work = Vec::new();
    for case in &corpus.case {
        let created = server.salve(&["project", "create", &case.name]);
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        let ci = pipeline(case);
        let mut files: Vec<(&str, Option<&str>)> = vec![
            (".semaphore/semaphore.yml", Some(ci.as_str())),
            (".semaphore/selfheal.yml", Some(HEAL_YML)),
            (".semaphore/selfheal-pr.yml", Some(PR_YML)),
        ];
        files.extend(case.salve_toml.as_deref().map(|t| ("salve.toml", Some(t))));
        files.extend(case.green.iter().map(|(p, t)| (p.as_str(), Some(t.as_str()))));
        commit(dir.path(), &files, "green");
        server.push(dir.path(), &case.name, "HEAD:refs/heads/main");
        work.push(dir);
    }
    let limit = Duration::from_secs(600);
    let mut shas = Vec::new();
    let mut failures = Vec::new();
    for (case, dir) in corpus.case.iter().zip(&work) {
        let list =
            server.wait_for(&case.name, "the green commit's CI", limit, |l| l.iter().any(|p| p["state"] == "done"));
        if list[0]["result"] != "passed" {
            let log = job_log(&server, &list[0]);
            failures.push(format!("{}: the green commit must pass:\n{log}", case.name));
        }
        let files: Vec<(&str, Option<&str>)> =
            case.broken.iter().map(|(p, t)| (p.as_str(), Some(t.as_str()))).collect();
        commit(dir.path(), &files, "break");
        let out =
            std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(dir.path()).output().unwrap();
        shas.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        server.push(dir.path(), &case.name, "HEAD:refs/heads/main");
    }
    let mut table: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut lines = Vec::new();
    for (case, sha) in corpus.case.iter().zip(&shas) {
        let done = |l: &[Value]| {
            let healed = l.iter().any(|p| p["name"] == "Self-heal" && p["sha"] == sha.as_str() && p["state"] == "done");
            let pr_done = l.iter().any(|p| p["name"] == "PR" && p["state"] == "done");
            let branch_failed = l.iter().any(|p| {
                p["name"] == "CI"
                    && p["branch"].as_str().is_some_and(|b| b.starts_with("selfheal-"))
                    && p["result"] == "failed"
            });
            let heal_failed = l.iter().any(|p| p["name"] == "Self-heal" && p["result"] == "failed");
            healed && (case.expect != "pushed" || pr_done || branch_failed || heal_failed)
        };
        let start = std::time::Instant::now();
        let list = loop {
            let list = server.pipelines(&case.name);
            if done(&list) || start.elapsed() > limit {
                break list;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        let entry = table.entry(case.kind.clone()).or_default();
        entry.0 += 1;
        match judge(&server, case, sha, &list) {
            Ok(how) => {
                entry.1 += 1;
                lines.push(format!("| {} | {} | {how} |", case.name, case.kind));
            }
            Err(why) => {
                lines.push(format!("| {} | {} | **{}** |", case.name, case.kind, why.lines().next().unwrap_or("")));
                failures.push(format!("{}: {why}", case.name));
            }
        }
    }
    let mut out = String::from("| kind | cases | as they should |\n| --- | --- | --- |\n");
    for (kind, (n, ok)) in &table {
        out.push_str(&format!("| {kind} | {n} | {ok} |\n"));
    }
    let total: (usize, usize) = table.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    out.push_str(&format!(
        "| all | {} | {} |\n\n| case | kind | ended |\n| --- | --- | --- |\n{}\n",
        total.0,
        total.1,
        lines.join("\n")
    ));
    println!("{out}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/heal-corpus.md");
    let _ = std::fs::write(target, &out);
    assert!(
        failures.is_empty(),
        "{} case(s) did not end as they should:\n{}\n\n{out}",
        failures.len(),
        failures.join("\n")
    );
}
