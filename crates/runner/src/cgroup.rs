//! A cgroup per job for the memory and process limits, when the machine lets Salve create one
//! (cgroup v2 with the controllers delegated, or the v1 `memory`/`pids` hierarchies). The kernel
//! then OOM-kills a job that exceeds its memory and records it, so the runner can say so.
//! Where no cgroup can be made the runner falls back to rlimits and says that in the log.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug)]
pub struct Cgroup {
    /// One folder per hierarchy the job joins (v2: one; v1: memory and/or pids).
    dirs: Vec<PathBuf>,
    memory: Option<PathBuf>,
    v2: bool,
}

/// The cgroup path this process is in for a v1 controller, or the v2 one (`controller` empty).
fn own_path(controller: &str) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_owned())
    })
}

impl Cgroup {
    /// Creates the job's cgroup with the limits, or `None` when this machine does not allow it.
    pub fn create(name: &str, memory_bytes: Option<u64>, max_processes: Option<u64>) -> Option<Cgroup> {
        if memory_bytes.is_none() && max_processes.is_none() {
            return None;
        }
        Cgroup::create_v2(name, memory_bytes, max_processes)
            .or_else(|| Cgroup::create_v1(name, memory_bytes, max_processes))
    }

    fn create_v2(name: &str, memory_bytes: Option<u64>, max_processes: Option<u64>) -> Option<Cgroup> {
        let root = Path::new(ROOT);
        if !root.join("cgroup.controllers").is_file() {
            return None;
        }
        let parent = root.join(own_path("")?.trim_start_matches('/'));
        let dir = parent.join(name);
        fs::create_dir(&dir).ok()?;
        let group = Cgroup { dirs: vec![dir.clone()], memory: Some(dir.clone()), v2: true };
        let ok = memory_bytes.is_none_or(|b| fs::write(dir.join("memory.max"), b.to_string()).is_ok())
            && max_processes.is_none_or(|n| fs::write(dir.join("pids.max"), n.to_string()).is_ok());
        if ok {
            if memory_bytes.is_some() {
                // No swap, so the limit is the limit (absent without swap accounting: fine).
                let _ = fs::write(dir.join("memory.swap.max"), "0");
            }
            Some(group)
        } else {
            group.remove();
            None
        }
    }

    fn create_v1(name: &str, memory_bytes: Option<u64>, max_processes: Option<u64>) -> Option<Cgroup> {
        let mut group = Cgroup { dirs: Vec::new(), memory: None, v2: false };
        let mut make = |controller: &str, file: &str, value: u64| -> Option<PathBuf> {
            let parent = Path::new(ROOT).join(controller).join(own_path(controller)?.trim_start_matches('/'));
            let dir = parent.join(name);
            fs::create_dir(&dir).ok()?;
            group.dirs.push(dir.clone());
            fs::write(dir.join(file), value.to_string()).ok()?;
            Some(dir)
        };
        let mut ok = true;
        if let Some(bytes) = memory_bytes {
            let dir = make("memory", "memory.limit_in_bytes", bytes);
            if let Some(dir) = &dir {
                let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
            }
            ok &= dir.is_some();
            group.memory = dir;
        }
        if let Some(n) = max_processes {
            ok &= make("pids", "pids.max", n).is_some();
        }
        if ok && !group.dirs.is_empty() {
            Some(group)
        } else {
            group.remove();
            None
        }
    }

    /// The folders whose `cgroup.procs` the job's first process writes itself into.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Whether the kernel killed a process of the job for exceeding its memory.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory else { return false };
        let (file, key) = if self.v2 { ("memory.events", "oom_kill") } else { ("memory.oom_control", "oom_kill") };
        fs::read_to_string(dir.join(file)).is_ok_and(|text| {
            text.lines().any(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > 0))
        })
    }

    /// Removes the folders (after the job's processes are gone; a busy folder is left behind).
    pub fn remove(self) {
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}
