//! Semaphore's toolbox (SEMAPHORE.md §4), for jobs. The `salve` binary is linked into each job's
//! PATH under the commands' names and dispatches here by the name it was called with.

mod artifact;
mod cache;
mod checkout;
mod install_package;
mod retry;
mod sem_context;
mod sem_service;
mod sem_version;
pub mod storage;
mod test_results;

use std::ffi::OsString;

pub use artifact::sweep_expired as sweep_expired_artifacts;
pub use sem_service::unavailable as sem_service_unavailable;

/// The commands this crate provides.
pub const COMMANDS: &[&str] = &[
    "checkout",
    "retry",
    "checksum",
    "cache",
    "artifact",
    "sem-context",
    "sem-version",
    "sem-service",
    "install-package",
    "test-results",
];

/// Links the toolbox commands, and `salve` itself, to the salve binary in `dir` (refreshed when the binary moved).
pub fn install(dir: &std::path::Path, exe: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for name in COMMANDS.iter().chain(&["salve"]) {
        let link = dir.join(name);
        if std::fs::read_link(&link).is_ok_and(|target| target == exe) {
            continue;
        }
        // Made aside, then renamed over: server replicas sharing a data folder install at once.
        let aside = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&aside);
        std::os::unix::fs::symlink(exe, &aside)?;
        std::fs::rename(&aside, &link)?;
    }
    Ok(())
}

/// Runs toolbox command `name`; returns its exit code.
pub fn main(name: &str, args: &[OsString]) -> i32 {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    if matches!(args.as_slice(), [h] if h == "--help" || h == "-h")
        && let Some(text) = usage(name)
    {
        println!("{text}");
        return 0;
    }
    match name {
        "checkout" => checkout::main(&args),
        "retry" => retry::main(&args),
        "checksum" => checksum(&args),
        "cache" => cache::main(&args),
        "artifact" => artifact::main(&args),
        "sem-context" => sem_context::main(&args),
        "sem-version" => sem_version::main(&args),
        "sem-service" => sem_service::main(&args),
        "install-package" => install_package::main(&args),
        "test-results" => test_results::main(&args),
        _ => {
            eprintln!("{name}: not a Salve toolbox command");
            127
        }
    }
}

/// How to call a toolbox command (`NAME --help`).
fn usage(name: &str) -> Option<&'static str> {
    Some(match name {
        "checkout" => {
            "Usage: checkout [--use-cache]\nClones the job's repository at its commit into $SEMAPHORE_GIT_DIR and enters it."
        }
        "retry" => retry::USAGE,
        "checksum" => "Usage: checksum FILE\nPrints the file's MD5 in hex (for cache keys).",
        "cache" => cache::USAGE,
        "artifact" => artifact::USAGE,
        "sem-context" => sem_context::USAGE,
        "sem-version" => sem_version::USAGE,
        "sem-service" => sem_service::USAGE,
        "install-package" => install_package::USAGE,
        "test-results" => test_results::USAGE,
        _ => return None,
    })
}

/// `checksum FILE`: the file's MD5, in hex (used in cache keys).
fn checksum(args: &[String]) -> i32 {
    let [file] = args else {
        eprintln!("Usage: checksum FILE");
        return 1;
    };
    match std::fs::read(file) {
        Ok(bytes) => {
            println!("{:x}", md5::compute(bytes));
            0
        }
        Err(e) => {
            eprintln!("checksum: cannot read {file}: {e}");
            1
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
