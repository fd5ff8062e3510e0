//! `salve demo`: Salve's main job on a sample project. Today: the self-heal pipeline files are
//! linted and compiled, the project's CI really runs (`salve run`, every job in the sandbox) and
//! fails on a formatting mistake, and the promotions are evaluated for that result and the other
//! outcomes that matter. Healing and pull requests join the demo as the server and heal crates
//! land (see the README).

use std::collections::BTreeMap;

use salve_git::files::WorkTree;
use salve_pipeline::model::When;
use salve_pipeline::{Mode, analyze, when};

use crate::{err, out};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the sample project in this directory instead of a temporary one.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const SEMAPHORE_YML: &str = r#"version: v1.0
name: CI
agent:
  machine:
    type: e1-standard-2
blocks:
  - name: Format
    dependencies: []
    task:
      jobs:
        - name: cargo fmt
          commands:
            - checkout
            - cargo fmt --check
  - name: Test
    dependencies: [Format]
    task:
      jobs:
        - name: cargo test
          matrix:
            - env_var: RUST_TOOLCHAIN
              values: ["stable", "beta"]
          commands:
            - checkout
            - cargo test
promotions:
  - name: Self-heal
    pipeline_file: selfheal.yml
    auto_promote:
      when: "result = 'failed' AND branch !~ '^selfheal-.*'"
  - name: Open pull request
    pipeline_file: selfheal-pr.yml
    auto_promote:
      when: "result = 'passed' AND branch =~ '^selfheal-.*'"
"#;

const SELFHEAL_YML: &str = r#"version: v1.0
name: Self-heal
agent:
  machine:
    type: e1-standard-2
blocks:
  - name: Heal
    task:
      jobs:
        - name: salve heal
          commands:
            - checkout
            - salve heal
"#;

const SELFHEAL_PR_YML: &str = r#"version: v1.0
name: Self-heal pull request
agent:
  machine:
    type: e1-standard-2
blocks:
  - name: Pull request
    task:
      jobs:
        - name: salve pr create
          commands:
            - checkout
            - 'salve pr create --base main --title "Selfheal CI: $SEMAPHORE_GIT_BRANCH" --body "Verified by CI"'
"#;

pub fn run(args: &DemoArgs) -> u8 {
    let dir =
        args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("salve-demo-{}", std::process::id())));
    let sem = dir.join(".semaphore");
    let files =
        [("semaphore.yml", SEMAPHORE_YML), ("selfheal.yml", SELFHEAL_YML), ("selfheal-pr.yml", SELFHEAL_PR_YML)];
    let sources = [("Cargo.toml", CARGO_TOML), ("src/lib.rs", LIB_RS), (".gitignore", "target/\n.salve/\n")];
    let written = std::fs::create_dir_all(&sem)
        .and_then(|()| std::fs::create_dir_all(dir.join("src")))
        .and_then(|()| files.iter().try_for_each(|(n, t)| std::fs::write(sem.join(n), t)))
        .and_then(|()| sources.iter().try_for_each(|(n, t)| std::fs::write(dir.join(n), t)));
    if let Err(e) = written {
        err!("salve demo: cannot write the sample project in {}: {e}", dir.display());
        return 2;
    }
    out!("Salve demo: a sample project with self-healing wired in, at {}", dir.display());
    out!("");
    let tree = WorkTree::new(&dir);
    let mut main_plan = None;
    for (name, text) in files {
        let rel = format!(".semaphore/{name}");
        let a = analyze(&rel, text.as_bytes(), &tree, &BTreeMap::new(), Mode::Compile);
        if a.has_errors() {
            for d in &a.diagnostics {
                err!("{}", salve_pipeline::diag::render(d, Some(text)));
            }
            return 1;
        }
        let plan = a.plan;
        let jobs: usize = plan.as_ref().map_or(0, |p| p.blocks.iter().map(|b| b.jobs.len()).sum());
        out!("  lint + compile {rel:<30} ok  ({jobs} job(s))");
        if name == "semaphore.yml" {
            main_plan = plan.zip(a.pipeline);
        }
    }
    let Some((plan, pipeline)) = main_plan else { return 1 };
    out!("");
    out!("CI pipeline '{}':", plan.name);
    for b in &plan.blocks {
        let deps = if b.dependencies.is_empty() {
            "starts first".to_owned()
        } else {
            format!("after {}", b.dependencies.join(", "))
        };
        out!("  block {:<8} ({deps})", b.name);
        for j in &b.jobs {
            out!("    job {:<40} {} command(s)", j.name, j.commands.len());
        }
    }
    out!("");
    let result = run_ci(&dir);
    out!("");
    out!("Promotions, evaluated with Semaphore's `when` rules:");
    let mut cases: Vec<(&str, &str)> = Vec::new();
    if let Some(r) = result.as_deref() {
        cases.push(("main", r));
    }
    cases.extend([
        ("main", "failed"),
        ("main", "passed"),
        ("selfheal-3f2a9c1", "failed"),
        ("selfheal-3f2a9c1", "passed"),
    ]);
    let this_run = cases.first().copied().filter(|_| result.is_some());
    let cases: Vec<(&str, &str)> =
        cases.iter().enumerate().filter(|(i, c)| !cases[..*i].contains(c)).map(|(_, c)| *c).collect();
    for &(branch, result) in &cases {
        let mut params = when::Params::new();
        params.insert("branch".into(), branch.into());
        params.insert("tag".into(), "".into());
        params.insert("pull_request".into(), "".into());
        params.insert("result".into(), result.into());
        params.insert("result_reason".into(), if result == "failed" { "test" } else { "" }.into());
        let fired: Vec<&str> = pipeline
            .promotions
            .iter()
            .filter(|p| {
                p.auto_promote.as_ref().is_some_and(|c| match &c.when {
                    When::Bool(b) => *b,
                    When::Expr(e) => when::evaluate(e, &params, &when::NoFunctions, false).unwrap_or(false),
                })
            })
            .map(|p| p.name.as_str())
            .collect();
        let outcome =
            if fired.is_empty() { "nothing fires".to_owned() } else { format!("starts: {}", fired.join(", ")) };
        let this = if Some((branch, result)) == this_run { "   <- this run" } else { "" };
        out!("  branch {branch:<18} result {result:<7} -> {outcome}{this}");
    }
    out!("");
    out!("What runs today: the pipeline language, the `when` language, pipelines on this machine");
    out!("(`salve run`), the failure report above, and the CI server with its MCP endpoint");
    out!("(`salve serve`). Not yet: the heal pipeline and the pull request; they arrive with the");
    out!("self-heal work (see README.md, \"Status\").");
    0
}

