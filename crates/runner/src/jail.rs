//! `salve __jail [--cgroup DIR]... [--landlock] [--writable DIR]... [--no-network]
//! [--rlimit-as BYTES] [--rlimit-nproc N] [--user UID:GID] [--slirp PATH [--forward PORT]...]
//! -- PROGRAM ARGS...`: applies restrictions to itself, then becomes PROGRAM. With `--slirp`
//! (in front of bwrap) it stays PROGRAM's parent instead, to give the job a network of its own
//! (`crate::netns`), and exits as PROGRAM did.
//!
//! `--user` is for a root caller's sandbox: inside bubblewrap (its own mount, PID, IPC and UTS
//! namespaces), the jail makes the private `/tmp` and `/dev/shm` shared-writable, drops every
//! capability from the bounding set, clears supplementary groups and becomes UID:GID for good
//! (the kernel clears the permitted, effective and ambient sets), and refuses to go on if any
//! of that did not hold. `no_new_privs` is set before the program runs, so no setuid binary can
//! give anything back.
//! The runner puts it in front of bwrap (to join the job's cgroup before any process of the job
//! exists) and inside bwrap (Landlock cannot be set up before bwrap, which needs mount(2)).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use landlock::{
    ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
    path_beneath_rules,
};
use rustix::process::{Resource, Rlimit, setrlimit};

#[derive(Debug, Default)]
struct Options {
    cgroups: Vec<PathBuf>,
    landlock: bool,
    writable: Vec<PathBuf>,
    no_network: bool,
    rlimit_as: Option<u64>,
    rlimit_nproc: Option<u64>,
    user: Option<(u32, u32)>,
    slirp: Option<PathBuf>,
    forward: Vec<u16>,
    program: Vec<OsString>,
}

fn parse(args: &[OsString]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{} needs a value", arg.to_string_lossy()));
        match arg.to_str() {
            Some("--cgroup") => o.cgroups.push(value()?.into()),
            Some("--landlock") => o.landlock = true,
            Some("--no-network") => o.no_network = true,
            Some("--writable") => o.writable.push(value()?.into()),
            Some("--slirp") => o.slirp = Some(value()?.into()),
            Some("--forward") => {
                let v = value()?;
                o.forward.push(
                    v.to_str()
                        .and_then(|t| t.parse().ok())
                        .ok_or_else(|| format!("'{}' is not a port", v.to_string_lossy()))?,
                );
            }
            Some("--rlimit-as") => o.rlimit_as = Some(number(&value()?)?),
            Some("--rlimit-nproc") => o.rlimit_nproc = Some(number(&value()?)?),
            Some("--user") => {
                let v = value()?;
                let ids = v
                    .to_str()
                    .and_then(|t| t.split_once(':'))
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                o.user = Some(ids.ok_or_else(|| format!("'{}' is not UID:GID", v.to_string_lossy()))?);
            }
            Some("--") => {
                o.program = it.cloned().collect();
                break;
            }
            _ => return Err(format!("unknown argument '{}'", arg.to_string_lossy())),
        }
    }
    if o.program.is_empty() {
        return Err("no program to run after '--'".into());
    }
    Ok(o)
}

fn number(s: &OsString) -> Result<u64, String> {
    s.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("'{}' is not a number", s.to_string_lossy()))
}

/// Runs the jail; returns only on failure, with the exit code to use (126, like a shell that
/// cannot run a program).
pub fn main(args: &[OsString]) -> u8 {
    match run(args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("salve: the job sandbox could not be set up: {e}");
            126
        }
    }
}

enum Never {}

fn run(args: &[OsString]) -> Result<Never, String> {
    let o = parse(args)?;
    for dir in &o.cgroups {
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| format!("cannot join cgroup {}: {e}", dir.display()))?;
    }
    if let Some(bytes) = o.rlimit_as {
        setrlimit(Resource::As, Rlimit { current: Some(bytes), maximum: Some(bytes) })
            .map_err(|e| format!("cannot limit memory: {e}"))?;
    }
    if let Some(n) = o.rlimit_nproc {
        setrlimit(Resource::Nproc, Rlimit { current: Some(n), maximum: Some(n) })
            .map_err(|e| format!("cannot limit processes: {e}"))?;
    }
    if let Some((uid, gid)) = o.user {
        become_user(uid, gid)?;
        // A set-user-ID program (su, mount, passwd) must not give root back.
        rustix::thread::set_no_new_privs(true).map_err(|e| format!("cannot set no_new_privs: {e}"))?;
    }
    if o.landlock || o.no_network {
        landlock(o.landlock.then_some(o.writable.as_slice()), o.no_network)?;
    }
    if let Some(slirp) = &o.slirp {
        let status = crate::netns::run(&o.program, slirp, &o.forward)?;
        use std::os::unix::process::ExitStatusExt;
        let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(126);
        std::process::exit(code);
    }

    let err = Command::new(&o.program[0]).args(&o.program[1..]).exec();
    Err(format!("cannot run {}: {err}", o.program[0].to_string_lossy()))
}

