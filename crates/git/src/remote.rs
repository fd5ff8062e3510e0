//! The remote a heal outside a Salve server pushes to (the checkout's origin on GitHub, GitLab or
//! any git host): where its branch stands now, and the heads of earlier heals, which are that
//! heal's only record of what it did (one heal per commit, a cap per branch and day).
//!
//! Every command runs in a scratch repository of Salve's own with [`Protected`]'s hardening (no
//! configuration, hooks or helpers the job's earlier commands could have planted), and the
//! token reaches git only as an HTTP header, masked in errors.
//!
//! [`Protected`]: crate::Protected

use std::path::{Path, PathBuf};

use crate::GitError;
use crate::protected::hardened;

/// A remote repository, by URL.
#[derive(Debug)]
pub struct Remote {
    url: String,
    auth: Option<String>,
    secret: Option<String>,
    /// A bare repository of Salve's own that fetched heads land in.
    dir: PathBuf,
    home: PathBuf,
}

/// The head of a branch on the remote, with its commit's time and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    pub branch: String,
    pub sha: String,
    /// The committer's time, in seconds since the epoch.
    pub time: i64,
    pub message: String,
}

impl Remote {
    /// The remote at `url`; `auth` is a whole `Authorization` header value, `secret` the token
    /// in it (both masked in errors). `scratch` is a folder of the caller's that nothing else
    /// writes.
    pub fn open(url: &str, auth: Option<&str>, secret: Option<&str>, scratch: &Path) -> Result<Remote, GitError> {
        if url.starts_with('-') {
            return Err(GitError::Failed { args: "remote".into(), stderr: format!("'{url}' is not a URL") });
        }
        let home = scratch.join("home");
        let dir = scratch.join("remote.git");
        std::fs::create_dir_all(&home).map_err(|e| io("create git's home", e))?;
        let r =
            Remote { url: url.to_owned(), auth: auth.map(str::to_owned), secret: secret.map(str::to_owned), dir, home };
        if !r.dir.join("HEAD").exists() {
            crate::finish(hardened(&r.home).args(["init", "--quiet", "--bare"]).arg(&r.dir), "init --bare")?;
        }
        Ok(r)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// git on the scratch repository, with the token as a header when there is one.
    fn run(&self, args: &[&str]) -> Result<String, GitError> {
        self.run_in(&self.dir, None, args)
    }

    /// git on `git_dir` (and `work`), the token as a header, masked in errors.
    fn run_in(&self, git_dir: &Path, work: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
        let mut cmd = hardened(&self.home);
        cmd.env("GIT_DIR", git_dir);
        if let Some(w) = work {
            cmd.env("GIT_WORK_TREE", w);
        }
        if let Some(a) = &self.auth {
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", format!("Authorization: {a}"));
        }
        crate::finish(cmd.args(args), &args.join(" ")).map_err(|e| match e {
            GitError::Failed { args, mut stderr } => {
                for t in [&self.secret, &self.auth].into_iter().flatten().filter(|t| !t.is_empty()) {
                    stderr = stderr.replace(t.as_str(), "[MASKED]");
                }
                GitError::Failed { args, stderr }
            }
            other => other,
        })
    }

    /// The branches whose names start with `prefix` (all with ""), and their commits.
    pub fn heads(&self, prefix: &str) -> Result<Vec<(String, String)>, GitError> {
        let pattern = format!("refs/heads/{prefix}*");
        let out = self.run(&["ls-remote", "--heads", "--", &self.url, &pattern])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter_map(|(sha, r)| Some((r.strip_prefix("refs/heads/")?.to_owned(), sha.to_owned())))
            .filter(|(b, _)| b.starts_with(prefix))
            .collect())
    }

