//! A checkout that sandboxed code writes (a heal's fixers, its verification, its agent), with a
//! git that never runs what that code planted.
//!
//! Before any such code runs, [`Protected::take`] moves the checkout's `.git` to a folder the
//! code cannot write, writes it a fresh config of Salve's own (no hooks, includes, filters,
//! `insteadOf` or credential helpers survive), and leaves in the work tree a disposable `.git`
//! for the tools that want one: a clone that borrows the objects read-only (alternates), rebuilt
//! with [`Protected::refresh`]. Every git command here runs on the protected folder with:
//! - hooks off (`core.hooksPath=/dev/null`), no fsmonitor, no pager, no external diff or
//!   textconv, and no credential helper;
//! - no system or global configuration (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`,
//!   a `HOME` of its own) and no attributes but the work tree's `.gitattributes`, whose
//!   filter and diff drivers name nothing (no configuration defines them);
//! - transports limited to http(s) and local files;
//! - an environment of `PATH` and `LANG` only: tokens reach git only for the one push, as an
//!   HTTP header to the URL Salve chose.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::GitError;

/// A work tree whose git metadata sandboxed code cannot reach.
#[derive(Debug)]
pub struct Protected {
    /// The checkout's own `.git`, moved out of reach.
    git_dir: PathBuf,
    work: PathBuf,
    /// An empty folder git may call home.
    home: PathBuf,
}

/// Settings on every command line: they win over any configuration file.
const HARDENING: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    "core.pager=cat",
    "core.askPass=",
    "core.sshCommand=false",
    "core.gitProxy=",
    "credential.helper=",
    "diff.external=",
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.file.allow=always",
    "http.followRedirects=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
];

impl Protected {
    /// Moves `work/.git` to `private/git` (a folder sandboxed code cannot write; created here) and
    /// puts a disposable `.git` in its place.
    pub fn take(work: &Path, private: &Path) -> Result<Protected, GitError> {
        let dot_git = work.join(".git");
        let meta = std::fs::symlink_metadata(&dot_git).map_err(|e| io("find .git", e))?;
        if !meta.is_dir() {
            return Err(GitError::Failed {
                args: "take the checkout's .git".into(),
                stderr: format!(
                    "{} is not a folder (a worktree or submodule link): a heal needs a plain clone",
                    dot_git.display()
                ),
            });
        }
        std::fs::create_dir_all(private).map_err(|e| io("create the private folder", e))?;
        let git_dir = private.join("git");
        let home = private.join("home");
        std::fs::create_dir_all(&home).map_err(|e| io("create git's home", e))?;
        if std::fs::rename(&dot_git, &git_dir).is_err() {
            copy_tree(&dot_git, &git_dir).map_err(|e| io("copy .git", e))?;
            std::fs::remove_dir_all(&dot_git).map_err(|e| io("remove .git", e))?;
        }
        // The checkout's own config comes back when the heal is done (its remotes, for the job's
        // later commands); the heal's git never reads it.
        let _ = std::fs::copy(git_dir.join("config"), private.join("config.checkout"));
        let p = Protected { git_dir, work: work.to_owned(), home };
        p.sanitize()?;
        p.refresh()?;
        Ok(p)
    }

    /// The protected git folder: sandboxed code may read it (the disposable `.git` borrows its
    /// objects), never write it.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Replaces the protected folder's config with Salve's own (the repository format only),
    /// and drops its hooks and info/attributes.
    fn sanitize(&self) -> Result<(), GitError> {
        let config = self.git_dir.join("config");
        // Read with `--file`: git takes nothing from the file but the values asked for.
        let get = |key: &str| -> Option<String> {
            crate::finish(self.git().args(["config", "--file"]).arg(&config).args(["--get", key]), "config --get").ok()
        };
        let version = get("core.repositoryformatversion").filter(|v| v == "1").unwrap_or_else(|| "0".into());
        let mut text = format!("[core]\n\trepositoryformatversion = {version}\n\tbare = false\n");
        if version == "1" {
            text.push_str("[extensions]\n");
            for key in ["objectformat", "refstorage"] {
                if let Some(v) =
                    get(&format!("extensions.{key}")).filter(|v| v.chars().all(|c| c.is_ascii_alphanumeric()))
                {
                    text.push_str(&format!("\t{key} = {v}\n"));
                }
            }
        }
        std::fs::write(&config, text).map_err(|e| io("write the config", e))?;
        for gone in ["hooks", "info/attributes", "objects/info/alternates", "commondir"] {
            let path = self.git_dir.join(gone);
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
        Ok(())
    }

    /// A git command on the protected folder and the work tree, hardened (see the module).
    fn git(&self) -> Command {
        let mut cmd = hardened(&self.home);
        cmd.env("GIT_DIR", &self.git_dir).env("GIT_WORK_TREE", &self.work);
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<String, GitError> {
        crate::finish(self.git().args(args), &args.join(" "))
    }

    /// Puts a fresh disposable `.git` in the work tree (whatever sandboxed code did to the last
    /// one): HEAD and the index as in the protected folder, the objects borrowed read-only.
    pub fn refresh(&self) -> Result<(), GitError> {
        let scratch = self.work.join(".git");
        if std::fs::symlink_metadata(&scratch).is_ok() {
            let _ = std::fs::remove_dir_all(&scratch).or_else(|_| std::fs::remove_file(&scratch));
        }
        let head = self.head()?;
        let mut clone = self.git();
        clone.env_remove("GIT_DIR").env_remove("GIT_WORK_TREE");
        clone.args(["clone", "--quiet", "--bare", "--shared", "--no-tags"]).arg(&self.git_dir).arg(&scratch);
        crate::finish(&mut clone, "clone --shared")?;
        let local =
            |args: &[&str]| crate::finish(self.git().env("GIT_DIR", &scratch).args(args), &args.join(" ")).map(drop);
        local(&["config", "core.bare", "false"])?;
        local(&["remote", "remove", "origin"])?;
        local(&["update-ref", "--no-deref", "HEAD", &head])?;
        local(&["read-tree", "HEAD"])?;
        local(&["update-index", "-q", "--refresh"]).or(Ok(()))
    }

    /// What commit `sha` changed against its first parent (all of it for a root commit), as
    /// `git diff` text.
    pub fn commit_diff(&self, sha: &str) -> Result<String, GitError> {
        if sha.starts_with('-') || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GitError::Failed { args: "diff-tree".into(), stderr: format!("'{sha}' is not a commit id") });
        }
        self.run(&[
            "diff-tree",
            "-p",
            "-r",
            "--root",
            "--no-commit-id",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "-m",
            "--first-parent",
            sha,
        ])
    }

