//! `salve init --self-heal`: wires the heal loop into a repository. Adds the seed's two
//! promotions to `.semaphore/semaphore.yml` (as text, so the file's comments and layout stay),
//! writes `.semaphore/selfheal.yml` and `.semaphore/selfheal-pr.yml`, and a commented `[heal]`
//! section in `salve.toml`. Safe to run again: what is there already is kept. Nothing is written
//! unless the pipeline still compiles afterwards.
//!
//! `--for semaphore|github|gitlab` wires the same loop into the CI a team already uses, with
//! `salve heal` in the job where the seed ran Codex: Semaphore's two promotions and pipelines, a
//! GitHub Actions `workflow_run` workflow, or GitLab CI jobs in the `.post` stage.

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
    /// The CI the heal runs in: a Salve server, or Semaphore, GitHub Actions or GitLab CI.
    #[arg(long = "for", value_enum, default_value = "salve")]
    ci: InitFor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InitFor {
    Salve,
    Semaphore,
    Github,
    Gitlab,
}

/// Installs `salve` in another CI's job when it is not on the machine already: a release
/// tarball when the team sets `SALVE_DOWNLOAD_URL`, else from source with cargo from
/// `SALVE_SOURCE` (a git URL); without either it stops and says which to set. The binary goes to
/// `$HOME/.local/bin`.
pub const INSTALL: &str = r#"export PATH="$HOME/.local/bin:$PATH"; command -v salve >/dev/null 2>&1 || { if [ -n "${SALVE_DOWNLOAD_URL:-}" ]; then mkdir -p "$HOME/.local/bin" && curl -fsSL "$SALVE_DOWNLOAD_URL" | tar -xzf - -C "$HOME/.local/bin" salve; else cargo install --locked --root "$HOME/.local" --git "${SALVE_SOURCE:?set SALVE_SOURCE to the git URL of Salve or SALVE_DOWNLOAD_URL to a release tarball as a CI variable}" salve; fi; }"#;

pub fn semaphore_selfheal_yml() -> String {
    format!(
        r#"# Written by `salve init --self-heal --for semaphore`. Runs when CI fails on a branch that is
# not a heal branch: `salve heal` reads the failed pipeline through Semaphore's API, tries the
# cheapest fix (a rerun for flaky failures, the fixers for formatting and lints, then an agent if
# configured), checks and verifies it, and pushes it to selfheal-<sha>. CI then runs there.
# The secret `salve-selfheal` holds SEMAPHORE_API_TOKEN (an API token that may read this
# project) and GITHUB_TOKEN or GITLAB_TOKEN (one that may push branches and open pull requests).
# For the agent tier add the model's key (OPENAI_API_KEY, or SALVE_MODEL_URL and SALVE_MODEL_KEY)
# to it, or keep the seed's recipe: salve heal --agent-command 'codex exec
# --dangerously-bypass-approvals-and-sandbox "$PROMPT"' (behind Salve's guards and verification).
version: v1.0
name: Self-heal
agent:
  machine:
    type: e1-standard-2
    os_image: ubuntu2204
blocks:
  - name: Heal
    task:
      secrets:
        - name: salve-selfheal
      jobs:
        - name: salve heal
          commands:
            - checkout
            - '{INSTALL}'
            - salve heal --for semaphore
"#
    )
}

pub fn semaphore_selfheal_pr_yml(base: &str) -> String {
    format!(
        r#"# Written by `salve init --self-heal --for semaphore`. Runs when CI passed on a selfheal-*
# branch: opens the pull request on GitHub or GitLab with the heal's commit message (once;
# running again finds the open one).
version: v1.0
name: Self-heal pull request
agent:
  machine:
    type: e1-standard-2
    os_image: ubuntu2204
blocks:
  - name: Pull request
    task:
      secrets:
        - name: salve-selfheal
      jobs:
        - name: salve pr create
          commands:
            - checkout
            - '{INSTALL}'
            - salve pr create --base {base}
"#
    )
}

