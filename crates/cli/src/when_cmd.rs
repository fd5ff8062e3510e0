//! `salve when eval|list-inputs|reduce`: the `when` language with the JSON contracts of
//! Semaphore's `when` CLI, so tools written for it work unchanged.

use std::path::PathBuf;

use salve_git::Repo;
use salve_pipeline::when::{self, NoFunctions, Params, change_in};

use crate::{err, out};

#[derive(clap::Subcommand)]
pub enum WhenCommand {
    /// Evaluate a condition; prints `true`, `false` or `{"error": "..."}`; exit 0, 0 or 1.
    Eval {
        expression: String,
        /// Keyword values as a JSON object, e.g. '{"branch":"main","result":"failed"}'.
        #[arg(long)]
        params: Option<String>,
        /// Check function names and arities without calling them (they read as false).
        #[arg(long)]
        dry_run: bool,
        /// Evaluate `change_in` against this git checkout (the build is read from the
        /// SEMAPHORE_GIT_* variables, or from the checkout's branch and HEAD).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// The pipeline file `change_in` patterns are relative to.
        #[arg(long, default_value = ".semaphore/semaphore.yml")]
        pipeline_file: String,
    },
    /// For each expression in the input JSON array, list the inputs it needs.
    ListInputs {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// Reduce each `{expression, inputs}` of the input JSON array as far as its inputs allow.
    Reduce {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
}

pub fn run(cmd: WhenCommand) -> u8 {
    match cmd {
        WhenCommand::Eval { expression, params, dry_run, repo, pipeline_file } => {
            eval(&expression, params.as_deref(), dry_run, repo, &pipeline_file)
        }
        WhenCommand::ListInputs { input, output } => batch(&input, &output, |v| match v.as_str() {
            Some(expr) => when::list_inputs_json(expr),
            None => serde_json::json!({ "inputs": [], "error": "each entry must be an expression string" }),
        }),
        WhenCommand::Reduce { input, output } => batch(&input, &output, when::reduce_json),
    }
}

fn print_error(msg: &str) -> u8 {
    out!("{}", serde_json::json!({ "error": msg }));
    1
}

fn eval(expr: &str, params: Option<&str>, dry_run: bool, repo: Option<PathBuf>, pipeline_file: &str) -> u8 {
    let params: Params = match params.map(serde_json::from_str::<serde_json::Value>) {
        None => Params::new(),
        Some(Ok(serde_json::Value::Object(map))) => map,
        Some(Ok(_)) => return print_error("--params must be a JSON object, like {\"branch\": \"main\"}"),
        Some(Err(e)) => return print_error(&format!("--params is not valid JSON: {e}")),
    };
    let res = match repo {
        None => when::evaluate(expr, &params, &NoFunctions, dry_run),
        Some(dir) => {
            let repo = Repo::new(dir);
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            let build = change_in::Build {
                ref_type: env("SEMAPHORE_GIT_REF_TYPE").unwrap_or_else(|| "branch".into()),
                branch: env("SEMAPHORE_GIT_BRANCH").or_else(|| repo.current_branch()).unwrap_or_default(),
                sha: env("SEMAPHORE_GIT_SHA").or_else(|| repo.resolve("HEAD")).unwrap_or_default(),
                commit_range: env("SEMAPHORE_GIT_COMMIT_RANGE").unwrap_or_default(),
                pr_branch: env("SEMAPHORE_GIT_PR_BRANCH").unwrap_or_default(),
                pr_slug: env("SEMAPHORE_GIT_PR_SLUG").unwrap_or_default(),
                repo_slug: env("SEMAPHORE_GIT_REPO_SLUG").unwrap_or_default(),
                pipeline_file: pipeline_file.trim_start_matches('/').to_owned(),
                in_promotion: false,
            };
            when::evaluate(expr, &params, &change_in::ChangeIn { build, git: &repo }, dry_run)
        }
    };
    match res {
        Ok(b) => {
            out!("{b}");
            0
        }
        Err(e) => print_error(e.message()),
    }
}

fn batch(input: &PathBuf, output: &PathBuf, f: impl Fn(&serde_json::Value) -> serde_json::Value) -> u8 {
    let text = match std::fs::read_to_string(input) {
        Ok(t) => t,
        Err(e) => {
            err!("salve when: cannot read {}: {e}", input.display());
            return 2;
        }
    };
    let items: Vec<serde_json::Value> = match serde_json::from_str(&text) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(_) => {
            err!("salve when: {} must hold a JSON array", input.display());
            return 1;
        }
        Err(e) => {
            err!("salve when: {} is not valid JSON: {e}", input.display());
            return 1;
        }
    };
    let results: Vec<serde_json::Value> = items.iter().map(f).collect();
    let body = serde_json::to_string(&results).unwrap_or_else(|_| "[]".into());
    if let Err(e) = std::fs::write(output, body) {
        err!("salve when: cannot write {}: {e}", output.display());
        return 2;
    }
    0
}
