//! `salve demo`: Salve's main job on a sample project. Today that is the front half of the
//! loop: the self-heal pipeline files are linted and compiled, and the two promotions are
//! evaluated for the outcomes that matter. Running pipelines, healing and pull requests join
//! the demo as the runner, server and heal crates land (see the README).

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
    if let Err(e) =
        std::fs::create_dir_all(&sem).and_then(|()| files.iter().try_for_each(|(n, t)| std::fs::write(sem.join(n), t)))
    {
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
    out!("Promotions, evaluated with Semaphore's `when` rules:");
    let cases =
        [("main", "failed"), ("main", "passed"), ("selfheal-3f2a9c1", "failed"), ("selfheal-3f2a9c1", "passed")];
    for (branch, result) in cases {
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
        out!("  branch {branch:<18} result {result:<7} -> {outcome}");
    }
    out!("");
    out!("What runs today: the pipeline language, the `when` language and these checks.");
    out!("Not yet: running the jobs, the heal pipeline and the pull request; they arrive with the");
    out!("runner, server and self-heal work (see README.md, \"Status\").");
    0
}
