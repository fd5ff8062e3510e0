//! `sem-version LANG VERSION` (Semaphore's toolchain switch): finds an installed toolchain of
//! that version and prints the shell code that puts it first for the rest of the job; the job's
//! shell function `sem-version` (the runner defines and exports it) evaluates that code, so the
//! switch persists like Semaphore's. Installed toolchains are found where they are usually put:
//! the operator's toolchains folder (`$SALVE_TOOLCHAINS/<lang>/<version>`), mise and asdf
//! installs, rustup toolchains, pyenv and nvm versions, Debian's versioned packages
//! (`/usr/lib/go-*`, `/usr/lib/jvm/*`, `/usr/bin/python3.*`) and the system's own binary. A
//! version that is not installed is an error that lists those that are and says how to add one.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env;

pub(crate) const USAGE: &str = "Usage: sem-version LANGUAGE VERSION (go, python, node, ruby, java, php, erlang, elixir, rust, scala, kubectl, flutter)";

/// A toolchain found on this machine.
#[derive(Debug, Clone)]
struct Install {
    version: String,
    /// Its binaries, put first on PATH (none: already there).
    bin: Option<PathBuf>,
    /// Variables it needs besides PATH.
    env: Vec<(String, String)>,
    /// Where it was found, for people.
    from: String,
}

pub fn main(args: &[String]) -> i32 {
    let shell = args.first().is_some_and(|a| a == "--shell");
    let rest: Vec<&str> = args.iter().skip(usize::from(shell)).map(String::as_str).collect();
    if matches!(rest.as_slice(), ["--help" | "-h"]) {
        println!("{USAGE}\nSwitches the job to an installed toolchain of that version for the rest of the job.");
        return 0;
    }
    let [lang, version] = rest.as_slice() else {
        eprintln!("{USAGE}");
        return 1;
    };
    let lang = canonical(lang);
    let Some(tool) = TOOLS.iter().find(|t| t.lang == lang) else {
        eprintln!("sem-version: '{lang}' is not a language sem-version knows\n{USAGE}");
        return 1;
    };
    let installs = find(tool);
    let Some(chosen) = choose(&installs, version) else {
        let mut listed: Vec<String> = installs.iter().map(|i| format!("{} ({})", i.version, i.from)).collect();
        listed.dedup();
        let have = if listed.is_empty() { "none".to_owned() } else { listed.join(", ") };
        eprintln!(
            "sem-version: {lang} {version} is not installed on this machine. Installed: {have}. Add it with the \
             system's packages{}, with mise or asdf, or as {}/{lang}/{version}/bin in the toolchains folder \
             (salve.toml: toolchains_dir).",
            tool.debian_hint.map(|h| format!(" ({})", h.replace("{v}", version))).unwrap_or_default(),
            env("SALVE_TOOLCHAINS").unwrap_or_else(|| "TOOLCHAINS".into()),
        );
        return 1;
    };
    let mut code = String::new();
    if let Some(bin) = &chosen.bin {
        code.push_str(&format!("export PATH={}:\"$PATH\"\n", quote(&bin.to_string_lossy())));
    }
    for (k, v) in &chosen.env {
        code.push_str(&format!("export {k}={}\n", quote(v)));
    }
    code.push_str("hash -r\n");
    eprintln!("sem-version: {lang} {} ({})", chosen.version, chosen.from);
    if shell {
        print!("{code}");
    } else {
        // Run on its own, it cannot change the calling shell: say what it would do.
        eprintln!("sem-version: run as a command of the job to switch; the shell code is:\n{code}");
    }
    0
}

fn canonical(lang: &str) -> String {
    match lang.to_ascii_lowercase().as_str() {
        "golang" => "go".into(),
        "nodejs" | "node.js" => "node".into(),
        "jdk" | "openjdk" => "java".into(),
        other => other.to_owned(),
    }
}

/// What sem-version knows of a language.
struct Tool {
    lang: &'static str,
    /// The names mise and asdf install it under.
    managers: &'static [&'static str],
    /// The binary whose version the system's own install reports.
    binary: &'static str,
    version_args: &'static [&'static str],
    /// Variables that point at the toolchain's folder.
    home_vars: &'static [&'static str],
    debian_hint: Option<&'static str>,
}

