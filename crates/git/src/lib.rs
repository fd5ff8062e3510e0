//! Every git operation Salve performs, through the `git` CLI (DESIGN.md §3: gix cannot push, git2
//! brings C libgit2 and OpenSSL). Arguments are always passed as separate argv entries, never
//! through a shell, and a ref given by a user is checked with `git check-ref-format` first.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod files;
pub mod protected;
pub mod remote;

pub use protected::Protected;

use salve_pipeline::when::change_in::ChangedFiles;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("could not run git: {0}; install git (Debian: apt-get install git)")]
    Spawn(#[source] std::io::Error),
    #[error("git {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// A repository checkout (or bare repository) on disk.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    pub fn new(dir: impl Into<PathBuf>) -> Repo {
        Repo { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs git with `args` in the repository and returns its standard output.
    fn output(&self, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(GitError::Spawn)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(GitError::Failed {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Runs git with `args` in the repository and returns its trimmed standard output as text.
    /// Other crates use the named operations below: only this crate writes git's argv.
    pub(crate) fn run(&self, args: &[&str]) -> Result<String, GitError> {
        Ok(String::from_utf8_lossy(&self.output(args)?).trim_end().to_owned())
    }

    /// Runs git with `args` in the repository, its output going where ours goes (a job's log).
    fn stream(&self, args: &[&str]) -> Result<(), GitError> {
        let status = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .status()
            .map_err(GitError::Spawn)?;
        if status.success() {
            Ok(())
        } else {
            Err(GitError::Failed {
                args: args.join(" "),
                stderr: format!("exit status {}", status.code().unwrap_or(-1)),
            })
        }
    }

    /// A commit of the work tree as it is now (tracked changes and untracked files that are not
    /// ignored), on top of HEAD, made with a private index so the user's index is untouched.
    pub fn snapshot_worktree(&self, index: &Path) -> Result<String, GitError> {
        let git = |args: &[&str]| -> Result<String, GitError> {
            let out = Command::new("git")
                .arg("-C")
                .arg(&self.dir)
                .args(args)
                .env("GIT_INDEX_FILE", index)
                .output()
                .map_err(GitError::Spawn)?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
            } else {
                Err(GitError::Failed {
                    args: args.join(" "),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                })
            }
        };
        git(&["read-tree", "HEAD"])?;
        git(&["add", "--all"])?;
        let tree = git(&["write-tree"])?;
        git(&["commit-tree", &tree, "-p", "HEAD", "-m", "salve run --dirty: the work tree"])
    }

    /// Merges commit `head` into branch `base` of this (bare) repository, the way a forge
    /// merges a pull request: a fast-forward when `base` is an ancestor of `head`, else a merge
    /// commit with `message` by `author` (`Name <email>`). Refuses conflicts without touching
    /// anything. Returns the branch's old and new commit.
    pub fn merge_into(
        &self,
        base: &str,
        head: &str,
        message: &str,
        author: &str,
    ) -> Result<(String, String), GitError> {
        let refname = format!("refs/heads/{base}");
        let old = self.run(&["rev-parse", "--verify", &format!("{refname}^{{commit}}")])?;
        let ff = self.run(&["merge-base", "--is-ancestor", &old, head]).is_ok();
        let new = if ff {
            head.to_owned()
        } else {
            let tree = self.run(&["merge-tree", "--write-tree", "--no-messages", &old, head]).map_err(|e| match e {
                GitError::Failed { args, .. } => GitError::Failed {
                    args,
                    stderr: format!("{head} does not merge cleanly into {base}: update the branch first"),
                },
                e => e,
            })?;
            let tree = tree.lines().next().unwrap_or("").to_owned();
            let (name, email) = author.split_once(" <").unwrap_or((author, "salve@localhost>"));
            let email = email.trim_end_matches('>');
            let mut cmd = Command::new("git");
            cmd.arg("-C").arg(&self.dir).args(["commit-tree", &tree, "-p", &old, "-p", head, "-m", message]);
            finish(by(&mut cmd, name, email), "commit-tree")?
        };
        self.run(&["update-ref", &refname, &new, &old])?;
        Ok((old, new))
    }

    /// Pushes `refspec` to `url`. A token goes in an HTTP header (`Authorization: Bearer`, or
    /// `auth` when given: a whole header value such as `Basic …` for GitHub and GitLab) through
    /// git's environment configuration: never in the URL, the command line or git's output.
    pub fn push(&self, url: &str, refspec: &str, token: Option<&str>) -> Result<(), GitError> {
        self.push_with(url, refspec, token.map(|t| format!("Bearer {t}")).as_deref(), token)
    }

    /// [`Repo::push`] with a whole `Authorization` header value; `secret` is masked in errors.
    pub fn push_with(
        &self,
        url: &str,
        refspec: &str,
        auth: Option<&str>,
        secret: Option<&str>,
    ) -> Result<(), GitError> {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&self.dir).env("GIT_TERMINAL_PROMPT", "0");
        push(cmd, url, refspec, auth, secret)
    }

    /// Whether `name` is acceptable as a branch name.
    pub fn valid_branch(name: &str) -> bool {
        valid_branch_name(name)
    }

    /// The commit a revision names, if it names one.
    pub fn resolve(&self, rev: &str) -> Option<String> {
        if rev.starts_with('-') {
            return None;
        }
        self.run(&["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).ok()
    }

    /// The current branch, or `None` on a detached HEAD.
    pub fn current_branch(&self) -> Option<String> {
        self.run(&["symbolic-ref", "--quiet", "--short", "HEAD"]).ok()
    }

    /// Reads a file at a revision (`git show REV:PATH`).
    pub fn show_file(&self, rev: &str, path: &str) -> Result<Vec<u8>, GitError> {
        self.output(&["show", &format!("{rev}:{path}")])
    }

    /// Creates a bare repository here (`git init --bare`), its first branch `initial_branch`
    /// when given.
    pub fn init_bare(&self, initial_branch: Option<&str>) -> Result<(), GitError> {
        let branch = initial_branch.map(|b| format!("--initial-branch={b}"));
        let mut args = vec!["init", "--quiet", "--bare"];
        args.extend(branch.as_deref());
        self.run(&args).map(drop)
    }

    /// Creates a repository with a work tree here, on branch `branch`.
    pub fn init(&self, branch: &str) -> Result<(), GitError> {
        self.run(&["init", "--quiet", "-b", branch]).map(drop)
    }

    /// Stages every change of the work tree (`git add -A`).
    pub fn add_all(&self) -> Result<(), GitError> {
        self.run(&["add", "-A"]).map(drop)
    }

    /// Commits what is staged as `name <email>`; returns the new commit.
    pub fn commit_as(&self, name: &str, email: &str, message: &str) -> Result<String, GitError> {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&self.dir).args(["commit", "--quiet", "-m", message]);
        finish(by(&mut cmd, name, email), "commit")?;
        self.run(&["rev-parse", "HEAD"])
    }

    /// Sets `key` to `value` in the repository's own config.
    pub fn config_set(&self, key: &str, value: &str) -> Result<(), GitError> {
        not_options(&[key])?;
        self.run(&["config", key, value]).map(drop)
    }

    /// The value of `key` in the repository's config, if it is set.
    pub fn config_get(&self, key: &str) -> Option<String> {
        self.run(&["config", key]).ok()
    }

    /// The top folder of the work tree holding this folder, if it is in one.
    pub fn toplevel(&self) -> Option<PathBuf> {
        self.run(&["rev-parse", "--show-toplevel"]).ok().map(PathBuf::from)
    }

    /// Who wrote commit `rev` and who committed it (names), empty when it cannot be read.
    pub fn authors(&self, rev: &str) -> (String, String) {
        if rev.starts_with('-') {
            return Default::default();
        }
        let names = self.run(&["log", "-1", "--format=%an%x00%cn", rev, "--"]).unwrap_or_default();
        let (author, committer) = names.trim_end().split_once('\0').unwrap_or(("", ""));
        (author.to_owned(), committer.to_owned())
    }

    /// The branches and tags, each with the object it points at.
    pub fn refs(&self) -> Vec<(String, String)> {
        let out = self.run(&["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"]);
        out.unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(sha, name)| (name.to_owned(), sha.to_owned())))
            .collect()
    }

    /// The changes branch `head` makes over where it left branch `base` (`base...head`), as a
    /// patch; empty when either is missing.
    pub fn branch_diff(&self, base: &str, head: &str) -> String {
        if !valid_branch_name(base) || !valid_branch_name(head) {
            return String::new();
        }
        let range = format!("refs/heads/{base}...refs/heads/{head}");
        self.run(&["diff", "--no-color", "--no-ext-diff", &range]).unwrap_or_default()
    }

    /// The changes commit `sha` made over its first parent, as a patch (a merge's own changes).
    pub fn commit_diff(&self, sha: &str) -> String {
        if sha.starts_with('-') {
            return String::new();
        }
        self.run(&["show", "--no-color", "--no-ext-diff", "--format=", "-m", "--first-parent", sha]).unwrap_or_default()
    }

    /// Fetches `refspec` from the remote named `remote`.
    pub fn fetch(&self, remote: &str, refspec: &str) -> Result<(), GitError> {
        not_options(&[remote, refspec])?;
        self.run(&["fetch", "--quiet", "--no-tags", remote, refspec]).map(drop)
    }

    /// Brings this bare mirror up to date with every ref of `url` (created when missing) and
    /// checks that it holds commit `sha`. The token goes in an `Authorization: Bearer` header
    /// through git's environment configuration, never in the URL, the command line or an error.
    pub fn mirror_from(&self, url: &str, token: &str, sha: &str) -> Result<(), GitError> {
        not_options(&[url, sha])?;
        if !self.dir.join("HEAD").exists() {
            self.init_bare(None)?;
        }
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(&self.dir)
            .args(["fetch", "--quiet", "--prune", "--no-tags", "--", url, "+refs/*:refs/*"])
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: Bearer {token}"));
        let out = cmd.output().map_err(GitError::Spawn)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).replace(token, "[MASKED]");
            return Err(GitError::Failed { args: format!("fetch {url}"), stderr: stderr.trim().to_owned() });
        }
        self.run(&["cat-file", "-e", &format!("{sha}^{{commit}}")]).map(drop)
    }

    /// Pushes commit `sha` to `git_ref` of the repository at `target` on this machine, whatever
    /// was there (a mirror Salve owns); no hooks run.
    pub fn push_local(&self, target: &Path, sha: &str, git_ref: &str) -> Result<(), GitError> {
        let target = target.to_string_lossy();
        not_options(&[&target, sha])?;
        self.run(&["push", "--quiet", "--force", "--no-verify", &target, &format!("{sha}:{git_ref}")]).map(drop)
    }

    /// Clones `url` into `dir` (a folder under this one), `depth` commits deep and only
    /// `branch` when given, its output going to ours.
    pub fn clone_streamed(
        &self,
        url: &str,
        dir: &str,
        depth: Option<u32>,
        branch: Option<&str>,
    ) -> Result<(), GitError> {
        let depth = depth.map(|d| d.to_string());
        let mut args = vec!["clone", "--quiet"];
        if let Some(d) = &depth {
            args.extend(["--depth", d]);
        }
        if let Some(b) = branch {
            args.extend(["-b", b]);
        }
        args.extend(["--", url, dir]);
        self.stream(&args)
    }

    /// Fetches `refspec` from `origin`, its output going to ours.
    pub fn fetch_streamed(&self, refspec: &str) -> Result<(), GitError> {
        not_options(&[refspec])?;
        self.stream(&["fetch", "--quiet", "origin", refspec])
    }

    /// Fetches the whole history of a shallow clone from `origin`.
    pub fn unshallow_streamed(&self) -> Result<(), GitError> {
        self.stream(&["fetch", "--quiet", "--unshallow", "origin"])
    }

    /// Moves the branch and the work tree to `sha` (`git reset --hard`).
    pub fn reset_hard_streamed(&self, sha: &str) -> Result<(), GitError> {
        not_options(&[sha])?;
        self.stream(&["reset", "--quiet", "--hard", sha])
    }

    fn is_shallow(&self) -> bool {
        self.run(&["rev-parse", "--is-shallow-repository"]).is_ok_and(|s| s == "true")
    }

    fn has_remote(&self) -> bool {
        self.run(&["remote"]).is_ok_and(|s| s.lines().any(|l| l == "origin"))
    }
}

