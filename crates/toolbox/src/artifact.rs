//! `artifact push|pull|yank <job|workflow|project> PATH [-d DEST] [-f] [--expire-in AGE]`
//! (SEMAPHORE.md §4.3) in the project's artifact storage (`storage.rs`: the server's folder, or
//! its API from an agent) at `<jobs|workflows|projects>/<id>/<path>`. Remote paths must stay
//! inside their scope: `..` and absolute paths are refused. `--expire-in` (which Semaphore's CLI
//! ignores) is kept: an expiry record at `.expiry/<scope>/<id>/<path>` holds when the artifact
//! goes; a pull after that finds nothing, and the server's sweep (`sweep_expired`) deletes it.

use std::path::{Path, PathBuf};

use crate::env;
use crate::storage::{Area, Storage};

pub(crate) const USAGE: &str = "Usage: artifact push|pull|yank job|workflow|project PATH [--destination|-d DEST] [--force|-f] [--expire-in|-e AGE (10s, 30m, 12h, 7d, 2w, 6M, 1y)] [--job-id|-j ID] [--workflow-id|-w ID] [--project-id|-p ID]";

/// Where expiry records live in the artifact storage, beside the scope folders.
pub const EXPIRY: &str = ".expiry";

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
    /// `--expire-in`, in milliseconds.
    expire_in: Option<u64>,
    ids: [Option<String>; 3],
}

/// `10s`, `30m`, `12h`, `7d`, `2w`, `6M` (30 days), `1y` (365 days) in milliseconds.
pub fn age(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not an age: a number and s, m, h, d, w, M or y (7d, 2w)");
    let unit = text.chars().last().ok_or_else(bad)?;
    let n: u64 = text[..text.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let seconds: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'M' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(seconds * 1000).filter(|ms| *ms > 0).ok_or_else(bad)
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut positional = Vec::new();
    let (mut dest, mut force, mut ids, mut expire_in) = (None, false, [None, None, None], None);
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
            "--expire-in" | "-e" => expire_in = Some(age(&value()?)?),
            "--config" => {
                value()?;
            }
            _ if a.starts_with('-') && a != "-" => return Err(format!("unknown flag {a}\n{USAGE}")),
            _ => positional.push(a.clone()),
        }
    }
    let [verb, scope, path] = positional.as_slice() else {
        return Err(USAGE.to_owned());
    };
    Ok(Opts { verb: verb.clone(), scope: scope.clone(), path: path.clone(), dest, force, expire_in, ids })
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
            let record = Path::new(EXPIRY).join(&target);
            match o.expire_in {
                Some(ms) => {
                    let at = crate::now_ms().saturating_add(ms);
                    store.write(&record, at.to_string().into_bytes())?;
                    println!(
                        "Pushed '{}' to {} artifacts as '{name}' (it expires in {}s).",
                        o.path,
                        o.scope,
                        ms / 1000
                    );
                }
                None => {
                    let _ = store.remove(&record);
                    println!("Pushed '{}' to {} artifacts as '{name}'.", o.path, o.scope);
                }
            }
            Ok(())
        }
        "pull" => {
            let source = dir.join(remote_path(&o.path)?);
            let expired = expiry(&store, &source).is_some_and(|at| at <= crate::now_ms());
            if expired {
                let _ = store.remove(&source);
                let _ = store.remove(&Path::new(EXPIRY).join(&source));
                return Err(format!("'{}' expired and was deleted from the {} artifacts", o.path, o.scope));
            }
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
            let _ = store.remove(&Path::new(EXPIRY).join(&target));
            println!("Deleted '{}' from {} artifacts.", o.path, o.scope);
            Ok(())
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    }
}

/// When the artifact at `rel` expires (ms since the epoch), if it does.
fn expiry(store: &Storage, rel: &Path) -> Option<u64> {
    let bytes = store.read(&Path::new(EXPIRY).join(rel))?;
    String::from_utf8_lossy(&bytes).trim().parse().ok()
}

/// Deletes the artifacts of one project's storage folder `root` whose expiry has passed at
/// `now_ms`, with their records; returns how many went. The server runs it now and then.
pub fn sweep_expired(root: &Path, now_ms: u64) -> usize {
    let records = root.join(EXPIRY);
    let mut gone = 0;
    let mut stack = vec![records.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let due = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<u64>().ok());
            if due.is_none_or(|at| at > now_ms) {
                continue;
            }
            let Ok(rel) = path.strip_prefix(&records) else { continue };
            // The record's path mirrors the artifact's; nothing through a link, nothing outside.
            let artifact = root.join(rel);
            let linked = rel.ancestors().any(|a| {
                !a.as_os_str().is_empty()
                    && std::fs::symlink_metadata(root.join(a)).is_ok_and(|m| m.file_type().is_symlink())
            });
            if !linked {
                let removed = match std::fs::symlink_metadata(&artifact) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&artifact).is_ok(),
                    Ok(_) => std::fs::remove_file(&artifact).is_ok(),
                    Err(_) => false,
                };
                gone += usize::from(removed);
            }
            let _ = std::fs::remove_file(&path);
        }
    }
    gone
}

fn remove(path: &Path) -> Result<(), String> {
    let r = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    r.map_err(|e| format!("cannot delete {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_semaphore_writes_them() {
        assert_eq!(age("10s"), Ok(10_000));
        assert_eq!(age("2w"), Ok(14 * 86_400_000));
        assert_eq!(age("6M"), Ok(180 * 86_400_000));
        for bad in ["", "7", "d", "-1d", "0h", "1.5d", "3x"] {
            assert!(age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sweep_deletes_what_expired_and_nothing_through_a_link() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let r = root.path();
        let write = |p: &str, text: &str| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap_or(r)).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(p, text).unwrap_or_else(|e| panic!("{e}"));
        };
        write("workflows/w1/old.txt", "old");
        write("workflows/w1/fresh.txt", "fresh");
        write(".expiry/workflows/w1/old.txt", "1000");
        write(".expiry/workflows/w1/fresh.txt", "9000");
        let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(outside.path().join("victim"), "keep").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(outside.path(), r.join("jobs")).unwrap_or_else(|e| panic!("{e}"));
        write(".expiry/jobs/victim", "1");
        assert_eq!(sweep_expired(r, 5000), 1);
        assert!(!r.join("workflows/w1/old.txt").exists() && r.join("workflows/w1/fresh.txt").exists());
        assert!(outside.path().join("victim").exists(), "nothing deleted through a link");
        assert!(!r.join(".expiry/workflows/w1/old.txt").exists() && !r.join(".expiry/jobs/victim").exists());
    }

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