const TOOLS: &[Tool] = &[
    tool("go", &["go", "golang"], "go", &["version"], &["GOROOT"], Some("apt-get install golang-{v}-go")),
    tool("python", &["python"], "python3", &["--version"], &[], Some("apt-get install python{v}")),
    tool("node", &["node", "nodejs"], "node", &["--version"], &[], None),
    tool("ruby", &["ruby"], "ruby", &["--version"], &[], None),
    tool("java", &["java"], "java", &["-version"], &["JAVA_HOME"], Some("apt-get install openjdk-{v}-jdk")),
    tool("php", &["php"], "php", &["--version"], &[], None),
    tool(
        "erlang",
        &["erlang"],
        "erl",
        &["-noshell", "-eval", "io:format(\"~s\", [erlang:system_info(otp_release)]), halt()."],
        &[],
        None,
    ),
    tool("elixir", &["elixir"], "elixir", &["--version"], &[], None),
    tool("rust", &["rust"], "rustc", &["--version"], &[], None),
    tool("scala", &["scala"], "scala", &["-version"], &[], None),
    tool("kubectl", &["kubectl"], "kubectl", &["version", "--client"], &[], None),
    tool("flutter", &["flutter"], "flutter", &["--version"], &[], None),
];

const fn tool(
    lang: &'static str,
    managers: &'static [&'static str],
    binary: &'static str,
    version_args: &'static [&'static str],
    home_vars: &'static [&'static str],
    debian_hint: Option<&'static str>,
) -> Tool {
    Tool { lang, managers, binary, version_args, home_vars, debian_hint }
}

/// Every install of `tool` this job can see, from every source.
fn find(tool: &Tool) -> Vec<Install> {
    let mut out = Vec::new();
    let folder = |dir: PathBuf, version: String, from: &str| {
        let bin = dir.join("bin");
        let bin = if bin.is_dir() { bin } else { dir.clone() };
        let env = tool.home_vars.iter().map(|v| ((*v).to_owned(), dir.to_string_lossy().into_owned())).collect();
        Install { version, bin: Some(bin), env, from: format!("{from} {}", dir.display()) }
    };
    if let Some(root) = env("SALVE_TOOLCHAINS") {
        for (version, dir) in subdirs(&Path::new(&root).join(tool.lang)) {
            out.push(folder(dir, version, "toolchains folder"));
        }
    }
    let home = env("HOME").map(PathBuf::from);
    let mise = env("MISE_DATA_DIR").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".local/share/mise")));
    let asdf = env("ASDF_DATA_DIR").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".asdf")));
    for (root, from) in [(mise, "mise"), (asdf, "asdf")] {
        let Some(root) = root else { continue };
        for name in tool.managers {
            for (version, dir) in subdirs(&root.join("installs").join(name)) {
                // asdf's go keeps the toolchain one level down.
                let dir = if dir.join("go/bin").is_dir() { dir.join("go") } else { dir };
                out.push(folder(dir, version, from));
            }
        }
    }
    match tool.lang {
        "rust" => {
            let rustup = env("RUSTUP_HOME").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".rustup")));
            if let Some(rustup) = rustup {
                for (name, dir) in subdirs(&rustup.join("toolchains")) {
                    let version = name.split_once('-').map_or(name.as_str(), |(v, _)| v).to_owned();
                    out.push(Install {
                        version,
                        bin: Some(dir.join("bin")),
                        env: vec![("RUSTUP_TOOLCHAIN".into(), name.clone())],
                        from: format!("rustup {name}"),
                    });
                }
            }
        }
        "python" => {
            let pyenv = env("PYENV_ROOT").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".pyenv")));
            if let Some(pyenv) = pyenv {
                for (version, dir) in subdirs(&pyenv.join("versions")) {
                    out.push(folder(dir, version, "pyenv"));
                }
            }
            // Debian's python3.N: a folder of the job's own with `python`, `python3` and `pip`.
            for (name, path) in files(Path::new("/usr/bin")) {
                let Some(v) = name.strip_prefix("python3.").filter(|v| v.chars().all(|c| c.is_ascii_digit())) else {
                    continue;
                };
                let version = system_version(&path, &["--version"]).unwrap_or_else(|| format!("3.{v}"));
                if let Some(shims) = python_shims(&path, &version) {
                    out.push(Install { version, bin: Some(shims), env: Vec::new(), from: path.display().to_string() });
                }
            }
        }
        "node" => {
            let nvm = env("NVM_DIR").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".nvm")));
            if let Some(nvm) = nvm {
                for (version, dir) in subdirs(&nvm.join("versions/node")) {
                    out.push(folder(dir, version.trim_start_matches('v').to_owned(), "nvm"));
                }
            }
        }
        "go" => {
            for (name, dir) in subdirs(Path::new("/usr/lib")) {
                if let Some(v) = name.strip_prefix("go-") {
                    let version = std::fs::read_to_string(dir.join("VERSION"))
                        .ok()
                        .and_then(|t| t.lines().next().map(|l| l.trim_start_matches("go").to_owned()))
                        .unwrap_or_else(|| v.to_owned());
                    out.push(folder(dir, version, "Debian"));
                }
            }
            if let Ok(text) = std::fs::read_to_string("/usr/local/go/VERSION") {
                let version = text.lines().next().unwrap_or("").trim_start_matches("go").to_owned();
                out.push(folder(PathBuf::from("/usr/local/go"), version, "installed"));
            }
        }
        "java" => {
            for (name, dir) in subdirs(Path::new("/usr/lib/jvm")) {
                if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                    continue;
                }
                let version = name
                    .split(['-', '.'])
                    .find(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() && *p != "1")
                    .unwrap_or(&name)
                    .to_owned();
                out.push(folder(dir, version, "JVM"));
            }
        }
        _ => {}
    }
    // The system's own binary, as it is on PATH.
    if let Some(version) = which(tool.binary).and_then(|p| system_version(&p, tool.version_args)) {
        out.push(Install { version, bin: None, env: Vec::new(), from: format!("{} on PATH", tool.binary) });
    }
    out
}

