//! The real-world-style pipeline suite (`tests/pipelines.toml`, `tests/pipelines/NAME`): each
//! pipeline lints with no diagnostic at all, and each whose tools are installed runs green with
//! `salve run`, every job in the sandbox. All are tried; the failures are reported together.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::run::{events, finished, repo_from, salve_run};
use super::{salve, stderr, stdout};

#[derive(Deserialize)]
struct Suite {
    pipeline: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    requires: Vec<String>,
    #[serde(default = "yes")]
    run: bool,
    #[serde(default)]
    why: Option<String>,
}

fn yes() -> bool {
    true
}

fn on_path(tool: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(tool).is_file())
}

/// What went wrong with one pipeline, or `None`; and whether it ran.
fn check(dir: &Path, entry: &Entry) -> (Option<String>, bool) {
    let repo = repo_from(Some(dir), &[]);
    let lint = salve(&["lint", "--format", "json"], repo.path());
    let diags: Vec<serde_json::Value> = serde_json::from_str(&stdout(&lint)).unwrap_or_default();
    if lint.status.code() != Some(0) || !diags.is_empty() {
        return (Some(format!("lint: {diags:#?}\n{}", stderr(&lint))), false);
    }
    if !entry.run || !entry.requires.iter().all(|t| on_path(t)) {
        return (None, false);
    }
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = salve_run(repo.path(), data.path(), &["--json"], &[]);
    let ev = events(&out);
    let result = ev.iter().rev().find(|e| e["event"] == "pipeline_finished").map(|_| finished(&ev)["result"].clone());
    if result.as_ref().and_then(|r| r.as_str()) == Some("passed") {
        return (None, true);
    }
    let logs: String = ev
        .iter()
        .filter(|e| e["event"] == "job_finished" && e["result"] != "passed")
        .filter_map(|e| {
            let id = e["job_id"].as_str()?;
            let log = std::fs::read(data.path().join("jobs").join(id).join("log")).ok()?;
            Some(format!("--- job {id}\n{}", String::from_utf8_lossy(&log)))
        })
        .collect();
    (Some(format!("run: {result:?}\n{logs}\n{}", stderr(&out))), true)
}

#[test]
fn real_world_pipelines_lint_clean_and_run_green() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let suite: Suite = toml::from_str(&std::fs::read_to_string(root.join("pipelines.toml")).unwrap()).unwrap();
    // The manifest and the folders name the same pipelines.
    let mut folders: Vec<String> = std::fs::read_dir(root.join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut named: Vec<String> = suite.pipeline.iter().map(|e| e.name.clone()).collect();
    named.sort();
    assert_eq!(folders, named, "tests/pipelines.toml and tests/pipelines/ differ");
    assert!(suite.pipeline.len() >= 20, "the suite keeps at least 20 pipelines");
    for e in suite.pipeline.iter().filter(|e| !e.run) {
        assert!(e.why.as_deref().is_some_and(|w| !w.is_empty()), "{} does not run: say why", e.name);
    }

    let dirs: Vec<(PathBuf, &Entry)> =
        suite.pipeline.iter().map(|e| (root.join("pipelines").join(&e.name), e)).collect();
    let results: Vec<(String, Option<String>, bool)> = std::thread::scope(|scope| {
        let halves: Vec<_> = dirs
            .chunks(dirs.len().div_ceil(2))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(dir, e)| {
                            let (problem, ran) = check(dir, e);
                            (e.name.clone(), problem, ran)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let ran: Vec<&str> = results.iter().filter(|r| r.2 && r.1.is_none()).map(|r| r.0.as_str()).collect();
    println!("{} pipelines lint clean; {} ran green here: {}", results.len(), ran.len(), ran.join(", "));
    let failed: Vec<String> =
        results.iter().filter_map(|(name, problem, _)| problem.as_ref().map(|p| format!("== {name}\n{p}"))).collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
