//! `salve __jail [--cgroup DIR]... [--landlock] [--writable DIR]... [--no-network]
//! [--rlimit-as BYTES] [--rlimit-nproc N] -- PROGRAM ARGS...`: applies restrictions to itself, then becomes PROGRAM.
//! The runner puts it in front of bwrap (to join the job's cgroup before any process of the job
//! exists) and inside bwrap (Landlock cannot be set up before bwrap, which needs mount(2)).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use landlock::{
    ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
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
            Some("--rlimit-as") => o.rlimit_as = Some(number(&value()?)?),
            Some("--rlimit-nproc") => o.rlimit_nproc = Some(number(&value()?)?),
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
    if o.landlock || o.no_network {
        landlock(o.landlock.then_some(o.writable.as_slice()), o.no_network)?;
    }
    let err = Command::new(&o.program[0]).args(&o.program[1..]).exec();
    Err(format!("cannot run {}: {err}", o.program[0].to_string_lossy()))
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
