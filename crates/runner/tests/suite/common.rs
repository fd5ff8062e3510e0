use std::path::Path;
use std::time::Duration;

use salve_runner::log::LogReader;
use salve_runner::{Epilogue, JobControl, JobOutcome, JobSpec, NoObserver, Sandbox, run_job};

pub fn spec(dir: &Path, commands: &[&str]) -> JobSpec {
    JobSpec {
        id: uuid_like(dir),
        commands: commands.iter().map(|c| (*c).to_owned()).collect(),
        epilogue: Epilogue::default(),
        env: Vec::new(),
        files: Vec::new(),
        secret_values: Vec::new(),
        time_limit: Some(Duration::from_secs(60)),
        dir: dir.join("job"),
        toolbox: None,
        writable: Vec::new(),
        readable: Vec::new(),
        sandbox: Sandbox::none(),
        containers: Vec::new(),
        pull_credentials: Vec::new(),
    }
}

fn uuid_like(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

pub fn epilogue(always: &[&str], on_pass: &[&str], on_fail: &[&str]) -> Epilogue {
    let v = |s: &[&str]| s.iter().map(|c| (*c).to_owned()).collect();
    Epilogue { always: v(always), on_pass: v(on_pass), on_fail: v(on_fail) }
}

/// Runs a job and returns its outcome and its whole log as text.
pub fn run(spec: &JobSpec) -> (JobOutcome, String) {
    let outcome = run_job(spec, &JobControl::new(), &NoObserver).expect("job runs");
    (outcome, log_text(&spec.dir))
}

pub fn log_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("log")).unwrap()
}

pub fn log_text(dir: &Path) -> String {
    String::from_utf8_lossy(&log_bytes(dir)).into_owned()
}

pub fn log_lines(dir: &Path) -> Vec<String> {
    LogReader::open(dir)
        .unwrap()
        .lines(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect()
}