/// Drops root for good: see the module's documentation.
fn become_user(uid: u32, gid: u32) -> Result<(), String> {
    use rustix::process::{Gid, Uid};
    use rustix::thread::CapabilitySet;
    if uid == 0 || gid == 0 {
        return Err("refusing to run a job as root".into());
    }
    for dir in ["/tmp", "/dev/shm"] {
        let p = std::path::Path::new(dir);
        if p.is_dir() {
            rustix::fs::chmod(p, rustix::fs::Mode::from_raw_mode(0o1777))
                .map_err(|e| format!("cannot open {dir} to the job's user: {e}"))?;
        }
    }
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(63)
        .min(63);
    for cap in 0..=last {
        rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap))
            .map_err(|e| format!("cannot drop capability {cap} from the bounding set: {e}"))?;
    }
    rustix::thread::set_thread_groups(&[]).map_err(|e| format!("cannot clear the supplementary groups: {e}"))?;
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    rustix::thread::set_thread_res_gid(g, g, g).map_err(|e| format!("cannot become group {gid}: {e}"))?;
    rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| format!("cannot become user {uid}: {e}"))?;
    // Check rather than trust: no way back to root, and nothing left to use.
    let caps = rustix::thread::capabilities(None).map_err(|e| format!("cannot read capabilities: {e}"))?;
    if rustix::process::getuid().is_root()
        || rustix::process::geteuid().is_root()
        || !caps.effective.is_empty()
        || !caps.permitted.is_empty()
        || rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT).is_ok()
    {
        return Err("root could not be dropped".into());
    }
    Ok(())
}

/// With `writable`: everything readable and executable, writes only below those folders. With
/// `no_network`: no TCP connect or bind (Landlock ABI 4). Best effort on kernels with an older
/// Landlock (or none): bwrap's read-only root and network namespace still hold where it runs.
fn landlock(writable: Option<&[PathBuf]>, no_network: bool) -> Result<(), String> {
    let abi = ABI::V5;
    let mut ruleset = Ruleset::default();
    if writable.is_some() {
        ruleset = ruleset.handle_access(AccessFs::from_all(abi)).map_err(|e| format!("Landlock: {e}"))?;
    }
    if no_network {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi)).map_err(|e| format!("Landlock: {e}"))?;
    }
    // Scoped (Landlock ABI 6, best effort): no abstract unix sockets or signals that lead out of
    // the job (the host's D-Bus, X11, other jobs).
    ruleset = ruleset.scope(Scope::AbstractUnixSocket | Scope::Signal).map_err(|e| format!("Landlock: {e}"))?;
    let mut created = ruleset.create().map_err(|e| format!("Landlock: {e}"))?;
    if let Some(writable) = writable {
        created = created
            .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
            .and_then(|r| r.add_rules(path_beneath_rules(writable, AccessFs::from_all(abi))))
            .map_err(|e| format!("Landlock: {e}"))?;
    }
    let status = created.restrict_self().map_err(|e| format!("Landlock: {e}"))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        eprintln!("salve: Landlock is not available on this kernel; the job runs in bubblewrap only");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let args: Vec<OsString> = ["--landlock", "--writable", "/tmp", "--rlimit-as", "1024", "--", "bash", "-c", "x"]
            .into_iter()
            .map(OsString::from)
            .collect();
        let o = parse(&args);
        assert!(o.as_ref().is_ok_and(|o| o.landlock && o.rlimit_as == Some(1024) && o.program.len() == 3), "{o:?}");
        assert!(parse(&[OsString::from("--bogus")]).is_err());
        assert!(parse(&[OsString::from("--rlimit-as"), OsString::from("x"), OsString::from("--")]).is_err());
        assert!(parse(&[]).is_err());
    }
}
