//! `artifact push|pull|yank <job|workflow|project> PATH [-d DEST] [-f]` (SEMAPHORE.md §4.3) on
//! local storage: `$SALVE_ARTIFACT_DIR/<jobs|workflows|projects>/<id>/<path>`. Remote paths
//! must stay inside their scope: `..` and absolute paths are refused.

use std::path::{Component, Path, PathBuf};

use crate::env;

const USAGE: &str = "Usage: artifact push|pull|yank job|workflow|project PATH [--destination|-d DEST] [--force|-f] [--job-id|-j ID] [--workflow-id|-w ID] [--project-id|-p ID]";

pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("{message}");
            1
        }
    }
}

struct Opts {
    verb: String,
    scope: String,
    path: String,
    dest: Option<String>,
    force: bool,
    ids: [Option<String>; 3],
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut positional = Vec::new();
    let (mut dest, mut force, mut ids) = (None, false, [None, None, None]);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "-d" | "--destination" => dest = Some(value()?),
            "-f" | "--force" => force = true,
            "-j" | "--job-id" => ids[0] = Some(value()?),
            "-w" | "--workflow-id" => ids[1] = Some(value()?),
            "-p" | "--project-id" => ids[2] = Some(value()?),
            "-v" | "--verbose" => {}
            "--expire-in" | "-e" | "--config" => {
                value()?;
            }
            _ if a.starts_with('-') && a != "-" => return Err(format!("unknown flag {a}\n{USAGE}")),
            _ => positional.push(a.clone()),
        }
    }
    let [verb, scope, path] = positional.as_slice() else {
        return Err(USAGE.to_owned());
    };
    Ok(Opts { verb: verb.clone(), scope: scope.clone(), path: path.clone(), dest, force, ids })
}

/// A remote path made safe: relative, no `..`, no empty result.
pub fn remote_path(path: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("'{path}' leaves the artifact store: paths may not contain '..'"));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("'{path}' is not a usable artifact path"));
    }
    Ok(out)
}

/// The folder of a scope: `$SALVE_ARTIFACT_DIR/<jobs|workflows|projects>/<id>`.
pub fn scope_dir(scope: &str, ids: &[Option<String>; 3]) -> Result<PathBuf, String> {
    let root = env("SALVE_ARTIFACT_DIR")
        .ok_or("no artifact storage is configured for this job (SALVE_ARTIFACT_DIR is not set)")?;
    let (folder, id) = match scope {
        "job" => ("jobs", ids[0].clone().or_else(|| env("SEMAPHORE_JOB_ID"))),
        "workflow" => ("workflows", ids[1].clone().or_else(|| env("SEMAPHORE_WORKFLOW_ID"))),
        "project" => ("projects", ids[2].clone().or_else(|| env("SEMAPHORE_PROJECT_ID"))),
        other => return Err(format!("unknown scope '{other}': use job, workflow or project")),
    };
    let id = id.ok_or_else(|| format!("no {scope} id: set SEMAPHORE_{}_ID or pass its flag", scope.to_uppercase()))?;
    if id.is_empty() || id.contains('/') || id == ".." || id == "." {
        return Err(format!("'{id}' is not a valid {scope} id"));
    }
    Ok(Path::new(&root).join(folder).join(id))
}

fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let dir = scope_dir(&o.scope, &o.ids)?;
    match o.verb.as_str() {
        "push" => {
            let name = o.dest.clone().unwrap_or_else(|| {
                Path::new(&o.path).file_name().map_or_else(|| o.path.clone(), |n| n.to_string_lossy().into_owned())
            });
            let target = dir.join(remote_path(&name)?);
            if target.exists() && !o.force {
                return Err(format!(
                    "'{name}' already exists in the remote storage; delete it first, or use --force flag"
                ));
            }
            if target.exists() {
                remove(&target)?;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("cannot write the artifact store: {e}"))?;
            }
            if o.path == "-" || o.path == "/dev/stdin" {
                let mut f = std::fs::File::create(&target).map_err(|e| e.to_string())?;
                std::io::copy(&mut std::io::stdin().lock(), &mut f).map_err(|e| e.to_string())?;
            } else {
                copy(Path::new(&o.path), &target)?;
            }
            println!("Pushed '{}' to {} artifacts as '{name}'.", o.path, o.scope);
            Ok(())
        }
        "pull" => {
            let source = dir.join(remote_path(&o.path)?);
            if !source.exists() {
                return Err(format!("'{}' was not found in the {} artifacts", o.path, o.scope));
            }
            let dest = o.dest.clone().unwrap_or_else(|| {
                Path::new(&o.path).file_name().map_or_else(|| o.path.clone(), |n| n.to_string_lossy().into_owned())
            });
            let dest = Path::new(&dest);
            if dest.exists() && !o.force {
                return Err(format!(
                    "'{}' already exists locally; delete it first, or use --force flag",
                    dest.display()
                ));
            }
            if dest.exists() {
                remove(dest)?;
            }
            copy(&source, dest)?;
            println!("Pulled '{}' from {} artifacts to '{}'.", o.path, o.scope, dest.display());
            Ok(())
        }
        "yank" | "delete" => {
            let target = dir.join(remote_path(&o.path)?);
            if !target.exists() {
                return Err(format!("'{}' was not found in the {} artifacts", o.path, o.scope));
            }
            remove(&target)?;
            println!("Deleted '{}' from {} artifacts.", o.path, o.scope);
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    }
}

fn remove(path: &Path) -> Result<(), String> {
    let r = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    r.map_err(|e| format!("cannot delete {}: {e}", path.display()))
}

/// Copies a file or a folder (recursively; symlinks are copied as the files they point to).
fn copy(from: &Path, to: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(from).map_err(|e| format!("cannot read '{}': {e}", from.display()))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| format!("cannot create '{}': {e}", to.display()))?;
        let entries = std::fs::read_dir(from).map_err(|e| format!("cannot read '{}': {e}", from.display()))?;
        for entry in entries.flatten() {
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ()).map_err(|e| format!("cannot copy '{}': {e}", from.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job's artifact path never leaves the store: `..` is refused, roots and `.` are dropped.
    #[test]
    fn remote_paths_stay_in_the_store() {
        assert_eq!(remote_path("reports/junit.xml"), Ok(PathBuf::from("reports/junit.xml")));
        assert_eq!(remote_path("/abs/./x"), Ok(PathBuf::from("abs/x")));
        assert!(remote_path("../../etc/passwd").is_err());
        assert!(remote_path("a/../../b").is_err());
        assert!(remote_path("/").is_err());
        assert!(remote_path("").is_err());
    }
}
