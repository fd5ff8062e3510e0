//! Where a project's pull requests live: the embedded forge (a hosted project), GitHub or
//! GitLab (an external project, by its repository URL). For those two: the push credentials a
//! heal uses (a token in a Basic header, as both accept for git over HTTPS) and pull/merge
//! requests through their REST APIs, found again for the same head before one is opened.
//! Tokens come from `GITHUB_TOKEN`/`GH_TOKEN` and `GITLAB_TOKEN`; the API bases from
//! `GITHUB_API_URL` and `GITLAB_API_URL` (GitHub Enterprise, self-managed GitLab).

use base64::Engine as _;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forge {
    GitHub { api: String, owner: String, repo: String },
    GitLab { api: String, path: String },
}

/// The forge of an external repository URL (`https://github.com/o/r.git`,
/// `git@github.com:o/r.git`, `https://gitlab.example.com/group/sub/r.git`); `None` when it is
/// neither GitHub nor GitLab.
pub fn detect(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<Forge> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let (host, path) = rest.split_once(['/', ':'])?;
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let path = path.trim_start_matches(|c: char| c.is_ascii_digit() || c == '/').trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).to_owned();
    if path.is_empty() {
        return None;
    }
    if host == "github.com" || host.starts_with("github.") {
        let (owner, repo) = path.split_once('/')?;
        let api = env("GITHUB_API_URL").unwrap_or_else(|| {
            if host == "github.com" { "https://api.github.com".into() } else { format!("https://{host}/api/v3") }
        });
        return Some(Forge::GitHub { api, owner: owner.into(), repo: repo.into() });
    }
    if host.contains("gitlab") || env("GITLAB_API_URL").is_some() {
        let api = env("GITLAB_API_URL").unwrap_or_else(|| format!("https://{host}/api/v4"));
        return Some(Forge::GitLab { api, path });
    }
    None
}

/// The forge of the repository a CI job runs for, from the variables GitHub Actions
/// (`GITHUB_REPOSITORY`, `GITHUB_API_URL`) and GitLab CI (`CI_PROJECT_PATH`, `CI_API_V4_URL`) set.
pub fn from_ci(env: &dyn Fn(&str) -> Option<String>) -> Option<Forge> {
    if let Some((owner, repo)) = env("GITHUB_REPOSITORY").as_deref().and_then(|r| r.split_once('/')) {
        let api = env("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        return Some(Forge::GitHub { api, owner: owner.into(), repo: repo.into() });
    }
    let path = env("CI_PROJECT_PATH")?;
    let api =
        env("CI_API_V4_URL").or_else(|| env("CI_SERVER_URL").map(|s| format!("{}/api/v4", s.trim_end_matches('/'))))?;
    Some(Forge::GitLab { api, path })
}

impl Forge {
    pub fn name(&self) -> &'static str {
        match self {
            Forge::GitHub { .. } => "GitHub",
            Forge::GitLab { .. } => "GitLab",
        }
    }

    /// The token for this forge from the environment.
    pub fn token(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        match self {
            Forge::GitHub { .. } => env("GITHUB_TOKEN").or_else(|| env("GH_TOKEN")),
            Forge::GitLab { .. } => env("GITLAB_TOKEN"),
        }
    }

    /// The name of the variable its token is read from.
    pub fn token_variable(&self) -> &'static str {
        match self {
            Forge::GitHub { .. } => "GITHUB_TOKEN",
            Forge::GitLab { .. } => "GITLAB_TOKEN",
        }
    }

    /// The repository's HTTPS clone URL (where a heal pushes with a token when the checkout's
    /// origin is an SSH URL): the web host of the API's.
    pub fn https_url(&self, env: &dyn Fn(&str) -> Option<String>) -> String {
        match self {
            Forge::GitHub { api, owner, repo } => {
                let web = env("GITHUB_SERVER_URL").unwrap_or_else(|| match api.as_str() {
                    "https://api.github.com" => "https://github.com".into(),
                    other => other.trim_end_matches('/').trim_end_matches("/api/v3").to_owned(),
                });
                format!("{}/{owner}/{repo}.git", web.trim_end_matches('/'))
            }
            Forge::GitLab { api, path } => {
                let web = env("CI_SERVER_URL")
                    .unwrap_or_else(|| api.trim_end_matches('/').trim_end_matches("/api/v4").to_owned());
                format!("{}/{path}.git", web.trim_end_matches('/'))
            }
        }
    }

    /// The `Authorization` value git sends when pushing over HTTPS with `token`.
    pub fn git_auth(&self, token: &str) -> String {
        let user = match self {
            Forge::GitHub { .. } => "x-access-token",
            Forge::GitLab { .. } => "oauth2",
        };
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")))
    }

    /// The call that finds an open pull request of `head`, and the one that opens one.
    pub fn requests(&self, head: &str, base: &str, title: &str, body: &str) -> (String, String, Value) {
        match self {
            Forge::GitHub { api, owner, repo } => (
                format!("{api}/repos/{owner}/{repo}/pulls?state=open&head={}", encode(&format!("{owner}:{head}"))),
                format!("{api}/repos/{owner}/{repo}/pulls"),
                json!({"title": title, "head": head, "base": base, "body": body}),
            ),
            Forge::GitLab { api, path } => {
                let project = encode(path);
                (
                    format!("{api}/projects/{project}/merge_requests?state=opened&source_branch={}", encode(head)),
                    format!("{api}/projects/{project}/merge_requests"),
                    json!({"title": title, "source_branch": head, "target_branch": base, "description": body}),
                )
            }
        }
    }

    /// How many pull (merge) requests are open from branches whose names start with `prefix`.
    pub fn open_pulls_from(&self, token: &str, prefix: &str) -> Result<usize, String> {
        let (url, head) = match self {
            Forge::GitHub { api, owner, repo } => {
                (format!("{api}/repos/{owner}/{repo}/pulls?state=open&per_page=100"), "/head/ref")
            }
            Forge::GitLab { api, path } => {
                (format!("{api}/projects/{}/merge_requests?state=opened&per_page=100", encode(path)), "/source_branch")
            }
        };
        let v = self.send(token, |h| h.get(&url))?;
        let list = v.as_array().ok_or_else(|| format!("{}'s list of pull requests is not a list", self.name()))?;
        Ok(list
            .iter()
            .filter(|p| p.pointer(head).and_then(Value::as_str).is_some_and(|h| h.starts_with(prefix)))
            .count())
    }

    /// One call to the forge's API with `token`: its JSON answer, or why not.
    fn send(
        &self,
        token: &str,
        request: impl FnOnce(&reqwest::blocking::Client) -> reqwest::blocking::RequestBuilder,
    ) -> Result<Value, String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .user_agent("salve")
            .build()
            .map_err(|e| e.to_string())?;
        let r = match self {
            Forge::GitHub { .. } => request(&http).bearer_auth(token).header("accept", "application/vnd.github+json"),
            Forge::GitLab { .. } => request(&http).header("private-token", token),
        };
        let response = r.send().map_err(|e| format!("cannot reach {}: {}", self.name(), e.without_url()))?;
        let status = response.status();
        let v: Value = response.json().unwrap_or(Value::Null);
        if !status.is_success() {
            let m = v["message"].as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            return Err(format!("{} said {}: {m}", self.name(), status.as_u16()));
        }
        Ok(v)
    }

    /// Opens a pull (merge) request, or finds the open one of `head`: its number, its web URL,
    /// and whether it is new.
    pub fn open(
        &self,
        token: &str,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<(i64, String, bool), String> {
        let number = |v: &Value| v["number"].as_i64().or_else(|| v["iid"].as_i64()).unwrap_or(0);
        let url = |v: &Value| v["html_url"].as_str().or_else(|| v["web_url"].as_str()).unwrap_or("").to_owned();
        let (find, create, payload) = self.requests(head, base, title, body);
        if let Some(open) = self.send(token, |h| h.get(&find))?.as_array().and_then(|a| a.first()) {
            return Ok((number(open), url(open), false));
        }
        let made = self.send(token, |h| h.post(&create).json(&payload))?;
        Ok((number(&made), url(&made), true))
    }
}