    /// The commit `branch` is at on the remote, if the branch is there.
    pub fn head(&self, branch: &str) -> Result<Option<String>, GitError> {
        if !crate::valid_branch_name(branch) {
            return Err(GitError::Failed {
                args: "ls-remote".into(),
                stderr: format!("'{branch}' is not a branch name"),
            });
        }
        let out = self.run(&["ls-remote", "--heads", "--", &self.url, &format!("refs/heads/{branch}")])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(_, r)| *r == format!("refs/heads/{branch}"))
            .map(|(sha, _)| sha.to_owned()))
    }

    /// The heads of the branches whose names start with `prefix`, each fetched (its last
    /// commit only) for its time and message.
    pub fn tips(&self, prefix: &str) -> Result<Vec<Tip>, GitError> {
        if prefix.is_empty() || !crate::valid_branch_name(prefix) {
            return Err(GitError::Failed {
                args: "fetch".into(),
                stderr: format!("'{prefix}' is not a branch prefix"),
            });
        }
        self.fetched(&format!("refs/heads/{prefix}"), "refs/tips/")
    }

    /// The refs under `remote` (a prefix such as `refs/heads/selfheal-`), fetched one commit
    /// deep under `local`: each named by what follows `local`.
    fn fetched(&self, remote: &str, local: &str) -> Result<Vec<Tip>, GitError> {
        let listed = self.run(&["ls-remote", "--", &self.url, &format!("{remote}*")])?;
        if listed.trim().is_empty() {
            return Ok(Vec::new());
        }
        let last = remote.rsplit('/').next().unwrap_or("");
        let spec = format!("+{remote}*:{local}{last}*");
        self.run(&["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--depth=1", "--", &self.url, &spec])?;
        let out = self.run(&[
            "for-each-ref",
            "--format=%(refname)%00%(objectname)%00%(committerdate:unix)%00%(contents)%00%00",
            local,
        ])?;
        Ok(out
            .split("\0\0\n")
            .filter_map(|rec| {
                let mut f = rec.trim_start_matches('\n').splitn(4, '\0');
                let branch = f.next()?.strip_prefix(local)?.to_owned();
                let sha = f.next()?.to_owned();
                let time = f.next()?.parse().ok()?;
                let message = f.next().unwrap_or("").trim_end_matches('\0').to_owned();
                Some(Tip { branch, sha, time, message })
            })
            .filter(|t| !t.branch.is_empty())
            .collect())
    }

    /// Keeps a record on the remote: a commit of Salve's own (no files, `message`) at
    /// `refs/selfheal/attempts/<name>`, replacing one of the same name.
    pub fn record(&self, name: &str, message: &str) -> Result<(), GitError> {
        if name.is_empty() || !crate::valid_branch_name(name) || name.contains('/') {
            return Err(GitError::Failed { args: "record".into(), stderr: format!("'{name}' is not a record name") });
        }
        let mut mktree = hardened(&self.home);
        mktree.env("GIT_DIR", &self.dir).arg("mktree").stdin(std::process::Stdio::null());
        let tree = crate::finish(&mut mktree, "mktree")?;
        let mut commit = hardened(&self.home);
        commit.env("GIT_DIR", &self.dir).args(["commit-tree", &tree, "-m", message]);
        let sha = crate::finish(crate::by(&mut commit, "Salve", "salve@localhost"), "commit-tree")?;
        let refspec = format!("+{sha}:refs/selfheal/attempts/{name}");
        self.run(&["push", "--quiet", "--no-verify", "--", &self.url, &refspec]).map(drop)
    }

    /// The records kept with [`Remote::record`], by name, with their time and message.
    pub fn records(&self) -> Result<Vec<Tip>, GitError> {
        self.fetched("refs/selfheal/attempts/", "refs/attempts/")
    }

    /// A new work tree at `dest` with the remote's branches and `sha` checked out (detached).
    pub fn check_out(&self, sha: &str, dest: &Path) -> Result<(), GitError> {
        if sha.starts_with('-') || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(GitError::Failed { args: "checkout".into(), stderr: format!("'{sha}' is not a commit") });
        }
        std::fs::create_dir_all(dest).map_err(|e| io("create the work tree", e))?;
        let git_dir = dest.join(".git");
        let git = |args: &[&str]| self.run_in(&git_dir, Some(dest), args);
        git(&["init", "--quiet"])?;
        git(&["fetch", "--quiet", "--no-tags", "--", &self.url, "+refs/heads/*:refs/remotes/origin/*"])?;
        git(&["checkout", "--quiet", "--detach", sha])?;
        Ok(())
    }

    /// Pushes `sha` of the repository at `git_dir` to `branch` on the remote.
    pub fn push_from(&self, git_dir: &Path, sha: &str, branch: &str) -> Result<(), GitError> {
        if !crate::valid_branch_name(branch) || sha.starts_with('-') {
            return Err(GitError::Failed { args: "push".into(), stderr: format!("'{branch}' is not a branch name") });
        }
        let mut cmd = hardened(&self.home);
        cmd.env("GIT_DIR", git_dir);
        crate::push(cmd, &self.url, &format!("{sha}:refs/heads/{branch}"), self.auth.as_deref(), self.secret.as_deref())
    }
}

/// The URL of a checkout's `origin`, read from its config file alone (no includes, nothing run).
pub fn origin_url(work: &Path, scratch: &Path) -> Option<String> {
    // git runs in `scratch`: a relative path would name a file there.
    let config = std::path::absolute(work).ok()?.join(".git").join("config");
    if !std::fs::symlink_metadata(&config).is_ok_and(|m| m.is_file()) {
        return None;
    }
    std::fs::create_dir_all(scratch).ok()?;
    let mut cmd = hardened(scratch);
    cmd.args(["config", "--file"]).arg(&config).args(["--get", "remote.origin.url"]);
    crate::finish(&mut cmd, "config --get remote.origin.url").ok().filter(|u| !u.is_empty())
}

/// A checkout's HEAD: its commit, its branch (none when detached) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub sha: String,
    pub branch: Option<String>,
    pub message: String,
}

