//! `salve pr create|list|show|merge|close`: pull requests on the embedded forge, with
//! `gh pr create`'s flags. In a job, the project and head branch come from the job's variables.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, ServerArgs, encode};
use crate::forges::{self, Forge};
use crate::server_cmd::s;
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
    let (status, v) = client.post_any(
        "/api/v1/pulls",
        &json!({"project": project, "head": head, "base": base, "title": title, "body": body, "created_by": by}),
    )?;
    match status {
        201 => out!("opened pull request #{} in {project}: {} ({} -> {})", v["number"], s(&v["title"]), head, base),
        200 => out!("pull request #{} from {head} is open already: {}", v["number"], s(&v["title"])),
        _ => return Err(format!("the server said {status}: {}", s(&v["error"]["message"]))),
    }
    out!("{}", url(at, &project, &v));
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
    let p = client.get(&format!("/api/v1/projects/{}", encode(project)))?;
    if p["kind"] != "external" {
        return match forced {
            "auto" => Ok(None),
            _ => Err(format!("project {project} is hosted by Salve: its pull requests are Salve's (--forge embedded)")),
        };
    }
    let url = s(&p["repo_url"]);
    let forge = forges::detect(url, &env)
        .ok_or_else(|| format!("{url} is on neither GitHub nor GitLab: Salve cannot open a pull request there"))?;
    match (forced, &forge) {
        ("github", Forge::GitLab { .. }) | ("gitlab", Forge::GitHub { .. }) => {
            Err(format!("{url} is a {} repository, not --forge {forced}", forge.name()))
        }
        _ => Ok(Some(forge)),
    }
}

fn url(at: &At, project: &str, v: &Value) -> String {
    format!("{}/projects/{project}/pulls/{}", at.server.server.trim_end_matches('/'), v["number"])
}

fn list(at: &At, state: &str) -> Result<(), String> {
    let (client, project) = at.open("or set SEMAPHORE_PROJECT_NAME")?;
    let v = client.get(&format!("/api/v1/pulls?project={}&state={}", encode(&project), encode(state)))?;
    let pulls = v["pulls"].as_array().cloned().unwrap_or_default();
    if pulls.is_empty() {
        out!("no {state} pull requests in {project}");
    }
    for p in pulls {
        out!(
            "#{:<4} {:<7} {:<28} -> {:<12} {}",
            p["number"],
            s(&p["state"]),
            s(&p["head"]),
            s(&p["base"]),
            s(&p["title"])
        );
    }
    Ok(())
}

fn show(at: &At, number: i64) -> Result<(), String> {
    let (client, project) = at.open("or set SEMAPHORE_PROJECT_NAME")?;
    let v = client.get(&format!("/api/v1/pulls/{}/{number}", encode(&project)))?;
    out!("#{number} {} [{}]", s(&v["title"]), s(&v["state"]));
    out!("{} -> {}, opened by {}", s(&v["head"]), s(&v["base"]), s(&v["created_by"]));
    let c = &v["checks"];
    let ci = if c["pipeline"].is_null() {
        "CI has not run on the head".to_owned()
    } else {
        let p = &c["pipeline"];
        let current = if c["sha"] == c["head_sha"] { "" } else { " (an older commit)" };
        format!("CI on {}{current}: {} {}", s(&c["sha"]).get(..7).unwrap_or(""), s(&p["state"]), s(&p["result"]))
    };
    out!("{ci}");
    if !s(&v["body"]).is_empty() {
        out!("");
        out!("{}", s(&v["body"]));
    }
    out!("");
    out!("{}", s(&v["diff"]));
    if v["diff_truncated"] == true {
        out!("(the diff is cut at 512 KiB)");
    }
    Ok(())
}

fn end(at: &At, number: i64, how: &str) -> Result<(), String> {
    let (client, project) = at.open("or set SEMAPHORE_PROJECT_NAME")?;
    let v = client.post(&format!("/api/v1/pulls/{}/{number}/{how}", encode(&project)), &json!({}))?;
    match how {
        "merge" => out!("merged #{number} into {} as {}", s(&v["base"]), s(&v["merged_sha"]).get(..7).unwrap_or("")),
        _ => out!("closed #{number}"),
    }
    Ok(())
}