pub fn github_workflow(ci: &[String], base: &str) -> String {
    let names = ci.iter().map(|n| format!("'{}'", n.replace('\'', "''"))).collect::<Vec<_>>().join(", ");
    format!(
        r#"# Written by `salve init --self-heal --for github`. When the CI workflow fails on a branch that
# is not a heal branch, `salve heal` reads the failed run through the Actions API, tries the
# cheapest fix (a rerun for flaky failures, the fixers, then an agent if configured), verifies
# it in a sandbox and pushes it to selfheal-<sha>. When CI passes on a selfheal-* branch, the
# pull request to {base} is opened (once).
#
# Branches pushed with the workflow's own GITHUB_TOKEN start no workflow: give a token that does
# (a fine-grained token or a GitHub App's, with contents and pull requests write) as the secret
# SELFHEAL_TOKEN. Set SALVE_DOWNLOAD_URL or SALVE_SOURCE as a repository variable (how salve is
# installed). For the agent tier add OPENAI_API_KEY (or SALVE_MODEL_URL/SALVE_MODEL_KEY) to the
# heal step's env.
name: Self-heal
on:
  workflow_run:
    workflows: [{names}]
    types: [completed]
permissions:
  contents: write
  pull-requests: write
  actions: read
env:
  SALVE_DOWNLOAD_URL: ${{{{ vars.SALVE_DOWNLOAD_URL }}}}
  SALVE_SOURCE: ${{{{ vars.SALVE_SOURCE }}}}
jobs:
  heal:
    if: github.event.workflow_run.conclusion == 'failure' && !startsWith(github.event.workflow_run.head_branch, 'selfheal-')
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{{{ github.event.workflow_run.head_sha }}}}
          fetch-depth: 2
          persist-credentials: false
      - name: salve heal
        env:
          GITHUB_TOKEN: ${{{{ secrets.SELFHEAL_TOKEN || secrets.GITHUB_TOKEN }}}}
        run: |
          # The heal runs every command in bubblewrap (Ubuntu restricts the user namespaces it needs).
          command -v bwrap >/dev/null || sudo apt-get install -y -qq bubblewrap
          sudo sysctl -q -w kernel.apparmor_restrict_unprivileged_userns=0 || true
          {INSTALL}
          salve heal --for github
  pull-request:
    if: github.event.workflow_run.conclusion == 'success' && startsWith(github.event.workflow_run.head_branch, 'selfheal-')
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{{{ github.event.workflow_run.head_sha }}}}
          persist-credentials: false
      - name: salve pr create
        env:
          GITHUB_TOKEN: ${{{{ secrets.SELFHEAL_TOKEN || secrets.GITHUB_TOKEN }}}}
        run: |
          {INSTALL}
          salve pr create --forge github --base {base} --head "${{{{ github.event.workflow_run.head_branch }}}}"
"#
    )
}

pub fn gitlab_jobs(base: &str) -> String {
    format!(
        r#"
# Written by `salve init --self-heal --for gitlab`. When a job of the pipeline fails on a branch
# that is not a heal branch, salve-heal reads the failed jobs through the API, tries the cheapest
# fix (a rerun for flaky failures, the fixers, then an agent if configured), verifies it in a
# sandbox and pushes it to selfheal-<sha>. When the pipeline passes on a selfheal-* branch,
# salve-merge-request opens the merge request to {base} (once). Give GITLAB_TOKEN (a project
# access token, api and write_repository scopes) and SALVE_DOWNLOAD_URL or SALVE_SOURCE as
# masked CI/CD variables. The heal runs every command in bubblewrap: the jobs' image needs it (and
# a runner that allows user namespaces); in a container that is the only boundary, `salve heal
# --no-sandbox` runs without it.
salve-heal:
  stage: .post
  rules:
    - if: $CI_COMMIT_BRANCH && $CI_COMMIT_BRANCH !~ /^selfheal-/
      when: on_failure
  script:
    - '{INSTALL}'
    - salve heal --for gitlab

salve-merge-request:
  stage: .post
  rules:
    - if: $CI_COMMIT_BRANCH =~ /^selfheal-/
      when: on_success
  script:
    - '{INSTALL}'
    - salve pr create --forge gitlab --base {base}
"#
    )
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
    let result = match args.ci {
        InitFor::Salve => self_heal(&args.dir, &base, SELFHEAL_YML, &selfheal_pr_yml(&base)),
        InitFor::Semaphore => self_heal(&args.dir, &base, &semaphore_selfheal_yml(), &semaphore_selfheal_pr_yml(&base)),
        InitFor::Github => github(&args.dir, &base),
        InitFor::Gitlab => gitlab(&args.dir, &base),
    };
    match result {
        Ok(done) => {
            for line in done {
                out!("{line}");
            }
            out!("");
            out!("Commit these files and push: when CI fails on a branch, the heal runs;");
            out!("when CI passes on its selfheal-* branch, a pull request to '{base}' is opened.");
            if args.ci != InitFor::Salve {
                out!("The comments in the files say which secrets and variables to set.");
            }
            0
        }
        Err(e) => {
            err!("salve init: {e}");
            1
        }
    }
}

