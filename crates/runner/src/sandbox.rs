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
    /// slirp4netns, which gives each job with `network` a network namespace of its own with
    /// outbound access (see [`crate::netns`]); without it such jobs share the host's.
    pub slirp: Option<PathBuf>,
    /// Ports on the host's loopback a job with a network of its own may still reach, on its
    /// own 127.0.0.1 (the Salve server it reports to).
    pub host_ports: Vec<u16>,
    /// Podman, for jobs in containers (`agent.containers`); without it such jobs fail at start.
    pub podman: Option<crate::container::Podman>,
}

/// Which network a job is in; jobs see it as `SALVE_JOB_NETWORK` (`own`, `none`, `host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobNetwork {
    /// A namespace of its own with outbound access: its loopback is its alone.
    Own,
    /// A namespace of its own with nothing but loopback.
    None,
    /// The host's (no sandbox, or no slirp4netns here).
    Host,
}

impl JobNetwork {
    pub fn as_str(self) -> &'static str {
        match self {
            JobNetwork::Own => "own",
            JobNetwork::None => "none",
            JobNetwork::Host => "host",
        }
    }
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
/// have been installed since). Inside a job's sandbox it never works: Landlock forbids the
/// mounts bwrap makes, and the jail's Landlock rules restrict nested commands alone.
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

/// Variables of the machine that tell programs where toolchains and certificates are; the only
/// ones a job inherits (plus those the caller passes in the spec).
pub const HOST_VARIABLES: &[&str] = &[
    "PATH",
    "LANG",
    "TZ",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "PYENV_ROOT",
    "GOROOT",
    "JAVA_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CARGO_HTTP_CAINFO",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// The folders a job may write.
pub struct Mounts<'a> {
    pub home: &'a Path,
    pub run: &'a Path,
    pub writable: &'a [PathBuf],
    pub readable: &'a [PathBuf],
    /// Files put in place read-only: (the file, where the job sees it).
    pub files: &'a [(PathBuf, PathBuf)],
}

/// The user and group a sandboxed job of a root process runs as (the convention for a
/// "nonroot" user of container images). Nothing on the host is theirs; the job's folders are
/// given to them for the job.
pub const JOB_UID: u32 = 65532;
pub const JOB_GID: u32 = 65532;

/// The home of the user running Salve, hidden from jobs (unless it is `/`).
fn host_home() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    (home.is_absolute() && home.parent().is_some() && home.is_dir()).then_some(home)
}

/// The toolchain folders under the hidden `home` that the job needs (PATH entries, rustup's and
/// pyenv's roots, certificate bundles): they are mounted back read-only, and nothing else of
/// that home is. Folders under Salve's own hidden folders are left out (they are mounted as
/// the job's).
fn toolchains(home: &Path, hidden: &[PathBuf], env: &[(String, String)]) -> Vec<PathBuf> {
    let get = |k: &str| env.iter().rev().find(|(name, _)| name == k).map(|(_, v)| v.as_str());
    let mut out: Vec<PathBuf> = std::env::split_paths(get("PATH").unwrap_or(""))
        .chain(HOST_VARIABLES.iter().filter(|k| **k != "PATH").filter_map(|k| get(k)).map(PathBuf::from))
        .filter(|p| p.is_absolute() && p.starts_with(home) && p != home && p.exists())
        .filter(|p| !hidden.iter().any(|h| p.starts_with(h)))
        .filter(|p| !p.components().any(|c| c == std::path::Component::ParentDir))
        .collect();
    out.sort();
    out.dedup();
    // A folder inside another one on the list comes with it.
    let keep: Vec<PathBuf> = out.iter().filter(|p| !out.iter().any(|q| q != *p && p.starts_with(q))).cloned().collect();
    keep
}

/// How much a sandbox isolates; [`Sandbox::build`] turns it into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolate {
    /// bubblewrap, or an error that says how to get it.
    Bubblewrap,
    /// bubblewrap where it starts; inside a job's sandbox, where it cannot nest, the jail's
    /// Landlock rules alone (a heal verifying a fix from its job).
    BubblewrapOrNested,
    /// None at all: the user asked for `--no-sandbox`.
    Off,
}