    /// The commit HEAD points at.
    pub fn head(&self) -> Result<String, GitError> {
        self.run(&["rev-parse", "--verify", "HEAD^{commit}"])
    }

    /// Puts the tracked files under `dirs` (folders from the root) back as HEAD has them, and
    /// removes untracked files there: a change that must not reach them is dropped.
    pub fn restore(&self, dirs: &[&str]) -> Result<(), GitError> {
        for dir in dirs {
            let known = self.run(&["ls-tree", "-r", "--name-only", "HEAD", "--", dir])?;
            if !known.is_empty() {
                self.run(&["checkout", "HEAD", "--", dir])?;
            }
            if self.work.join(dir).exists() {
                self.run(&["clean", "-fdq", "--", dir])?;
            }
        }
        Ok(())
    }

    /// The work tree's untracked files that no ignore rule covers, as paths from its root.
    pub fn untracked(&self) -> Result<Vec<String>, GitError> {
        let out =
            self.git().args(["ls-files", "--others", "--exclude-standard", "-z"]).output().map_err(GitError::Spawn)?;
        if !out.status.success() {
            return Err(GitError::Failed {
                args: "ls-files --others".into(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect())
    }

    /// Stages what changed in tracked files (edits and deletions) and the untracked files in
    /// `new` (paths taken literally), nothing else, and returns the staged diff (no external
    /// diff, no textconv).
    pub fn stage(&self, new: &[String]) -> Result<String, GitError> {
        self.run(&["add", "--update"])?;
        if !new.is_empty() {
            use std::io::Write as _;
            let mut child = self
                .git()
                .env("GIT_LITERAL_PATHSPECS", "1")
                .args(["add", "--pathspec-from-file=-", "--pathspec-file-nul"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(GitError::Spawn)?;
            let list: Vec<u8> = new.iter().flat_map(|p| p.bytes().chain([0])).collect();
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(&list).map_err(GitError::Spawn)?;
            }
            let out = child.wait_with_output().map_err(GitError::Spawn)?;
            if !out.status.success() {
                return Err(GitError::Failed {
                    args: "add NEW FILES".into(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                });
            }
        }
        self.run(&["diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv"])
    }

    /// The staged change's `--stat`.
    pub fn staged_stat(&self) -> Result<String, GitError> {
        self.run(&["diff", "--cached", "--stat", "--no-color", "--no-ext-diff", "--no-textconv"])
    }

    /// Commits what is staged, by `name <email>`, and returns the new commit.
    pub fn commit(&self, message: &str, name: &str, email: &str) -> Result<String, GitError> {
        let mut cmd = self.git();
        cmd.args(["commit", "--quiet", "--no-verify", "--no-gpg-sign", "-m", message]);
        crate::finish(crate::by(&mut cmd, name, email), "commit")?;
        self.head()
    }

    /// Pushes `refspec` to `url` (Salve's choice), the token as an `Authorization` header value.
    pub fn push(&self, url: &str, refspec: &str, auth: Option<&str>, secret: Option<&str>) -> Result<(), GitError> {
        crate::push(self.git(), url, refspec, auth, secret)
    }

    /// Drops every change of the work tree (tracked and untracked), back to HEAD.
    pub fn reset(&self) -> Result<(), GitError> {
        self.run(&["reset", "--quiet", "--hard", "HEAD"])?;
        self.run(&["clean", "-fdq"])?;
        self.refresh()
    }
}

/// When the heal is done (no sandboxed command runs any more), the checkout gets its own `.git`
/// back, with the heal's commit: the job's later commands find a whole repository.
impl Drop for Protected {
    fn drop(&mut self) {
        let scratch = self.work.join(".git");
        let _ = std::fs::remove_dir_all(&scratch).or_else(|_| std::fs::remove_file(&scratch));
        if let Some(private) = self.git_dir.parent() {
            let _ = std::fs::rename(private.join("config.checkout"), self.git_dir.join("config"));
        }
        if std::fs::rename(&self.git_dir, &scratch).is_err() && copy_tree(&self.git_dir, &scratch).is_ok() {
            let _ = std::fs::remove_dir_all(&self.git_dir);
        }
    }
}

/// git with the module's hardening, `home` as its home and working folder: no configuration but
/// Salve's, no hooks, helpers or transports but http(s) and files, an environment of its own.
pub(crate) fn hardened(home: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("LANG", "C.UTF-8")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ATTR_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .current_dir(home);
    for setting in HARDENING {
        cmd.args(["-c", setting]);
    }
    cmd
}

fn io(what: &str, e: std::io::Error) -> GitError {
    GitError::Failed { args: what.to_owned(), stderr: e.to_string() }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}