/// The installed version that matches `wanted`: the same, or the newest one it is a prefix of
/// (`3.11` takes `3.11.7`; `22` takes `22.3.0`).
fn choose<'a>(installs: &'a [Install], wanted: &str) -> Option<&'a Install> {
    choose_version(installs, wanted, |i| &i.version)
}

/// The item whose version is `wanted`, or the newest whose version starts with it and a dot
/// (`3.11` -> `3.11.7`).
pub(crate) fn choose_version<'a, T>(items: &'a [T], wanted: &str, version: impl Fn(&T) -> &str) -> Option<&'a T> {
    let wanted = wanted.trim_start_matches('v');
    if let Some(exact) = items.iter().find(|i| version(i) == wanted) {
        return Some(exact);
    }
    items
        .iter()
        .filter(|i| version(i).strip_prefix(wanted).is_some_and(|rest| rest.starts_with('.')))
        .max_by(|a, b| compare_versions(version(a), version(b)))
}

pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<u64> { v.split(['.', '-']).map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a).cmp(&parts(b))
}

/// The folders in `dir` by name, sorted.
pub(crate) fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

pub(crate) fn which(binary: &str) -> Option<PathBuf> {
    let path = env("PATH")?;
    path.split(':').map(|d| Path::new(d).join(binary)).find(|p| p.is_file())
}

/// The first version-like word `binary args` prints (`go version go1.19.8` → `1.19.8`).
pub(crate) fn system_version(binary: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(binary).args(args).stdin(std::process::Stdio::null()).output().ok()?;
    version_in(&(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)))
}

/// The first version-like word of `text` ("postgres (PostgreSQL) 15.14" → `15.14`).
pub(crate) fn version_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|w| w.trim_end_matches('.').to_owned())
}

/// A folder in the job's home with `python`, `python3` and `pip` for one system Python.
fn python_shims(python: &Path, version: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env("HOME")?).join(".salve/sem-version").join(format!("python-{version}"));
    std::fs::create_dir_all(&dir).ok()?;
    for name in ["python", "python3"] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(python, &link).ok()?;
    }
    let pip = format!("#!/bin/sh\nexec {} -m pip \"$@\"\n", quote(&python.to_string_lossy()));
    for name in ["pip", "pip3"] {
        std::fs::write(dir.join(name), &pip).ok()?;
        std::fs::set_permissions(dir.join(name), std::os::unix::fs::PermissionsExt::from_mode(0o755)).ok()?;
    }
    Some(dir)
}

/// `s` as one single-quoted shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: &str) -> Install {
        Install { version: version.into(), bin: None, env: Vec::new(), from: String::new() }
    }

    /// A version asks for the same one, or the newest it is a prefix of at a dot.
    #[test]
    fn versions_match_exactly_or_by_prefix_at_a_dot() {
        let installs = [at("3.11.7"), at("3.11.10"), at("3.1.2"), at("stable"), at("22.3.0")];
        assert_eq!(choose(&installs, "3.11").map(|i| i.version.as_str()), Some("3.11.10"));
        assert_eq!(choose(&installs, "3.1").map(|i| i.version.as_str()), Some("3.1.2"));
        assert_eq!(choose(&installs, "stable").map(|i| i.version.as_str()), Some("stable"));
        assert_eq!(choose(&installs, "v22").map(|i| i.version.as_str()), Some("22.3.0"));
        assert!(choose(&installs, "3.12").is_none());
        assert!(choose(&installs, "2").is_none());
    }
}