/// The limits every job of a run gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub network: bool,
    pub memory_bytes: Option<u64>,
    pub max_processes: Option<u64>,
}

impl Sandbox {
    /// The one place a sandbox is put together (`salve run`, the server, a heal's runs):
    /// `exe` is the `salve` binary whose `__jail` adds Landlock and the limits, `hide` the
    /// folders jobs never see (Salve's data folder).
    pub fn build(
        exe: Option<&Path>,
        isolate: Isolate,
        hide: Vec<PathBuf>,
        limits: Limits,
    ) -> Result<Sandbox, SandboxError> {
        let in_job = std::env::var_os("SEMAPHORE_JOB_ID").is_some();
        let (isolation, nested) = match isolate {
            Isolate::Off => (None, false),
            Isolate::Bubblewrap => (Some(Isolation { bwrap: find_bwrap()?, hide }), false),
            Isolate::BubblewrapOrNested => match find_bwrap() {
                Ok(bwrap) => (Some(Isolation { bwrap, hide }), false),
                Err(_) if in_job => (None, true),
                Err(e) => return Err(e),
            },
        };
        let slirp = if isolation.is_some() && limits.network { crate::netns::find_slirp() } else { None };
        Ok(Sandbox {
            isolation,
            jail: exe.map(|exe| vec![exe.as_os_str().to_owned(), OsString::from("__jail")]),
            network: limits.network,
            memory_bytes: limits.memory_bytes,
            max_processes: limits.max_processes,
            nested,
            slirp,
            host_ports: Vec::new(),
            podman: crate::container::Podman::find(),
        })
    }
}

impl Sandbox {
    /// The uid and gid the job's processes run as when they are not the caller's: a root
    /// caller's sandboxed jobs drop to [`JOB_UID`], with no capabilities left.
    pub fn job_user(&self) -> Option<(u32, u32)> {
        (self.isolation.is_some() && rustix::process::geteuid().is_root()).then_some((JOB_UID, JOB_GID))
    }

    /// This sandbox for one job whose variables (`vars`, name and value, later wins) may ask
    /// for a lower memory or process limit with `SALVE_MEMORY_MB` and `SALVE_MAX_PROCESSES`;
    /// never a higher one (where this sandbox sets none, the job's stands).
    pub fn with_job_limits<'v>(&self, vars: impl DoubleEndedIterator<Item = (&'v str, &'v str)> + Clone) -> Sandbox {
        let asked = |name: &str| {
            vars.clone()
                .rev()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let lower = |current: Option<u64>, asked: Option<u64>| match (current, asked) {
            (Some(c), Some(a)) => Some(c.min(a)),
            (c, a) => c.or(a),
        };
        Sandbox {
            memory_bytes: lower(self.memory_bytes, asked("SALVE_MEMORY_MB").map(|mb| mb.saturating_mul(1024 * 1024))),
            max_processes: lower(self.max_processes, asked("SALVE_MAX_PROCESSES")),
            ..self.clone()
        }
    }

    pub fn none() -> Sandbox {
        Sandbox {
            isolation: None,
            jail: None,
            network: true,
            memory_bytes: None,
            max_processes: None,
            nested: false,
            slirp: None,
            host_ports: Vec::new(),
            podman: None,
        }
    }

