//! How a failed job of another CI runs again, read from that CI's own file in the checkout: a
//! GitHub Actions job's `run` steps (`.github/workflows/*.yml`), a GitLab CI job's
//! `before_script` and `script` (`.gitlab-ci.yml`), with their literal variables. Steps that use
//! an action, and the heal's own steps, are not rerun: the job's machine has what the actions
//! set up. What cannot run outside that CI (a `${{ }}` expression) is an error that says to give
//! the commands with `--command`.

use std::path::Path;
use std::time::Duration;

use salve_heal::verify::JobCommands;
use serde_json::{Map, Value};

/// A YAML file of the checkout, as JSON.
fn load(repo: &Path, file: &str) -> Result<Value, String> {
    // The file's path may come from an API's answer: only a file of the repository is read.
    use salve_pipeline::FileSource as _;
    let bytes = salve_git::files::WorkTree::new(repo).read(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let mut sink = salve_pipeline::diag::Sink::new(file);
    let node = salve_pipeline::yaml::load(&bytes, &mut sink);
    match (node, sink.diags.iter().find(|d| d.severity == salve_pipeline::Severity::Error)) {
        (Some(n), None) => Ok(n.to_json()),
        (_, Some(d)) => Err(format!("{file} is not valid YAML: {}", d.message)),
        (None, None) => Err(format!("{file} is empty")),
    }
}

/// Literal variables of an `env:`/`variables:` map; values with expressions are left to the
/// job's environment (the CI set them when it ran the heal's own job too).
fn literal_env(v: Option<&Value>, out: &mut Vec<(String, String)>) {
    for (k, v) in v.and_then(Value::as_object).into_iter().flatten() {
        let value = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            // GitLab's `{value: ..., description: ...}`.
            Value::Object(o) => match o.get("value") {
                Some(Value::String(s)) => s.clone(),
                _ => continue,
            },
            _ => continue,
        };
        if value.contains("${{") || !valid_name(k) {
            continue;
        }
        out.retain(|(n, _)| n != k);
        out.push((k.clone(), value));
    }
}

fn valid_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a command is the heal's own (`salve heal`, `salve pr`): never rerun.
fn is_salve(command: &str) -> bool {
    let mut words = command.split_whitespace().skip_while(|w| w.contains('=') && !w.starts_with('-'));
    let first = words.next().unwrap_or("");
    (first == "salve" || first.ends_with("/salve")) && matches!(words.next(), Some("heal" | "pr"))
}

/// A GitHub Actions job name as the API says it: `key`, its `name:`, or either with a matrix
/// suffix (`test (3.12, ubuntu-latest)`).
fn names_match(api_name: &str, candidate: &str) -> bool {
    api_name == candidate || api_name.strip_prefix(candidate).is_some_and(|rest| rest.starts_with(" ("))
}

