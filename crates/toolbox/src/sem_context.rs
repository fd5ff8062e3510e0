//! `sem-context put KEY=VALUE [--force] | get KEY [--fallback V] | delete KEY`
//! (SEMAPHORE.md §4.4): a key/value store shared along a promotion chain, kept in workflow
//! artifacts at `.workflow-context/<pipeline artefact id>/<key>`. Exit codes: 0 ok, 1 missing or
//! exists, 2 storage failure, 3 invalid input; `--ignore-failure` makes every failure 0.

use std::path::PathBuf;

use crate::artifact::scope_dir;
use crate::env;
use crate::storage::{Area, Kind, Storage};

const MAX_VALUE: usize = 20_000;

pub(crate) const USAGE: &str =
    "Usage: sem-context put KEY=VALUE [--force] | get KEY [--fallback VALUE] | delete KEY [--ignore-failure]";

pub fn main(args: &[String]) -> i32 {
    let ignore = args.iter().any(|a| a == "--ignore-failure");
    let args: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--ignore-failure").collect();
    let code = run(&args);
    if ignore { 0 } else { code }
}

fn valid_key(key: &str) -> bool {
    key.len() <= 256
        && !key.contains('/')
        && !key.starts_with('.')
        && key.as_bytes().split(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')).any(|run| run.len() >= 3)
}

fn contexts() -> Result<(PathBuf, Vec<String>), i32> {
    let dir = scope_dir("workflow", &[None, None, None]).map_err(|e| {
        eprintln!("{e}");
        2
    })?;
    let own = env("SEMAPHORE_PIPELINE_ARTEFACT_ID").unwrap_or_default();
    // This pipeline first, then its ancestors, most recent first.
    let mut chain: Vec<String> = (0..100).map_while(|i| env(&format!("SEMAPHORE_PIPELINE_{i}_ARTEFACT_ID"))).collect();
    chain.retain(|id| *id != own);
    chain.reverse();
    chain.insert(0, own);
    Ok((dir.join(".workflow-context"), chain))
}

fn run(args: &[&str]) -> i32 {
    let (root, chain) = match contexts() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match Storage::open(Area::Artifacts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let is_file = |p: PathBuf| store.kind(&p).ok().flatten() == Some(Kind::File);
    let Some(own) = chain.first().filter(|id| !id.is_empty() && !id.contains('/')).cloned() else {
        eprintln!("SEMAPHORE_PIPELINE_ARTEFACT_ID is not set or not valid");
        return 3;
    };
    match args {
        ["put", kv, rest @ ..] => {
            let force = rest.contains(&"--force");
            let Some((key, value)) = kv.split_once('=') else {
                eprintln!("put wants KEY=VALUE");
                return 3;
            };
            if !valid_key(key) || value.is_empty() || value.len() > MAX_VALUE {
                eprintln!(
                    "invalid key or value: keys need 3+ letters, digits, '_' or '-'; values 1 to {MAX_VALUE} bytes"
                );
                return 3;
            }
            if !force && chain.iter().any(|id| is_file(root.join(id).join(key))) {
                eprintln!("key '{key}' already exists; use --force to overwrite");
                return 1;
            }
            let dir = root.join(&own);
            let _ = store.remove(&dir.join(".deleted").join(key));
            match store.write(&dir.join(key), value.as_bytes().to_vec()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("cannot store '{key}': {e}");
                    2
                }
            }
        }
        ["get", key, rest @ ..] => {
            if !valid_key(key) {
                eprintln!("invalid key '{key}'");
                return 3;
            }
            for id in &chain {
                if store.kind(&root.join(id).join(".deleted").join(key)).ok().flatten().is_some() {
                    break;
                }
                if let Some(value) = store.read(&root.join(id).join(key)) {
                    println!("{}", String::from_utf8_lossy(&value));
                    return 0;
                }
            }
            match rest {
                ["--fallback", fallback] => {
                    println!("{fallback}");
                    0
                }
                _ => {
                    eprintln!("key '{key}' not found");
                    1
                }
            }
        }
        ["delete", key] => {
            if !valid_key(key) {
                eprintln!("invalid key '{key}'");
                return 3;
            }
            let dir = root.join(&own);
            let _ = store.remove(&dir.join(key));
            match store.write(&dir.join(".deleted").join(key), Vec::new()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("cannot delete '{key}': {e}");
                    2
                }
            }
        }
        _ => {
            eprintln!("{USAGE}");
            3
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_key;

    #[test]
    fn context_keys_are_names_not_paths() {
        assert!(valid_key("ReleaseVersion"));
        assert!(valid_key("app_1-build"));
        assert!(!valid_key("../x"), "no path");
        assert!(!valid_key(".hidden"));
        assert!(!valid_key("ab"), "too short to name anything");
        assert!(!valid_key(&"k".repeat(257)));
    }
}