    /// The network this sandbox's jobs get.
    pub fn job_network(&self) -> JobNetwork {
        match (&self.isolation, &self.jail, &self.slirp) {
            (Some(_), _, _) if !self.network => JobNetwork::None,
            (Some(_), Some(_), Some(_)) => JobNetwork::Own,
            _ => JobNetwork::Host,
        }
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
        let network = self.job_network();
        let slirp = self.slirp.as_ref().filter(|_| network == JobNetwork::Own);
        if let Some(jail) = self.jail.as_ref().filter(|_| !cgroups.is_empty() || slirp.is_some()) {
            words.extend(jail.iter().cloned());
            for dir in cgroups {
                words.extend(["--cgroup".into(), dir.into()]);
            }
            if let Some(slirp) = slirp {
                words.extend(["--slirp".into(), slirp.into()]);
                for port in &self.host_ports {
                    words.extend(["--forward".into(), port.to_string().into()]);
                }
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
            words.extend(["--unshare-cgroup-try".into(), "--die-with-parent".into(), "--new-session".into()]);
            if network != JobNetwork::Host {
                words.push("--unshare-net".into());
            }
            // Hidden: Salve's data folder and the home of the user running Salve (its keys, its
            // tokens, its package credentials). Toolchains installed under that home (rustup,
            // pyenv, cargo's bin) come back read-only, and so do the job's own folders.
            let home = host_home();
            let mut hidden: Vec<PathBuf> = iso.hide.iter().chain(home.iter()).filter(|h| h.is_dir()).cloned().collect();
            hidden.sort_by_key(|h| h.components().count());
            hidden.dedup();
            let mount = |words: &mut Vec<OsString>, how: &str, src: &Path, dest: &Path| {
                // Folders bwrap would create on the way inside a hidden one get 0755, so the
                // job's user can reach what is mounted there.
                let fresh = hidden.iter().map(PathBuf::as_path).chain([Path::new("/tmp"), Path::new("/dev/shm")]);
                if let Some(h) = fresh.filter(|h| dest.starts_with(h) && dest != *h).max_by_key(|h| h.as_os_str().len())
                {
                    let mut between: Vec<&Path> = dest.ancestors().skip(1).take_while(|a| a != &h).collect();
                    between.reverse();
                    for dir in between {
                        words.extend(["--dir".into(), dir.into()]);
                    }
                }
                words.extend([how.into(), src.into()]);
                if how != "--tmpfs" {
                    words.push(dest.into());
                }
            };
            for h in &hidden {
                mount(&mut words, "--tmpfs", h, h);
            }
            for dir in home.iter().flat_map(|h| toolchains(h, &iso.hide, env)) {
                mount(&mut words, "--ro-bind", &dir, &dir);
            }
            mount(&mut words, "--bind", mounts.home, mounts.home);
            mount(&mut words, "--ro-bind", mounts.run, mounts.run);
            for dir in mounts.writable {
                mount(&mut words, "--bind", dir, dir);
            }
            for dir in mounts.readable {
                mount(&mut words, "--ro-bind", dir, dir);
            }
            for (file, dest) in mounts.files {
                mount(&mut words, "--ro-bind", file, dest);
            }
            // The jail helper (the salve binary) must be reachable inside even when it lives
            // under a folder the sandbox replaces (a build under /tmp).
            if let Some(exe) = self.jail.as_ref().and_then(|j| j.first()) {
                let exe = Path::new(exe);
                mount(&mut words, "--ro-bind", exe, exe);
            }
            words.extend(["--chdir".into(), mounts.home.into(), "--".into()]);
        }
        if let Some(jail) = &self.jail {
            words.extend(jail.iter().cloned());
            if self.isolation.is_some() || self.nested {
                words.push("--landlock".into());
                // Nested without bubblewrap, /tmp is the outer job's (its home may well be under
                // it): the job writes its own temporary folder instead (TMPDIR).
                let tmp = if self.isolation.is_some() { Some(Path::new("/tmp")) } else { None };
                let fixed = [Some(mounts.home), tmp, Some(Path::new("/dev"))];
                for dir in fixed.into_iter().flatten().chain(mounts.writable.iter().map(PathBuf::as_path)) {
                    words.extend(["--writable".into(), dir.into()]);
                }
            }
            if let Some((uid, gid)) = self.job_user() {
                words.extend(["--user".into(), format!("{uid}:{gid}").into()]);
            }
            // In bubblewrap the job's network namespace cuts it off (and leaves it its own
            // loopback, for the services it starts); nested, Landlock does.
            if !self.network && self.isolation.is_none() {
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