/// Refuses arguments that git would read as options (`--upload-pack=…`): a named operation's
/// revisions, refspecs, remotes and keys come from outside (a webhook, a job's environment).
fn not_options(args: &[&str]) -> Result<(), GitError> {
    match args.iter().find(|a| a.starts_with('-')) {
        Some(a) => Err(GitError::Failed { args: (*a).to_owned(), stderr: "an argument may not start with '-'".into() }),
        None => Ok(()),
    }
}

/// Where git keeps its own programs (`git --exec-path`): `git-http-backend` is there.
pub fn exec_path() -> Result<PathBuf, GitError> {
    let out = Command::new("git").arg("--exec-path").output().map_err(GitError::Spawn)?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: "--exec-path".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Makes `name <email>` the author and committer of what `cmd` commits.
fn by<'c>(cmd: &'c mut Command, name: &str, email: &str) -> &'c mut Command {
    cmd.env("GIT_AUTHOR_NAME", name)
        .env("GIT_AUTHOR_EMAIL", email)
        .env("GIT_COMMITTER_NAME", name)
        .env("GIT_COMMITTER_EMAIL", email)
}

/// Runs a prepared git command: its standard output (trimmed at the end), or its standard
/// error as the error, `what` naming the command.
fn finish(cmd: &mut Command, what: &str) -> Result<String, GitError> {
    let out = cmd.output().map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(GitError::Failed { args: what.to_owned(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

/// Runs `git push` as `cmd` (git with its options) says: the token as an `Authorization` header
/// value through git's environment configuration, never in the URL, the command line or the
/// error, where `secret` and `auth` are masked.
fn push(mut cmd: Command, url: &str, refspec: &str, auth: Option<&str>, secret: Option<&str>) -> Result<(), GitError> {
    cmd.args(["push", "--quiet", "--porcelain", "--no-verify", "--", url, refspec]);
    if let Some(a) = auth {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: {a}"));
    }
    let out = cmd.output().map_err(GitError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for t in [secret, auth].into_iter().flatten().filter(|t| !t.is_empty()) {
        stderr = stderr.replace(t, "[MASKED]");
    }
    Err(GitError::Failed { args: format!("push {url} {refspec}"), stderr: stderr.trim().to_owned() })
}

/// Branch names must be valid refs before they get anywhere near git.
/// git's rules for a branch name (`git check-ref-format --branch`), without starting git: no
/// control characters, spaces or any of `~^:?*[\`; no `..`, `@{`, `//`; no component that starts
/// with `.` or ends with `.lock`; not `@`, `HEAD`, or starting with `-`; not starting or ending
/// with `/`, not ending with `.`.
fn valid_branch_name(name: &str) -> bool {
    let bad_char = |c: char| c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\');
    !name.is_empty()
        && !name.starts_with('-')
        && name != "@"
        && name != "HEAD"
        && !name.chars().any(bad_char)
        && !name.contains("..")
        && !name.contains("@{")
        && !name.ends_with('.')
        && name.split('/').all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

impl ChangedFiles for Repo {
    /// spc's algorithm: fetch the branches the range needs, deepen a shallow clone (100, 200,
    /// 400, ... up to ten times) until the range resolves, then `git diff --name-only RANGE`.
    fn changed_files(&self, range: &str, refs: &[String]) -> Result<Vec<String>, String> {
        for r in refs {
            if r.is_empty() || self.resolve(r).is_some() {
                continue;
            }
            if valid_branch_name(r) && self.has_remote() {
                let spec = format!("+refs/heads/{r}:refs/heads/{r}");
                let _ = self.run(&["fetch", "--quiet", "origin", &spec]);
            }
            if self.resolve(r).is_none() {
                return Err(format!("Unknown git reference '{r}'."));
            }
        }
        if range.starts_with('-') {
            return Err(format!("invalid commit range '{range}'"));
        }
        let mut depth = 100;
        for _ in 0..=10 {
            match self.run(&["diff", "--name-only", range, "--"]) {
                Ok(out) => return Ok(out.lines().map(str::to_owned).collect()),
                Err(_) if self.is_shallow() && self.has_remote() => {
                    let _ = self.run(&["fetch", "--quiet", &format!("--deepen={depth}"), "origin"]);
                    depth *= 2;
                }
                Err(e) => return Err(format!("could not compute the changes in '{range}': {e}")),
            }
        }
        Err(format!("could not compute the changes in '{range}' even after deepening the clone"))
    }
}
