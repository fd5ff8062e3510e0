//! `salve init --self-heal`: wires the heal loop into a repository. Adds the seed's two
//! promotions to `.semaphore/semaphore.yml` (as text, so the file's comments and layout stay),
//! writes `.semaphore/selfheal.yml` and `.semaphore/selfheal-pr.yml`, and a commented `[heal]`
//! section in `salve.toml`. Safe to run again: what is there already is kept. Nothing is written
//! unless the pipeline still compiles afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use salve_git::files::WorkTree;
use salve_pipeline::{Mode, analyze};

use crate::{err, out};

#[derive(clap::Args)]
pub struct InitArgs {
    /// Wire self-healing in (the only kind of init there is today).
    #[arg(long)]
    self_heal: bool,
    /// The branch heal pull requests go to [default: the current branch, else main].
    #[arg(long)]
    base: Option<String>,
    /// The repository [default: the current folder].
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// The seed's conditions, exactly.
/// The seed's condition, and a job's time limit too (a pipeline its time limit stopped is
/// `stopped`/`timeout`, as in Semaphore); never a user's or auto-cancel's stop.
pub const HEAL_WHEN: &str =
    "(result = 'failed' OR (result = 'stopped' AND result_reason = 'timeout')) AND branch !~ '^selfheal-.*'";
pub const PR_WHEN: &str = "result = 'passed' AND branch =~ '^selfheal-.*'";

pub const SELFHEAL_YML: &str = r#"# Written by `salve init --self-heal`. Runs when CI fails on a branch that is not a heal
# branch: `salve heal` reads the failure from the server, tries the cheapest fix (a rerun for
# infrastructure failures, the fixers for formatting and lints, then an agent if configured),
# checks and verifies it, and pushes it to selfheal-<sha>. CI then runs on that branch.
version: v1.0
name: Self-heal
agent:
  machine:
    type: e1-standard-2
blocks:
  - name: Heal
    task:
      # For the agent tier, a secret with the model's key (OPENAI_API_KEY, or SALVE_MODEL_URL
      # and SALVE_MODEL_KEY for any OpenAI-compatible server):
      # secrets:
      #   - name: model
      jobs:
        - name: salve heal
          commands:
            - checkout
            - salve heal
"#;

pub fn selfheal_pr_yml(base: &str) -> String {
    format!(
        r#"# Written by `salve init --self-heal`. Runs when CI passed on a selfheal-* branch: opens a
# pull request with the heal's commit message (once; running again finds the open one).
version: v1.0
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
            - 'salve pr create --base {base} --title "$(git log -1 --format=%s)" --body "$(git log -1 --format=%b)"'
"#
    )
}

const SALVE_TOML_HEAL: &str = r#"
# How `salve heal` heals this repository (written by `salve init --self-heal`; every key is
# optional, the values shown are the defaults).
[heal]
# max_attempts_per_day = 3     # heals per branch in 24 hours
# max_open_prs = 5             # open heal pull requests per project
# max_diff_lines = 400         # lines a fix may add plus remove
# protected_paths = []         # globs no fix may touch, e.g. ["migrations/**"]
# allow_ci_edits = false       # let fixes change .semaphore/ and selfheal/
# builtin_fixers = true        # cargo fmt, clippy --fix, ruff, black, prettier, eslint, gofmt, ...
#
# A fixer of your own, tried before the built-ins:
# [[heal.fixer]]
# name = "sort the word list"
# when_command = 'check-sorted'   # a regular expression on the failing command
# when_log = 'not sorted'         # and/or one on a line of the failure's excerpt
# run = ["sort -o words.txt words.txt"]
#
# An external agent for failures no fixer answers; the prompt is in $PROMPT, rendered from
# selfheal/prompt-template.txt ($VAR and ${VAR} from the job's variables) when it exists:
# [heal.agent]
# command = 'codex exec --dangerously-bypass-approvals-and-sandbox "$PROMPT"'
"#;

pub fn run(args: &InitArgs) -> u8 {
    if !args.self_heal {
        err!("salve init: say what to set up: --self-heal");
        return 2;
    }
    let base =
        args.base.clone().or_else(|| salve_git::Repo::new(&args.dir).current_branch()).unwrap_or_else(|| "main".into());
    match self_heal(&args.dir, &base) {
        Ok(done) => {
            for line in done {
                out!("{line}");
            }
            out!("");
            out!("Commit these files and push: when CI fails on a branch, the heal pipeline runs;");
            out!("when CI passes on its selfheal-* branch, a pull request to '{base}' is opened.");
            0
        }
        Err(e) => {
            err!("salve init: {e}");
            1
        }
    }
}

/// Wires self-healing into the repository at `dir`; returns what was done, a line each.
pub fn self_heal(dir: &Path, base: &str) -> Result<Vec<String>, String> {
    if !salve_git::Repo::valid_branch(base) {
        return Err(format!("'{base}' is not a valid branch name"));
    }
    let sem = dir.join(".semaphore");
    let main = sem.join("semaphore.yml");
    let text = std::fs::read_to_string(&main).map_err(|e| {
        format!("cannot read {}: {e} (write the project's CI pipeline first; `salve lint` checks it)", main.display())
    })?;
    let tree = WorkTree::new(dir);
    let analysis = analyze(".semaphore/semaphore.yml", text.as_bytes(), &tree, &BTreeMap::new(), Mode::Lint);
    let errors = analysis.has_errors();
    let Some(pipeline) = analysis.pipeline.filter(|_| !errors) else {
        return Err(".semaphore/semaphore.yml has errors: fix them first (`salve lint` shows them)".into());
    };
    let mut done = Vec::new();
    let has = |file: &str| pipeline.promotions.iter().any(|p| p.pipeline_file == file);
    let mut wanted = Vec::new();
    if !has("selfheal.yml") {
        wanted.push(("Self-heal", "selfheal.yml", HEAL_WHEN));
    }
    if !has("selfheal-pr.yml") {
        wanted.push(("Open pull request", "selfheal-pr.yml", PR_WHEN));
    }
    let new_text = if wanted.is_empty() {
        done.push("  kept    .semaphore/semaphore.yml (its promotions are there already)".to_owned());
        None
    } else {
        let t = add_promotions(&text, &wanted);
        let check = analyze(".semaphore/semaphore.yml", t.as_bytes(), &tree, &BTreeMap::new(), Mode::Lint);
        if check.has_errors() {
            return Err(format!(
                "adding the promotions would break .semaphore/semaphore.yml (an unusual layout?); nothing was written. Add them by hand:\n{}",
                add_promotions("", &wanted)
            ));
        }
        done.push(format!("  updated .semaphore/semaphore.yml: {} promotion(s) added", wanted.len()));
        Some(t)
    };
    let files = [
        (sem.join("selfheal.yml"), SELFHEAL_YML.to_owned(), ".semaphore/selfheal.yml"),
        (sem.join("selfheal-pr.yml"), selfheal_pr_yml(base), ".semaphore/selfheal-pr.yml"),
    ];
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    if let Some(t) = new_text {
        write(&main, &t)?;
    }
    for (path, text, name) in &files {
        if path.exists() {
            done.push(format!("  kept    {name} (it exists)"));
        } else {
            write(path, text)?;
            done.push(format!("  wrote   {name}"));
        }
    }
    let toml = dir.join("salve.toml");
    let current = std::fs::read_to_string(&toml).unwrap_or_default();
    if current.lines().any(|l| l.trim() == "[heal]" || l.trim_start().starts_with("[heal."))
        || current.contains("# [heal]")
        || current.contains("\n[heal]")
    {
        done.push("  kept    salve.toml (it has a [heal] section)".to_owned());
    } else {
        write(&toml, &(current.clone() + SALVE_TOML_HEAL))?;
        done.push(format!(
            "  {} salve.toml: a commented [heal] section",
            if current.is_empty() { "wrote  " } else { "updated" }
        ));
    }
    Ok(done)
}

/// The file's text with `promotions` appended to its top-level `promotions:` list (in the
/// list's own indentation), or in a new one at the end.
fn add_promotions(text: &str, promotions: &[(&str, &str, &str)]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let top = lines.iter().position(|l| l.trim_end() == "promotions:");
    let item = |indent: &str, (name, file, when): &(&str, &str, &str)| {
        format!(
            "{indent}- name: {name}\n{indent}  pipeline_file: {file}\n{indent}  auto_promote:\n{indent}    when: \"{when}\"\n"
        )
    };
    let Some(start) = top else {
        let mut out = text.trim_end_matches('\n').to_owned();
        out.push_str("\npromotions:\n");
        for p in promotions {
            out.push_str(&item("  ", p));
        }
        return out;
    };
    // The section ends at the next line that starts a top-level key.
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.is_empty() && !l.starts_with([' ', '-', '#', '\t']))
        .map_or(lines.len(), |i| start + 1 + i);
    let indent = lines[start + 1..end]
        .iter()
        .find(|l| l.trim_start().starts_with("- "))
        .map_or("  ".to_owned(), |l| l[..l.len() - l.trim_start().len()].to_owned());
    // Insert after the section's last non-blank line.
    let last = (start..end).rev().find(|&i| !lines[i].trim().is_empty()).unwrap_or(start);
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        out.push_str(l);
        out.push('\n');
        if i == last {
            for p in promotions {
                out.push_str(&item(&indent, p));
            }
        }
    }
    out
}
