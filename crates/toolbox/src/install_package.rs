//! `install-package PACKAGE[=VERSION]...` (Semaphore's Debian package helper), for a job that
//! is not root: apt downloads the packages the machine lacks (dependencies included, those the
//! machine has skipped) into the job's home (from the project's cache when a job downloaded the
//! same set before on this system release; stored there otherwise), they are unpacked under `~/.salve/packages`, and
//! the shell code this prints (run by the job's `install-package` function) puts their
//! binaries, libraries, headers and pkg-config files first for the rest of the job. Maintainer
//! scripts do not run: what a package sets up at install time beyond its files is not there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::env;

pub(crate) const USAGE: &str = "Usage: install-package [--skip-update] PACKAGE[=VERSION]...
Downloads Debian packages this machine lacks (with their dependencies) and unpacks them for the rest of the job.";

pub fn main(args: &[String]) -> i32 {
    let shell = args.first().is_some_and(|a| a == "--shell");
    let packages: Vec<&str> = args
        .iter()
        .skip(usize::from(shell))
        .map(String::as_str)
        .filter(|a| !matches!(*a, "--skip-update" | "--update" | "--update-new"))
        .collect();
    if packages.is_empty() || packages.iter().any(|p| p.starts_with('-')) {
        eprintln!("{USAGE}");
        return 1;
    }
    match install(&packages) {
        Ok(prefix) => {
            let code = shell_code(&prefix);
            if shell {
                print!("{code}");
            } else {
                eprintln!("install-package: run as a command of the job to use them; the shell code is:\n{code}");
            }
            0
        }
        Err(e) => {
            eprintln!("install-package: {e}");
            1
        }
    }
}

fn install(packages: &[&str]) -> Result<PathBuf, String> {
    let home = env("HOME").ok_or("HOME is not set")?;
    let prefix = Path::new(&home).join(".salve/packages");
    let debs = prefix.join("debs");
    std::fs::create_dir_all(debs.join("partial")).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    // Packages a job of the project downloaded before come from the cache store.
    let key = cache_key(packages);
    let cached = quiet_cache(&prefix, &["restore", &key]);
    // apt's output goes to the job's log, never to the shell code on standard output.
    let out = Command::new("apt-get")
        .args(["install", "--download-only", "--yes", "--no-install-recommends", "-o", "Debug::NoLocking=1", "-o"])
        .arg(format!("Dir::Cache::archives={}", debs.display()))
        .arg("--")
        .args(packages)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-get ({e}): install-package needs a Debian or Ubuntu machine"))?;
    eprint!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!(
            "apt-get could not download {} (see above: a misspelt name, or a package list the machine's operator must update with apt-get update)",
            packages.join(" ")
        ));
    }
    if !cached.contains("HIT:") && has_debs(&debs) {
        quiet_cache(&prefix, &["store", &key, "debs"]);
    }
    let mut unpacked = 0;
    for entry in std::fs::read_dir(&debs).map_err(|e| e.to_string())?.flatten() {
        let deb = entry.path();
        if deb.extension().is_none_or(|e| e != "deb") {
            continue;
        }
        let ok = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&prefix).status().is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("cannot unpack {}", deb.display()));
        }
        alternatives(&deb, &prefix);
        let _ = std::fs::remove_file(&deb);
        unpacked += 1;
    }
    eprintln!(
        "install-package: {} ({unpacked} package file(s) unpacked into {})",
        packages.join(" "),
        prefix.display()
    );
    Ok(prefix)
}

/// The cache key of a set of packages on this release of the system.
fn cache_key(packages: &[&str]) -> String {
    let mut sorted: Vec<&str> = packages.to_vec();
    sorted.sort_unstable();
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let release = release.lines().filter(|l| l.starts_with("ID=") || l.starts_with("VERSION_ID=")).collect::<Vec<_>>();
    let arch = std::env::consts::ARCH;
    format!("install-package-{arch}-{:x}", md5::compute(format!("{}|{}", sorted.join(" "), release.join("|"))))
}

fn has_debs(dir: &Path) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| e.path().extension().is_some_and(|x| x == "deb"))
}

/// Runs the toolbox's `cache` in `dir` (paths stored relative to it), its output going to the
/// job's log; what it printed.
fn quiet_cache(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("cache").args(args).current_dir(dir).stdin(Stdio::null()).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr));
    let text = text.unwrap_or_default();
    eprint!("{text}");
    text
}

/// The links a package's maintainer script would make with `update-alternatives --install LINK
/// NAME PATH PRIORITY` (Debian's `figlet` is `/usr/bin/figlet-figlet` until then), made under
/// `prefix` when the link is not there yet.
fn alternatives(deb: &Path, prefix: &Path) {
    let control = prefix.join(".control");
    let _ = std::fs::remove_dir_all(&control);
    let extracted = Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control).status().is_ok_and(|s| s.success());
    let script = std::fs::read_to_string(control.join("postinst")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&control);
    if !extracted {
        return;
    }
    let script = script.replace("\\\n", " ");
    let words: Vec<&str> = script.split_whitespace().collect();
    for (i, _) in words.iter().enumerate().filter(|(_, w)| **w == "--install") {
        let (Some(link), Some(path)) = (words.get(i + 1), words.get(i + 3)) else { continue };
        let (Some(link), Some(path)) = (link.strip_prefix('/'), path.strip_prefix('/')) else { continue };
        let (at, target) = (prefix.join(link), prefix.join(path));
        if target.exists() && std::fs::symlink_metadata(&at).is_err() {
            let _ = std::os::unix::fs::symlink(&target, &at);
        }
    }
}

/// The variables that put what is unpacked under `prefix` first.
fn shell_code(prefix: &Path) -> String {
    let p = prefix.to_string_lossy();
    let arch = ["x86_64-linux-gnu", "aarch64-linux-gnu"];
    let mut libs = Vec::new();
    for l in ["usr/lib", "lib"] {
        libs.push(format!("{p}/{l}"));
        libs.extend(arch.iter().map(|a| format!("{p}/{l}/{a}")));
    }
    let pkgconfig: Vec<String> = ["usr/lib/pkgconfig", "usr/share/pkgconfig"]
        .iter()
        .map(|d| format!("{p}/{d}"))
        .chain(arch.iter().map(|a| format!("{p}/usr/lib/{a}/pkgconfig")))
        .collect();
    let mut code = String::new();
    let mut add = |var: &str, dirs: &[String]| {
        let joined = dirs.join(":");
        code.push_str(&format!("export {var}={}\"${{{var}:+:${var}}}\"\n", quote(&joined)));
    };
    add(
        "PATH",
        &[
            format!("{p}/usr/local/bin"),
            format!("{p}/usr/bin"),
            format!("{p}/usr/sbin"),
            format!("{p}/bin"),
            format!("{p}/usr/games"),
        ],
    );
    add("LD_LIBRARY_PATH", &libs);
    add("LIBRARY_PATH", &libs);
    add("CPATH", &[format!("{p}/usr/include")]);
    add("PKG_CONFIG_PATH", &pkgconfig);
    code.push_str("hash -r\n");
    code
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
