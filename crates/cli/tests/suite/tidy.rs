//! Tidiness the compiler cannot check: the crate graph is the one ARCHITECTURE.md draws, only
//! the git crate spawns git, and the pure crates never touch the filesystem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

fn crates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| root().join("crates").join(n).join("Cargo.toml").is_file())
        .collect();
    names.sort();
    names
}

/// The Salve crates a crate's `[dependencies]` name (dev-dependencies aside).
fn dependencies(name: &str) -> BTreeSet<String> {
    let toml = std::fs::read_to_string(root().join("crates").join(name).join("Cargo.toml")).unwrap();
    let mut deps = BTreeSet::new();
    let mut section = String::new();
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        if section == "[dependencies]"
            && let Some(dep) = line.strip_prefix("salve-")
        {
            deps.insert(dep.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap().to_owned());
        }
    }
    deps
}

#[test]
fn the_crate_graph_is_the_one_architecture_md_draws() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = doc.find("| crate | depends on |").expect("ARCHITECTURE.md has the crate table");
    let mut drawn: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in doc[start..].lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let deps = cells[1].split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect();
        drawn.insert(cells[0].to_owned(), deps);
    }
    let actual: BTreeMap<String, BTreeSet<String>> =
        crates().into_iter().map(|c| (c.clone(), dependencies(&c))).collect();
    assert_eq!(drawn, actual, "update ARCHITECTURE.md's crate table (and its drawing) with the change");
}

#[test]
fn only_the_git_crate_spawns_git() {
    let mut offenders = Vec::new();
    for name in crates().into_iter().filter(|c| c != "git") {
        for file in sources(&root().join("crates").join(&name).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let spawns = line.contains("Command::new(\"git\")") || line.contains("Command::new(GIT");
                if spawns && !line.trim_start().starts_with("//") {
                    offenders.push(format!("{}:{}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "git is spawned outside the git crate (add a named operation there): {offenders:?}");
}

#[test]
fn the_pure_crates_never_touch_the_filesystem() {
    let mut offenders = Vec::new();
    for name in ["pipeline", "logs", "engine"] {
        for file in sources(&root().join("crates").join(name).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if ["std::fs", "fs::", "File::open", "File::create", "OpenOptions", "tokio::fs"]
                    .iter()
                    .any(|p| code.contains(p))
                {
                    offenders.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "a pure crate touches the filesystem (take bytes, give values): {offenders:?}");
}
