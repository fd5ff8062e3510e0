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

/// One launch path: only `launch` assembles an engine run, sandboxes are built by the runner's
/// `Sandbox::build` alone, and `salve run` does not reach into the server.
#[test]
fn pipelines_are_launched_one_way() {
    let mut offenders = Vec::new();
    for name in crates().into_iter().filter(|c| c != "engine" && c != "launch" && c != "runner") {
        for file in sources(&root().join("crates").join(&name).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let assembles =
                    code.contains("Engine {") || code.contains("Isolation {") || code.contains("Recorder::new");
                if assembles || (file.ends_with("run_cmd.rs") && code.contains("salve_server")) {
                    offenders.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "a pipeline is launched outside salve-launch (use Launch): {offenders:?}");
}

/// A crate's modules, by path (`""` for the crate root, `api::pulls` for `src/api/pulls.rs`).
fn modules(name: &str) -> BTreeMap<String, String> {
    let src = root().join("crates").join(name).join("src");
    let mut out = BTreeMap::new();
    for file in sources(&src) {
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
            parts.pop();
        }
        if parts.first().is_some_and(|p| p == "bin") {
            continue;
        }
        out.insert(parts.join("::"), std::fs::read_to_string(&file).unwrap());
    }
    out
}

/// The modules `text` (module `me`'s code, tests left out) refers to: `crate::a::b` paths
/// (braces expanded), `super::`, and a parent's own children by name.
fn refers_to(me: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let code: String = code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let resolve = |path: &str| -> String {
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        (0..=segs.len()).rev().map(|n| segs[..n].join("::")).find(|p| known.contains(p)).unwrap_or_default()
    };
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + 7..];
        if let Some(inner) = after.strip_prefix('{') {
            for item in inner.split('}').next().unwrap_or("").split(',') {
                out.insert(resolve(item.trim().split(['{', ' ']).next().unwrap_or("")));
            }
        } else {
            let path: String = after.chars().take_while(|c| ident(*c)).collect();
            let path = path.trim_end_matches(':');
            let prefix = if path.ends_with("::{") { path.trim_end_matches("::{") } else { path };
            out.insert(resolve(prefix));
            if let Some(inner) = after[path.len()..].strip_prefix("::{") {
                for item in inner.split('}').next().unwrap_or("").split(',') {
                    out.insert(resolve(&format!("{path}::{}", item.trim())));
                }
            }
        }
        rest = &rest[at + 7..];
    }
    if code.contains("super::") {
        out.insert(me.rsplit_once("::").map_or(String::new(), |(parent, _)| parent.to_owned()));
    }
    for child in known.iter().filter(|k| k.rsplit_once("::").map_or(!me.is_empty() || !k.is_empty(), |(p, _)| p == me))
    {
        let name = child.rsplit("::").next().unwrap_or(child);
        if child.starts_with(me) && child != me && child[me.len()..].trim_start_matches("::") == name {
            let used = code.contains(&format!("{name}::")) || code.contains(&format!("use {name}"));
            if used {
                out.insert(child.clone());
            }
        }
    }
    out.remove(me);
    // A module using what its parent (or the crate root) defines is using its namespace, as
    // Rust code does; only the edges between other modules can make a cycle worth breaking.
    out.retain(|m| !(m.is_empty() || me.starts_with(&format!("{m}::"))));
    out
}

/// Modules of a crate depend on each other without a cycle: what a file uses can be read
/// before it, and a new file cannot quietly become a second hub (`server`'s API once was a
/// 7-file import cycle). Using a parent's (or the root's) items is using the namespace and
/// does not count.
#[test]
fn modules_depend_on_each_other_without_a_cycle() {
    let mut cycles = Vec::new();
    for name in crates() {
        let mods = modules(&name);
        let known: BTreeSet<String> = mods.keys().cloned().collect();
        let graph: BTreeMap<&String, BTreeSet<String>> =
            mods.iter().map(|(m, text)| (m, refers_to(m, text, &known))).collect();
        // Depth-first search for a back edge.
        fn visit(
            node: &str,
            graph: &BTreeMap<&String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == node) {
                let mut cycle = path[at..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            if done.contains(node) {
                return None;
            }
            path.push(node.to_owned());
            for next in graph.get(&node.to_owned()).into_iter().flatten() {
                if let Some(c) = visit(next, graph, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(node.to_owned());
            None
        }
        let mut done = BTreeSet::new();
        for m in mods.keys() {
            if let Some(c) = visit(m, &graph, &mut Vec::new(), &mut done) {
                let shown: Vec<String> =
                    c.iter().map(|m| if m.is_empty() { "(root)".into() } else { m.clone() }).collect();
                cycles.push(format!("{name}: {}", shown.join(" -> ")));
                break;
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other (move what both need into a module of its own): {cycles:#?}"
    );
}
