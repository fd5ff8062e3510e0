//! `salve pr create|list|show|merge|close`: pull requests on the embedded forge, with
//! `gh pr create`'s flags. In a job, the project and head branch come from the job's variables.

use clap::Subcommand;
use salve_contract::{ProjectKind, RunResult, api};

use crate::client::{Client, ServerArgs, encode};
use crate::forges::{self, Forge};
use crate::{err, out};

#[derive(Subcommand)]
pub enum PrCommand {
    /// Open a pull request (or find the open one of the same head branch).
    Create {
        /// The branch to merge into.
        #[arg(long, short = 'B')]
        base: String,
        #[arg(long, short = 't')]
        title: String,
        #[arg(long, short = 'b', default_value = "")]
        body: String,
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
        PrCommand::Create { base, title, body, head, forge, at } => create(&at, &base, &title, &body, head, &forge),
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

fn create(at: &At, base: &str, title: &str, body: &str, head: Option<String>, forge: &str) -> Result<(), String> {
    let head = head
        .or_else(|| std::env::var("SEMAPHORE_GIT_BRANCH").ok())
        .filter(|h| !h.is_empty())
        .or_else(|| salve_git::Repo::new(".").current_branch())
        .ok_or("say which branch has the change: --head BRANCH")?;
    let (client, project) = at.open("in a job, SEMAPHORE_PROJECT_NAME says it")?;
    if let Some(f) = external_forge(&client, &project, forge)? {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let token = f.token(&env).ok_or_else(|| {
            format!(
                "a {} pull request needs a token: set {} (from a secret)",
                f.name(),
                match f {
                    Forge::GitHub { .. } => "GITHUB_TOKEN",
                    Forge::GitLab { .. } => "GITLAB_TOKEN",
                }
            )
        })?;
        let (number, url, new) = f.open(&token, &head, base, title, body)?;
        match new {
            true => out!("opened {} pull request #{number}: {title} ({head} -> {base})", f.name()),
            false => out!("{} pull request #{number} from {head} is open already", f.name()),
        }
        out!("{url}");
        return Ok(());
    }
    let by = std::env::var("SEMAPHORE_PIPELINE_ID").map_or_else(|_| "cli".to_owned(), |p| format!("pipeline {p}"));
    let new = api::NewPull {
        project: project.clone(),
        head: head.clone(),
        base: base.to_owned(),
        title: title.to_owned(),
        body: body.to_owned(),
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