/// The failed GitHub Actions job `name` of `workflow` (its path in the repository).
pub fn github_job(repo: &Path, workflow: &str, name: &str) -> Result<JobCommands, String> {
    let doc = load(repo, workflow)?;
    let jobs = doc.get("jobs").and_then(Value::as_object).ok_or_else(|| format!("{workflow} has no jobs"))?;
    let (key, job) = jobs
        .iter()
        .find(|(k, j)| {
            names_match(name, k) || j.get("name").and_then(Value::as_str).is_some_and(|n| names_match(name, n))
        })
        .ok_or_else(|| format!("{workflow} has no job named '{name}'"))?;
    let mut env = Vec::new();
    literal_env(doc.get("env"), &mut env);
    literal_env(job.get("env"), &mut env);
    let default_dir =
        job.pointer("/defaults/run/working-directory").or_else(|| doc.pointer("/defaults/run/working-directory"));
    let default_shell = job.pointer("/defaults/run/shell").or_else(|| doc.pointer("/defaults/run/shell"));
    let mut commands = Vec::new();
    for (i, step) in job.get("steps").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let Some(run) = step.get("run").and_then(Value::as_str) else { continue };
        let condition =
            step.get("if").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default();
        if ["failure()", "always()", "cancelled()"].iter().any(|c| condition.contains(c)) || is_salve(run) {
            continue;
        }
        let step_name =
            step.get("name").and_then(Value::as_str).map_or_else(|| format!("step {}", i + 1), str::to_owned);
        if run.contains("${{") {
            return Err(format!(
                "job '{key}' step '{step_name}' uses a ${{{{ }}}} expression, which only GitHub evaluates: \
                 give the job's commands with --command"
            ));
        }
        let mut step_env = Vec::new();
        literal_env(step.get("env"), &mut step_env);
        let dir = step.get("working-directory").or(default_dir).and_then(Value::as_str);
        // Each step is a script of its own, run as GitHub runs it: `bash -e` when no shell is
        // named, `bash -eo pipefail` for `shell: bash`, `sh -e` for `sh`.
        let shell = step.get("shell").or(default_shell).and_then(Value::as_str);
        let program = match shell {
            None => "bash --noprofile --norc -e",
            Some("bash") => "bash --noprofile --norc -eo pipefail",
            Some("sh") => "sh -e",
            Some(other) => {
                return Err(format!(
                    "job '{key}' step '{step_name}' runs in `{other}`, which Salve does not rerun: give the job's commands with --command"
                ));
            }
        };
        let mut command = String::new();
        for (k, v) in &step_env {
            command.push_str(&format!("{k}={} ", salve_heal::verify::shell_quote(v)));
        }
        command.push_str(&format!("{program} -c {}", salve_heal::verify::shell_quote(run.trim_end())));
        commands.push(match dir {
            Some(d) if !d.contains("${{") => format!("(cd {} && {command})", salve_heal::verify::shell_quote(d)),
            _ => command,
        });
    }
    if commands.is_empty() {
        return Err(format!("job '{key}' of {workflow} has no run steps to rerun: give them with --command"));
    }
    let minutes = job.get("timeout-minutes").and_then(Value::as_u64).unwrap_or(360);
    Ok(JobCommands {
        name: name.to_owned(),
        commands,
        env,
        time_limit: Duration::from_secs(minutes.max(1) * 60),
        ..Default::default()
    })
}

