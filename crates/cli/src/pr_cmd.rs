//! `salve pr create|list|show|merge|close`: pull requests on the embedded forge, with
//! `gh pr create`'s flags. In a job, the project and head branch come from the job's variables.

use clap::Subcommand;
use salve_contract::{ProjectKind, RunResult, api};

use crate::client::{Client, ServerArgs, encode};
use crate::forges::{self, Forge};
use crate::{err, out};

#[derive(Subcommand)]
pub enum PrCommand {
    /// Open a pull request (or find the open one of the same head branch). Outside Salve (in
    /// GitHub Actions, GitLab CI, Semaphore), with --forge github|gitlab or a forge token and no
    /// SALVE_TOKEN, it is opened on the checkout's forge.
    Create {
        /// The branch to merge into [default: the head commit's `Selfheal-Branch:` trailer].
        #[arg(long, short = 'B')]
        base: Option<String>,
        /// [default: the head commit's subject]
        #[arg(long, short = 't')]
        title: Option<String>,
        /// [default: the head commit's message body, when the title is not given]
        #[arg(long, short = 'b')]
        body: Option<String>,
        /// The branch with the change (default: $SEMAPHORE_GIT_BRANCH, else the current branch).
        #[arg(long, short = 'H')]
        head: Option<String>,
        /// Where: the project's own forge (auto: Salve's for a hosted project, GitHub or GitLab
        /// for an external one, by its URL), or one of embedded, github, gitlab.
        #[arg(long, default_value = "auto")]
        forge: String,
        #[command(flatten)]
        at: At,
    },
    /// Pull requests, newest first.
    List {
        /// open, merged, closed or all.
        #[arg(long, short = 's', default_value = "open")]
        state: String,
        #[command(flatten)]
        at: At,
    },
    /// One pull request: its branches, CI on its head, its diff.
    Show {
        number: i64,
        #[command(flatten)]
        at: At,
    },
    /// Merge a pull request whose head passed CI.
    Merge {
        number: i64,
        #[command(flatten)]
        at: At,
    },
    /// Close a pull request without merging it.
    Close {
        number: i64,
        #[command(flatten)]
        at: At,
    },
}

#[derive(clap::Args)]
pub struct At {
    /// The project (default: $SEMAPHORE_PROJECT_NAME).
    #[arg(long, short = 'p', env = "SEMAPHORE_PROJECT_NAME")]
    project: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

impl At {
    fn open(&self, what: &str) -> Result<(Client, String), String> {
        let project = self
            .project
            .clone()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("say which project: --project NAME ({what})"))?;
        Ok((Client::new(&self.server)?, project))
    }
}

pub fn run(command: PrCommand) -> u8 {
    let result = match command {
        PrCommand::Create { base, title, body, head, forge, at } => create(&at, base, title, body, head, &forge),
        PrCommand::List { state, at } => list(&at, &state),
        PrCommand::Show { number, at } => show(&at, number),
        PrCommand::Merge { number, at } => end(&at, number, "merge"),
        PrCommand::Close { number, at } => end(&at, number, "close"),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            err!("salve pr: {e}");
            1
        }
    }
}

