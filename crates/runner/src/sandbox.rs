//! Where a job's bash runs. With bubblewrap: a read-only view of the machine (so toolchains
//! installed anywhere are found), a writable job home, a private `/tmp`, fresh PID/IPC/UTS
//! namespaces (a job cannot see or signal other processes, nor read their `/proc/*/environ`),
//! Salve's data directory hidden except for this job's own folders, and optionally no network.
//! Inside, `salve __jail` adds a Landlock rule set (writes only where bwrap allows them) and the
//! resource limits, then runs bash. Nested in another job's sandbox (a heal verifying a fix),
//! bubblewrap cannot run again; the jail's Landlock rules (files and TCP) restrict alone. Without a sandbox (`--no-sandbox`, asked for explicitly),
//! bash runs directly, still with a cleared environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[derive(Debug, Clone)]
pub struct Sandbox {
    /// `None`: no isolation at all (the user said `--no-sandbox`).
    pub isolation: Option<Isolation>,
    /// The program and leading arguments that run [`crate::jail::main`] (`salve __jail`): the
    /// Landlock layer and the resource limits. Without it only bwrap isolates.
    pub jail: Option<Vec<OsString>>,
    pub network: bool,
    pub memory_bytes: Option<u64>,
    pub max_processes: Option<u64>,
    /// Already inside a job's sandbox, where bubblewrap cannot nest: the jail alone restricts
    /// the job further with Landlock (writes only to its folders; no TCP without `network`).
    pub nested: bool,
}

#[derive(Debug, Clone)]
pub struct Isolation {
    pub bwrap: PathBuf,
    /// Folders hidden from jobs (Salve's data directory).
    pub hide: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "bubblewrap (bwrap) is not installed, and every job runs in it; install it (Debian/Ubuntu: apt-get install bubblewrap, Fedora: dnf install bubblewrap), or pass --no-sandbox to run jobs without isolation"
    )]
    Missing,
    #[error(
        "bubblewrap (bwrap) cannot create a sandbox on this machine: {0}; allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run as root, or pass --no-sandbox to run jobs without isolation"
    )]
    Broken(String),
}

/// Finds a working bwrap: on PATH, and able to start a trivial sandbox here. A working one is
/// remembered for the process; a missing or broken one is looked for again next time (it may
/// have been installed since).
pub fn find_bwrap() -> Result<PathBuf, SandboxError> {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    if let Some(p) = FOUND.get() {
        return Ok(p.clone());
    }
    let probe = || -> Result<PathBuf, String> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let bwrap =
            std::env::split_paths(&path).map(|d| d.join("bwrap")).find(|p| p.is_file()).ok_or_else(String::new)?;
        let out = Command::new(&bwrap)
            .args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--", "/bin/true"])
            .env_clear()
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() { Ok(bwrap) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
    };
    match probe() {
        Ok(p) => Ok(FOUND.get_or_init(|| p).clone()),
        Err(e) if e.is_empty() => Err(SandboxError::Missing),
        Err(e) => Err(SandboxError::Broken(e)),
    }
}

/// The folders a job may write.
pub struct Mounts<'a> {
    pub home: &'a Path,
    pub run: &'a Path,
    pub writable: &'a [PathBuf],
    pub readable: &'a [PathBuf],
}

impl Sandbox {
    pub fn none() -> Sandbox {
        Sandbox { isolation: None, jail: None, network: true, memory_bytes: None, max_processes: None, nested: false }
    }

    /// The command that runs `argv` (bash and its script) for a job. The environment is cleared;
    /// `env` is all the process gets (the job's own variables are exported by its script).
    /// `cgroups`: the cgroup folders the job joins before anything else starts (memory and process limits);
    /// without one the limits fall back to rlimits.
    pub fn command(
        &self,
        mounts: &Mounts<'_>,
        env: &[(String, String)],
        argv: &[OsString],
        cgroups: &[PathBuf],
    ) -> Command {
        let mut words: Vec<OsString> = Vec::new();
        if let Some(jail) = self.jail.as_ref().filter(|_| !cgroups.is_empty()) {
            words.extend(jail.iter().cloned());
            for dir in cgroups {
                words.extend(["--cgroup".into(), dir.into()]);
            }
            words.push("--".into());
        }
        if let Some(iso) = &self.isolation {
            words.push(iso.bwrap.clone().into());
            for arg in ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"] {
                words.push(arg.into());
            }
            for arg in ["--tmpfs", "/dev/shm", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "salve"]
            {
                words.push(arg.into());
            }
            words.extend(["--die-with-parent".into(), "--new-session".into()]);
            if !self.network {
                words.push("--unshare-net".into());
            }
            for hidden in iso.hide.iter().filter(|h| h.is_dir()) {
                words.extend(["--tmpfs".into(), hidden.into()]);
            }
            words.extend(["--bind".into(), mounts.home.into(), mounts.home.into()]);
            words.extend(["--ro-bind".into(), mounts.run.into(), mounts.run.into()]);
            for dir in mounts.writable {
                words.extend(["--bind".into(), dir.into(), dir.into()]);
            }
            for dir in mounts.readable {
                words.extend(["--ro-bind".into(), dir.into(), dir.into()]);
            }
            // The jail helper (the salve binary) must be reachable inside even when it lives
            // under a folder the sandbox replaces (a build under /tmp).
            if let Some(exe) = self.jail.as_ref().and_then(|j| j.first()) {
                words.extend(["--ro-bind".into(), exe.clone(), exe.clone()]);
            }
            words.extend(["--chdir".into(), mounts.home.into(), "--".into()]);
        }
        if let Some(jail) = &self.jail {
            words.extend(jail.iter().cloned());
            if self.isolation.is_some() || self.nested {
                words.push("--landlock".into());
                let fixed = [mounts.home, Path::new("/tmp"), Path::new("/dev")];
                for dir in fixed.into_iter().chain(mounts.writable.iter().map(PathBuf::as_path)) {
                    words.extend(["--writable".into(), dir.into()]);
                }
            }
            if !self.network {
                words.push("--no-network".into());
            }
            if let Some(bytes) = self.memory_bytes.filter(|_| cgroups.is_empty()) {
                words.extend(["--rlimit-as".into(), bytes.to_string().into()]);
            }
            if let Some(n) = self.max_processes.filter(|_| cgroups.is_empty()) {
                words.extend(["--rlimit-nproc".into(), n.to_string().into()]);
            }
            words.push("--".into());
        }
        words.extend(argv.iter().cloned());
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]).env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}
