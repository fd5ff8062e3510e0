//! Where pipeline files come from: a work tree on disk, or a commit of a repository.

use std::path::{Path, PathBuf};

use salve_pipeline::FileSource;

use crate::Repo;

/// Files of a work tree. Paths are repository-relative and already normalised by the
/// pipeline crate (no `..`); symlinks that lead outside the tree are refused.
pub struct WorkTree {
    root: PathBuf,
}

impl WorkTree {
    pub fn new(root: impl Into<PathBuf>) -> WorkTree {
        WorkTree { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl FileSource for WorkTree {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        let full = self.root.join(path);
        let real = full.canonicalize().map_err(|e| format!("{e}"))?;
        let root = self.root.canonicalize().map_err(|e| format!("{e}"))?;
        if !real.starts_with(&root) {
            return Err("it leads outside the repository".into());
        }
        std::fs::read(&real).map_err(|e| format!("{e}"))
    }
}

/// Files of one commit of a repository (`git show REV:PATH`).
pub struct AtCommit<'a> {
    pub repo: &'a Repo,
    pub rev: String,
}

impl FileSource for AtCommit<'_> {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.repo.show_file(&self.rev, path).map_err(|e| e.to_string())
    }
}