/// What a pull request says, with the head commit's message filling what was not given (as
/// `gh pr create --fill` does); the base from a heal commit's `Selfheal-Branch:` trailer.
fn filled(
    base: Option<String>,
    title: Option<String>,
    body: Option<String>,
) -> Result<(String, String, String), String> {
    let scratch = std::env::temp_dir().join(format!("salve-pr-{}", std::process::id()));
    let head = salve_git::remote::checkout_head(std::path::Path::new("."), &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let message = head.map(|h| h.message).unwrap_or_default();
    let (subject, rest) = message.split_once('\n').unwrap_or((&message, ""));
    let trailer = message.lines().find_map(|l| l.strip_prefix("Selfheal-Branch:")).map(|b| b.trim().to_owned());
    let base = base.or(trailer).filter(|b| !b.is_empty()).ok_or(
        "say which branch to merge into: --base BRANCH (a heal's commit says it in its Selfheal-Branch trailer)",
    )?;
    let body = body.unwrap_or_else(|| if title.is_none() { rest.trim().to_owned() } else { String::new() });
    let title = title
        .or_else(|| Some(subject.trim().to_owned()))
        .filter(|t| !t.is_empty())
        .ok_or("say what the pull request is: --title TEXT (or run in a checkout of the head commit)")?;
    Ok((base, title, body))
}

fn create(
    at: &At,
    base: Option<String>,
    title: Option<String>,
    body: Option<String>,
    head: Option<String>,
    forge: &str,
) -> Result<(), String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let head = head
        .or_else(|| crate::outside::local::ci_branch(&env))
        .or_else(|| salve_git::Repo::new(".").current_branch())
        .ok_or("say which branch has the change: --head BRANCH")?;
    let (base, title, body) = filled(base, title, body)?;
    let in_salve = env("SALVE_TOKEN").is_some() && at.project.as_deref().is_some_and(|p| !p.is_empty());
    if let Some(f) = outside_forge(forge, in_salve, &env)? {
        return open_on(&f, &head, &base, &title, &body);
    }
    let (client, project) = at.open("in a job, SEMAPHORE_PROJECT_NAME says it")?;
    if let Some(f) = external_forge(&client, &project, forge)? {
        return open_on(&f, &head, &base, &title, &body);
    }
    let by = std::env::var("SEMAPHORE_PIPELINE_ID").map_or_else(|_| "cli".to_owned(), |p| format!("pipeline {p}"));
    let new = api::NewPull {
        project: project.clone(),
        head: head.clone(),
        base: base.clone(),
        title: title.clone(),
        body,
        created_by: Some(by),
    };
    let (status, v) = client.post_any("/api/v1/pulls", &new)?;
    if !matches!(status, 200 | 201) {
        let message = serde_json::from_value::<api::Error>(v).map_or_else(|e| e.to_string(), |e| e.error.message);
        return Err(format!("the server said {status}: {message}"));
    }
    let pull: api::Pull =
        serde_json::from_value(v).map_err(|e| format!("the server's answer is not a pull request: {e}"))?;
    match status {
        201 => out!("opened pull request #{} in {project}: {} ({} -> {})", pull.number, pull.title, head, base),
        _ => out!("pull request #{} from {head} is open already: {}", pull.number, pull.title),
    }
    out!("{}", url(at, &project, pull.number));
    Ok(())
}

/// Opens the pull request on GitHub or GitLab, or finds the open one.
fn open_on(f: &Forge, head: &str, base: &str, title: &str, body: &str) -> Result<(), String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let token = f.token(&env).ok_or_else(|| {
        format!("a {} pull request needs a token: set {} (from a secret)", f.name(), f.token_variable())
    })?;
    let (number, url, new) = f.open(&token, head, base, title, body)?;
    match new {
        true => out!("opened {} pull request #{number}: {title} ({head} -> {base})", f.name()),
        false => out!("{} pull request #{number} from {head} is open already", f.name()),
    }
    out!("{url}");
    Ok(())
}