const CARGO_TOML: &str = "[package]\nname = \"sample\"\nversion = \"0.1.0\"\nedition = \"2021\"\n";

/// Correct code, badly formatted: `cargo fmt --check` fails, `cargo fmt` would fix it.
const LIB_RS: &str = "pub fn add(a:i32,b:i32)->i32{a+b}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 2), 4);\n    }\n}\n";

/// Prints the failure report the run kept for a failed job: what a heal starts from.
fn why(report: &std::path::Path) {
    let Some(r) = std::fs::read(report).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) else {
        return;
    };
    out!(
        "      why: {} in `{}` (fingerprint {})",
        r["class"].as_str().unwrap_or("unknown").replace('_', " "),
        r["failing_command"].as_str().unwrap_or("?"),
        r["fingerprint"].as_str().unwrap_or("")
    );
    for l in r["excerpt"].as_array().into_iter().flatten().take(6) {
        out!("      {:>5} | {}", l["line"], l["text"].as_str().unwrap_or(""));
    }
}

/// Commits the sample project and runs its CI with `salve run`; returns the pipeline result.
fn run_ci(dir: &std::path::Path) -> Option<String> {
    let repo = salve_git::Repo::new(dir);
    let committed =
        repo.run(&["init", "--quiet", "-b", "main"]).and_then(|_| repo.run(&["add", "-A"])).and_then(|_| {
            repo.run(&[
                "-c",
                "user.name=Salve Demo",
                "-c",
                "user.email=demo@salve.invalid",
                "commit",
                "--quiet",
                "-m",
                "Sample project",
            ])
        });
    if let Err(e) = committed {
        err!("salve demo: cannot commit the sample project: {e}");
        return None;
    }
    if let Err(e) = salve_runner::find_bwrap() {
        out!("Running the CI pipeline needs the sandbox: {e}");
        return None;
    }
    out!("Running the CI pipeline for real (salve run, every job in the sandbox):");
    let Ok(exe) = std::env::current_exe() else { return None };
    let data = dir.join(".salve");
    let out = std::process::Command::new(exe)
        .args(["run", "--branch", "main", "--json"])
        .current_dir(dir)
        .env("SALVE_DATA_DIR", &data)
        .output()
        .ok()?;
    let mut result = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let s = |k: &str| ev[k].as_str().unwrap_or("").to_owned();
        match s("event").as_str() {
            "job_finished" => {
                out!("  job {:<38} {:<7} {}", s("job"), s("result"), s("summary"));
                if s("result") != "passed" {
                    out!("      log: SALVE_DATA_DIR={} salve logs {}", data.display(), s("job_id"));
                    why(&data.join("jobs").join(s("job_id")).join("failure.json"));
                }
            }
            "block_finished" if s("result") == "canceled" => {
                out!("  block {:<36} canceled (a block it depends on failed)", s("block"));
            }
            "pipeline_finished" => {
                let reason = ev["result_reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
                out!("  pipeline: {}{reason}", s("result"));
                result = Some(s("result"));
            }
            _ => {}
        }
    }
    if result.is_none() {
        err!("{}", String::from_utf8_lossy(&out.stderr));
    }
    result
}