/// The HEAD of the checkout at `work`, read with the hardened git (nothing its config names
/// runs).
pub fn checkout_head(work: &Path, scratch: &Path) -> Option<Head> {
    let dot_git = std::path::absolute(work).ok()?.join(".git");
    if !std::fs::symlink_metadata(&dot_git).is_ok_and(|m| m.is_dir()) {
        return None;
    }
    std::fs::create_dir_all(scratch).ok()?;
    let git = |args: &[&str]| {
        let mut cmd = hardened(scratch);
        cmd.env("GIT_DIR", &dot_git).args(args);
        crate::finish(&mut cmd, &args.join(" ")).ok()
    };
    let sha = git(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"])?;
    let branch = git(&["symbolic-ref", "--quiet", "--short", "HEAD"]).filter(|b| !b.is_empty());
    let message = git(&["log", "-1", "--format=%B", "HEAD"]).unwrap_or_default();
    Some(Head { sha, branch, message })
}

fn io(what: &str, e: std::io::Error) -> GitError {
    GitError::Failed { args: what.to_owned(), stderr: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;
    use crate::Repo;

    fn repo_with(dir: &Path, branches: &[(&str, &str)]) -> R {
        let r = Repo::new(dir);
        r.init("main")?;
        std::fs::write(dir.join("a"), "a")?;
        r.add_all()?;
        r.commit_as("T", "t@example.com", "first")?;
        for (b, message) in branches {
            r.run(&["checkout", "-q", "-b", b, "main"])?;
            std::fs::write(dir.join("a"), b)?;
            r.add_all()?;
            r.commit_as("T", "t@example.com", message)?;
        }
        Ok(())
    }

    #[test]
    fn heads_and_tips_of_a_remote() -> R {
        let t = tempfile::tempdir()?;
        let origin = t.path().join("origin");
        std::fs::create_dir_all(&origin)?;
        repo_with(&origin, &[("selfheal-aaa", "fix a\n\nSelfheal-Branch: main\n"), ("selfheal-bbb", "fix b")])?;
        let scratch = t.path().join("scratch");
        let r = Remote::open(&origin.to_string_lossy(), None, None, &scratch)?;
        let heads = r.heads("selfheal-")?;
        assert_eq!(heads.len(), 2, "{heads:?}");
        assert!(r.head("main")?.is_some());
        assert_eq!(r.head("nope")?, None);
        assert!(r.head("--upload-pack=x").is_err());
        let mut tips = r.tips("selfheal-")?;
        tips.sort_by(|a, b| a.branch.cmp(&b.branch));
        assert_eq!(tips.len(), 2, "{tips:?}");
        assert_eq!(tips[0].branch, "selfheal-aaa");
        assert!(tips[0].message.contains("Selfheal-Branch: main"), "{tips:?}");
        assert!(tips[0].time > 1_600_000_000);
        assert_eq!(tips[1].message.trim(), "fix b");
        assert!(r.tips("none-")?.is_empty());
        assert!(r.records()?.is_empty());
        r.record("abc1234-f00d", "Selfheal-Branch: main\n")?;
        r.record("abc1234-f00d", "Selfheal-Branch: main\nSelfheal-Outcome: failed\n")?;
        r.record("def5678-beef", "Selfheal-Branch: dev\n")?;
        assert!(r.record("../x", "m").is_err());
        let mut records = r.records()?;
        records.sort_by(|a, b| a.branch.cmp(&b.branch));
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[0].branch, "abc1234-f00d");
        assert!(records[0].message.contains("Selfheal-Outcome: failed"), "the later record replaces: {records:?}");
        // Records are no branches: the tips of heal branches are as they were.
        assert_eq!(r.tips("selfheal-")?.len(), 2);
        Ok(())
    }

    #[test]
    fn origin_is_read_from_the_config_file_only() -> R {
        let t = tempfile::tempdir()?;
        let work = t.path().join("w");
        std::fs::create_dir_all(work.join(".git"))?;
        std::fs::write(t.path().join("inc"), "[remote \"origin\"]\n\turl = https://evil.example/x\n")?;
        std::fs::write(
            work.join(".git/config"),
            format!(
                "[include]\n\tpath = {}\n[remote \"origin\"]\n\turl = https://h.example/o/r.git\n",
                t.path().join("inc").display()
            ),
        )?;
        assert_eq!(origin_url(&work, &t.path().join("s")).as_deref(), Some("https://h.example/o/r.git"));
        assert_eq!(origin_url(&t.path().join("none"), &t.path().join("s")), None);
        Ok(())
    }

    #[test]
    fn a_checkouts_head_with_a_hostile_config() -> R {
        let t = tempfile::tempdir()?;
        let work = t.path().join("w");
        std::fs::create_dir_all(&work)?;
        repo_with(&work, &[("topic", "the subject\n\nSelfheal-Branch: main\n")])?;
        let planted = t.path().join("planted");
        // A config that would run a program for git commands that read it.
        let hostile = format!("\n[core]\n\tfsmonitor = touch {0}\n\tpager = touch {0}\n", planted.display());
        let mut config = std::fs::read_to_string(work.join(".git/config"))?;
        config.push_str(&hostile);
        std::fs::write(work.join(".git/config"), config)?;
        let h = checkout_head(&work, &t.path().join("s")).ok_or("no head")?;
        assert_eq!(h.branch.as_deref(), Some("topic"));
        assert_eq!(h.sha.len(), 40);
        assert!(h.message.starts_with("the subject"), "{h:?}");
        assert!(!planted.exists(), "nothing the checkout's config names ran");
        Ok(())
    }
}