/// The forge when the pull request is opened outside Salve (no Salve token and project: another
/// CI such as Semaphore, GitHub Actions or GitLab CI, or a terminal): `--forge github|gitlab`, or
/// `auto` when the CI's variables or the checkout's origin name GitHub or GitLab.
fn outside_forge(forced: &str, in_salve: bool, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Forge>, String> {
    if in_salve || !matches!(forced, "github" | "gitlab" | "auto") {
        return Ok(None);
    }
    let scratch = std::env::temp_dir().join(format!("salve-pr-{}", std::process::id()));
    let origin = salve_git::remote::origin_url(std::path::Path::new("."), &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let forge = forges::from_ci(env).or_else(|| origin.as_deref().and_then(|o| forges::detect(o, env)));
    match (forced, forge) {
        // Nothing here names a forge: a Salve server's project, which says what it needs.
        ("auto", None) => Ok(None),
        (_, None) => Err(
            "no GitHub or GitLab repository here: run in its checkout, or in its CI (GITHUB_REPOSITORY, CI_PROJECT_PATH)"
                .into(),
        ),
        ("github", Some(f @ Forge::GitLab { .. })) | ("gitlab", Some(f @ Forge::GitHub { .. })) => {
            Err(format!("this repository is on {}, not --forge {forced}", f.name()))
        }
        (_, Some(f)) => Ok(Some(f)),
    }
}

/// The project's external forge, when its pull requests go there.
fn external_forge(client: &Client, project: &str, forced: &str) -> Result<Option<Forge>, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match forced {
        "embedded" => return Ok(None),
        "auto" | "github" | "gitlab" => {}
        other => return Err(format!("'{other}' is not a forge: use auto, embedded, github or gitlab")),
    }
    let p: api::Project = client.get(&format!("/api/v1/projects/{}", encode(project)))?;
    if p.kind != ProjectKind::External {
        return match forced {
            "auto" => Ok(None),
            _ => Err(format!("project {project} is hosted by Salve: its pull requests are Salve's (--forge embedded)")),
        };
    }
    let url = p.repo_url.unwrap_or_default();
    let forge = forges::detect(&url, &env)
        .ok_or_else(|| format!("{url} is on neither GitHub nor GitLab: Salve cannot open a pull request there"))?;
    match (forced, &forge) {
        ("github", Forge::GitLab { .. }) | ("gitlab", Forge::GitHub { .. }) => {
            Err(format!("{url} is a {} repository, not --forge {forced}", forge.name()))
        }
        _ => Ok(Some(forge)),
    }
}

fn url(at: &At, project: &str, number: i64) -> String {
    format!("{}/projects/{project}/pulls/{number}", at.server.server.trim_end_matches('/'))
}

fn list(at: &At, state: &str) -> Result<(), String> {
    let (client, project) = at.open("or set SEMAPHORE_PROJECT_NAME")?;
    let list: api::PullList =
        client.get(&format!("/api/v1/pulls?project={}&state={}", encode(&project), encode(state)))?;
    if list.pulls.is_empty() {
        out!("no {state} pull requests in {project}");
    }
    for p in list.pulls {
        out!("#{:<4} {:<7} {:<28} -> {:<12} {}", p.number, p.state.as_str(), p.head, p.base, p.title);
    }
    Ok(())
}

fn show(at: &At, number: i64) -> Result<(), String> {
    let (client, project) = at.open("or set SEMAPHORE_PROJECT_NAME")?;
    let v: api::PullDetail = client.get(&format!("/api/v1/pulls/{}/{number}", encode(&project)))?;
    let pr = &v.pull;
    out!("#{number} {} [{}]", pr.title, pr.state);
    out!("{} -> {}, opened by {}", pr.head, pr.base, pr.created_by);
    let c = &v.checks;
    let ci = match &c.pipeline {
        None => "CI has not run on the head".to_owned(),
        Some(p) => {
            let current = if c.sha == c.head_sha { "" } else { " (an older commit)" };
            let sha = c.sha.as_deref().and_then(|s| s.get(..7)).unwrap_or("");
            format!("CI on {sha}{current}: {} {}", p.state, p.result.map_or("", RunResult::as_str))
        }
    };
    out!("{ci}");
    if !pr.body.is_empty() {
        out!("");
        out!("{}", pr.body);
    }
    out!("");
    out!("{}", v.diff);
    if v.diff_truncated {
        out!("(the diff is cut at 512 KiB)");
    }
    Ok(())
}

fn end(at: &At, number: i64, how: &str) -> Result<(), String> {
    let (client, project) = at.open("or set SEMAPHORE_PROJECT_NAME")?;
    let v: api::Pull = client.post(&format!("/api/v1/pulls/{}/{number}/{how}", encode(&project)), &())?;
    match how {
        "merge" => {
            out!(
                "merged #{number} into {} as {}",
                v.base,
                v.merged_sha.as_deref().and_then(|s| s.get(..7)).unwrap_or("")
            )
        }
        _ => out!("closed #{number}"),
    }
    Ok(())
}
