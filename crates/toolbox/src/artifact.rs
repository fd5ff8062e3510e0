//! `artifact push|pull|yank <job|workflow|project> PATH [-d DEST] [-f]` (SEMAPHORE.md §4.3) in
//! the project's artifact storage (`storage.rs`: the server's folder, or its API from an agent)
//! at `<jobs|workflows|projects>/<id>/<path>`. Remote paths must stay inside their scope: `..`
//! and absolute paths are refused.

use std::path::{Path, PathBuf};

use crate::env;
use crate::storage::{Area, Storage};

pub(crate) const USAGE: &str = "Usage: artifact push|pull|yank job|workflow|project PATH [--destination|-d DEST] [--force|-f] [--job-id|-j ID] [--workflow-id|-w ID] [--project-id|-p ID]";

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
    crate::storage::inside(path)
}

/// The folder of a scope in the artifact storage: `<jobs|workflows|projects>/<id>`.
pub fn scope_dir(scope: &str, ids: &[Option<String>; 3]) -> Result<PathBuf, String> {
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
    Ok(Path::new(folder).join(id))
}

fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let dir = scope_dir(&o.scope, &o.ids)?;
    let store = Storage::open(Area::Artifacts)?;
    match o.verb.as_str() {
        "push" => {
            let name = o.dest.clone().unwrap_or_else(|| {
                Path::new(&o.path).file_name().map_or_else(|| o.path.clone(), |n| n.to_string_lossy().into_owned())
            });
            let target = dir.join(remote_path(&name)?);
            if store.kind(&target)?.is_some() {
                if !o.force {
                    return Err(format!(
                        "'{name}' already exists in the remote storage; delete it first, or use --force flag"
                    ));
                }
                store.remove(&target)?;
            }
            if o.path == "-" || o.path == "/dev/stdin" {
                store.put_reader(std::io::stdin(), &target)?;
            } else {
                store.put(Path::new(&o.path), &target)?;
            }
            println!("Pushed '{}' to {} artifacts as '{name}'.", o.path, o.scope);
            Ok(())
        }
        "pull" => {
            let source = dir.join(remote_path(&o.path)?);
            if store.kind(&source)?.is_none() {
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
            // As Semaphore's artifact CLI does: the destination's folders are made.
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
            }
            store.get(&source, dest)?;
            println!("Pulled '{}' from {} artifacts to '{}'.", o.path, o.scope, dest.display());
            Ok(())
        }
        "yank" | "delete" => {
            let target = dir.join(remote_path(&o.path)?);
            if !store.remove(&target)? {
                return Err(format!("'{}' was not found in the {} artifacts", o.path, o.scope));
            }
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