fn encode(s: &str) -> String {
    crate::client::encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn repository_urls_name_their_forge() {
        let gh = |owner: &str, repo: &str| Forge::GitHub {
            api: "https://api.github.com".into(),
            owner: owner.into(),
            repo: repo.into(),
        };
        assert_eq!(detect("https://github.com/acme/web.git", &none), Some(gh("acme", "web")));
        assert_eq!(detect("git@github.com:acme/web.git", &none), Some(gh("acme", "web")));
        assert_eq!(detect("https://user@github.com/acme/web", &none), Some(gh("acme", "web")));
        assert_eq!(
            detect("https://gitlab.example.com/group/sub/app.git", &none),
            Some(Forge::GitLab { api: "https://gitlab.example.com/api/v4".into(), path: "group/sub/app".into() })
        );
        assert_eq!(
            detect("ssh://git@gitlab.example.com:2222/group/app.git", &none),
            Some(Forge::GitLab { api: "https://gitlab.example.com/api/v4".into(), path: "group/app".into() })
        );
        assert_eq!(detect("https://git.example.com/x/y.git", &none), None);
        assert_eq!(detect("/srv/repos/x.git", &none), None);
        let enterprise = |k: &str| (k == "GITHUB_API_URL").then(|| "https://ghe.example.com/api/v3".to_owned());
        assert!(
            matches!(detect("https://github.com/a/b", &enterprise), Some(Forge::GitHub { api, .. }) if api == "https://ghe.example.com/api/v3")
        );
    }

    #[test]
    fn requests_and_push_credentials_follow_each_api() {
        let gh = Forge::GitHub { api: "https://api.github.com".into(), owner: "acme".into(), repo: "web".into() };
        let (find, create, body) = gh.requests("selfheal-abc", "main", "t", "b");
        assert_eq!(find, "https://api.github.com/repos/acme/web/pulls?state=open&head=acme%3Aselfheal-abc");
        assert_eq!(create, "https://api.github.com/repos/acme/web/pulls");
        assert_eq!(body, json!({"title": "t", "head": "selfheal-abc", "base": "main", "body": "b"}));
        assert_eq!(
            gh.git_auth("tok"),
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("x-access-token:tok"))
        );
        let gl = Forge::GitLab { api: "https://gitlab.com/api/v4".into(), path: "group/app".into() };
        let (find, create, body) = gl.requests("selfheal-abc", "main", "t", "b");
        assert_eq!(
            find,
            "https://gitlab.com/api/v4/projects/group%2Fapp/merge_requests?state=opened&source_branch=selfheal-abc"
        );
        assert_eq!(create, "https://gitlab.com/api/v4/projects/group%2Fapp/merge_requests");
        assert_eq!(body["source_branch"], "selfheal-abc");
        assert_eq!(body["target_branch"], "main");
        let env = |k: &str| (k == "GH_TOKEN").then(|| "x".to_owned());
        assert_eq!(gh.token(&env).as_deref(), Some("x"));
        assert_eq!(gl.token(&env), None);
    }
}