/// GitLab's keywords that are not jobs.
const GITLAB_KEYWORDS: &[&str] = &[
    "default",
    "include",
    "stages",
    "variables",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

/// A GitLab job's key with `extends` followed (local jobs and hidden `.templates` only).
fn gitlab_resolved(doc: &Map<String, Value>, key: &str, depth: usize) -> Map<String, Value> {
    let Some(job) = doc.get(key).and_then(Value::as_object) else { return Map::new() };
    let mut merged = Map::new();
    if depth < 10 {
        let parents: Vec<&str> = match job.get("extends") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for p in parents {
            merged.extend(gitlab_resolved(doc, p, depth + 1));
        }
    }
    merged.extend(job.clone());
    merged
}

/// A script entry: a string, or a list of strings (nested lists flattened, as GitLab does).
fn script(v: Option<&Value>, out: &mut Vec<String>) {
    match v {
        Some(Value::String(s)) => out.push(s.clone()),
        Some(Value::Array(a)) => a.iter().for_each(|x| script(Some(x), out)),
        _ => {}
    }
}

/// The failed GitLab CI job `name` of `file` (`.gitlab-ci.yml`, or `CI_CONFIG_PATH`).
pub fn gitlab_job(repo: &Path, file: &str, name: &str) -> Result<JobCommands, String> {
    let doc = load(repo, file)?;
    let doc = doc.as_object().ok_or_else(|| format!("{file} is not a map of jobs"))?;
    // `parallel: matrix` jobs are named `key: [a, b]`, `parallel: N` ones `key 1/3`.
    let key = [name, name.split(": [").next().unwrap_or(name), name.rsplit_once(' ').map_or(name, |(k, _)| k)]
        .into_iter()
        .find(|k| !GITLAB_KEYWORDS.contains(k) && !k.starts_with('.') && doc.get(*k).is_some_and(Value::is_object))
        .ok_or_else(|| format!("{file} has no job named '{name}'"))?;
    let job = gitlab_resolved(doc, key, 0);
    let mut env = Vec::new();
    literal_env(doc.get("variables"), &mut env);
    literal_env(job.get("variables"), &mut env);
    let mut commands = Vec::new();
    let before = job
        .get("before_script")
        .or_else(|| doc.get("default").and_then(|d| d.get("before_script")))
        .or_else(|| doc.get("before_script"));
    script(before, &mut commands);
    let mut own = Vec::new();
    script(job.get("script"), &mut own);
    own.retain(|c| !is_salve(c));
    if own.is_empty() {
        return Err(format!(
            "job '{key}' of {file} has no script to rerun (an include Salve does not read?): give it with --command"
        ));
    }
    commands.extend(own);
    let limit =
        job.get("timeout").and_then(Value::as_str).and_then(gitlab_duration).unwrap_or(Duration::from_secs(3600));
    Ok(JobCommands { name: name.to_owned(), commands, env, time_limit: limit, ..Default::default() })
}

/// GitLab's `timeout: 1h 30m` (hours, minutes, seconds).
fn gitlab_duration(s: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    for word in s.split_whitespace().flat_map(|w| {
        let split = w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len());
        [&w[..split], &w[split..]]
    }) {
        if word.is_empty() {
            continue;
        }
        if word.chars().all(|c| c.is_ascii_digit()) {
            number = word.to_owned();
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total += n * match word.trim_end_matches('s').to_ascii_lowercase().as_str() {
            "h" | "hr" | "hour" => 3600,
            "m" | "min" | "minute" => 60,
            "" | "sec" | "second" => 1,
            _ => return None,
        };
    }
    (total > 0).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn repo(file: &str, text: &str) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
        let d = tempfile::tempdir()?;
        let p = d.path().join(file);
        std::fs::create_dir_all(p.parent().ok_or("no parent")?)?;
        std::fs::write(p, text)?;
        Ok(d)
    }

    #[test]
    fn a_github_job_reruns_its_run_steps_only() -> R {
        let wf = r#"
name: CI
on: [push]
env:
  CARGO_TERM_COLOR: always
  FROM_SECRET: ${{ secrets.X }}
jobs:
  lint:
    name: Lint
    runs-on: ubuntu-latest
    timeout-minutes: 15
    env:
      RUSTFLAGS: -D warnings
    steps:
      - uses: actions/checkout@v4
      - uses: dtolnay/rust-toolchain@stable
      - name: Format
        run: cargo fmt --check
      - name: Lint
        working-directory: crates/app
        shell: bash
        env:
          LEVEL: "2"
        run: |
          cargo clippy
          echo done
      - name: Self-heal
        if: ${{ failure() }}
        run: salve heal --for github
      - run: SALVE_X=1 salve pr create
"#;
        let d = repo(".github/workflows/ci.yml", wf)?;
        let j = github_job(d.path(), ".github/workflows/ci.yml", "Lint")?;
        assert_eq!(
            j.commands,
            vec![
                "bash --noprofile --norc -e -c 'cargo fmt --check'".to_owned(),
                "(cd 'crates/app' && LEVEL='2' bash --noprofile --norc -eo pipefail -c 'cargo clippy\necho done')"
                    .to_owned()
            ]
        );
        assert_eq!(
            j.env,
            vec![("CARGO_TERM_COLOR".into(), "always".into()), ("RUSTFLAGS".into(), "-D warnings".into())]
        );
        assert_eq!(j.time_limit, Duration::from_secs(900));
        // By key, and with a matrix suffix.
        assert!(github_job(d.path(), ".github/workflows/ci.yml", "lint (stable, ubuntu)").is_ok());
        let e = github_job(d.path(), ".github/workflows/ci.yml", "build").err().ok_or("an error was expected")?;
        assert!(e.contains("no job named 'build'"), "{e}");
        Ok(())
    }

    #[test]
    fn github_expressions_say_to_give_the_commands() -> R {
        let wf = "jobs:\n  t:\n    steps:\n      - run: pytest -k ${{ matrix.k }}\n";
        let d = repo("w.yml", wf)?;
        let e = github_job(d.path(), "w.yml", "t").err().ok_or("an error was expected")?;
        assert!(e.contains("${{ }}") && e.contains("--command"), "{e}");
        let d = repo("w.yml", "jobs:\n  t:\n    steps:\n      - uses: a/b@v1\n")?;
        assert!(github_job(d.path(), "w.yml", "t").err().ok_or("an error was expected")?.contains("no run steps"));
        let d = repo("w.yml", "jobs:\n  t:\n    steps:\n      - run: Get-Item .\n        shell: pwsh\n")?;
        assert!(github_job(d.path(), "w.yml", "t").err().ok_or("an error was expected")?.contains("runs in `pwsh`"));
        let e = github_job(d.path(), "/etc/passwd", "t").err().ok_or("an error was expected")?;
        assert!(e.contains("outside the repository"), "{e}");
        let d = repo("w.yml", "jobs: [\n")?;
        assert!(github_job(d.path(), "w.yml", "t").err().ok_or("an error was expected")?.contains("not valid YAML"));
        Ok(())
    }

    #[test]
    fn a_gitlab_job_reruns_its_scripts_with_extends_and_defaults() -> R {
        let ci = r#"
stages: [test, heal]
variables:
  PIP_CACHE_DIR: .pip
default:
  before_script:
    - python -V
.base:
  variables:
    LEVEL: "1"
  script:
    - echo base
lint:
  extends: .base
  stage: test
  timeout: 1h 30m
  script:
    - ruff check .
    - [ruff format --check ., echo nested]
selfheal:
  stage: heal
  when: on_failure
  script:
    - salve heal --for gitlab
"#;
        let d = repo(".gitlab-ci.yml", ci)?;
        let j = gitlab_job(d.path(), ".gitlab-ci.yml", "lint")?;
        assert_eq!(j.commands, vec!["python -V", "ruff check .", "ruff format --check .", "echo nested"]);
        assert_eq!(j.env, vec![("PIP_CACHE_DIR".into(), ".pip".into()), ("LEVEL".into(), "1".into())]);
        assert_eq!(j.time_limit, Duration::from_secs(5400));
        assert!(gitlab_job(d.path(), ".gitlab-ci.yml", "lint: [3.12, x]").is_ok());
        assert!(gitlab_job(d.path(), ".gitlab-ci.yml", "lint 2/3").is_ok());
        assert!(gitlab_job(d.path(), ".gitlab-ci.yml", "variables").is_err());
        assert!(
            gitlab_job(d.path(), ".gitlab-ci.yml", "selfheal")
                .err()
                .ok_or("an error was expected")?
                .contains("no script")
        );
        Ok(())
    }

    #[test]
    fn durations_and_heal_commands() -> R {
        assert_eq!(gitlab_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(gitlab_duration("10 minutes"), Some(Duration::from_secs(600)));
        assert_eq!(gitlab_duration("1h 5m 3s"), Some(Duration::from_secs(3903)));
        assert_eq!(gitlab_duration("soon"), None);
        assert!(is_salve("salve heal --for github"));
        assert!(is_salve("./bin/salve pr create --base main"));
        assert!(!is_salve("salve run"));
        assert!(!is_salve("cargo test"));
        Ok(())
    }
}