/// Writes `text` to `path` unless it exists; says which.
fn write_new(path: &Path, text: &str, name: &str, done: &mut Vec<String>) -> Result<(), String> {
    if path.exists() {
        done.push(format!("  kept    {name} (it exists)"));
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    done.push(format!("  wrote   {name}"));
    Ok(())
}

/// GitHub Actions: a `workflow_run` workflow on the repository's CI workflows (those a push
/// runs).
fn github(dir: &Path, base: &str) -> Result<Vec<String>, String> {
    let folder = dir.join(".github/workflows");
    let mut names = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&folder)
        .map_err(|e| format!("cannot read {}: {e} (write the project's CI workflow first)", folder.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .filter(|p| p.file_stem().is_some_and(|s| s != "selfheal"))
        .collect();
    entries.sort();
    for path in entries {
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let mut sink = salve_pipeline::diag::Sink::new("workflow");
        let Some(doc) = salve_pipeline::yaml::load(&bytes, &mut sink).map(|n| n.to_json()) else { continue };
        let on = &doc["on"];
        let on_push = on.as_str() == Some("push")
            || on.as_array().is_some_and(|a| a.iter().any(|e| e == "push" || e == "pull_request"))
            || on.get("push").is_some()
            || on.get("pull_request").is_some();
        if on_push {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            // workflow_run names a workflow by its `name:`, else by its file's path.
            names.push(doc["name"].as_str().map_or_else(|| format!(".github/workflows/{stem}.yml"), str::to_owned));
        }
    }
    if names.is_empty() {
        return Err(format!(
            "no workflow in {} runs on push or pull_request: write the CI workflow first",
            folder.display()
        ));
    }
    let mut done = Vec::new();
    write_new(
        &folder.join("selfheal.yml"),
        &github_workflow(&names, base),
        ".github/workflows/selfheal.yml",
        &mut done,
    )?;
    done.push(format!("  heals   failures of {}", names.join(", ")));
    Ok(done)
}

/// GitLab CI: two jobs in the `.post` stage of `.gitlab-ci.yml`.
fn gitlab(dir: &Path, base: &str) -> Result<Vec<String>, String> {
    let path = dir.join(".gitlab-ci.yml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e} (write the project's .gitlab-ci.yml first)", path.display()))?;
    let mut done = Vec::new();
    if text.lines().any(|l| l.trim_end() == "salve-heal:") {
        done.push("  kept    .gitlab-ci.yml (its salve-heal job is there already)".into());
        return Ok(done);
    }
    let new = text.trim_end_matches('\n').to_owned() + "\n" + &gitlab_jobs(base);
    let mut sink = salve_pipeline::diag::Sink::new(".gitlab-ci.yml");
    if salve_pipeline::yaml::load(new.as_bytes(), &mut sink).is_none()
        || sink.diags.iter().any(|d| d.severity == salve_pipeline::Severity::Error)
    {
        return Err(format!(
            ".gitlab-ci.yml would not be valid YAML with the jobs added; add them by hand:\n{}",
            gitlab_jobs(base)
        ));
    }
    std::fs::write(&path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    done.push("  updated .gitlab-ci.yml: the salve-heal and salve-merge-request jobs added".into());
    Ok(done)
}

/// Wires self-healing into the repository at `dir` (its two pipelines `heal` and `pr`); returns
/// what was done, a line each.
pub fn self_heal(dir: &Path, base: &str, heal: &str, pr: &str) -> Result<Vec<String>, String> {
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
        (sem.join("selfheal.yml"), heal.to_owned(), ".semaphore/selfheal.yml"),
        (sem.join("selfheal-pr.yml"), pr.to_owned(), ".semaphore/selfheal-pr.yml"),
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
