//! `retry [--times|-t N] [--sleep|-s S] COMMAND...` (SEMAPHORE.md §4.6): runs the command (through
//! bash, as the toolbox does) until it succeeds, at most N times (default 3), S seconds apart.

use std::process::Command;
use std::time::Duration;

pub(crate) const USAGE: &str = "Usage: retry [--times N] [--sleep SECONDS] COMMAND...";

pub fn main(args: &[String]) -> i32 {
    let (mut times, mut sleep) = (3u32, 0u64);
    let mut rest = args;
    loop {
        match rest {
            [flag, value, tail @ ..] if matches!(flag.as_str(), "--times" | "-t") => {
                let Ok(n) = value.parse() else {
                    eprintln!("retry: --times needs a whole number, got '{value}'\n{USAGE}");
                    return 1;
                };
                times = n;
                rest = tail;
            }
            [flag, value, tail @ ..] if matches!(flag.as_str(), "--sleep" | "-s") => {
                let Ok(n) = value.parse() else {
                    eprintln!("retry: --sleep needs a whole number of seconds, got '{value}'\n{USAGE}");
                    return 1;
                };
                sleep = n;
                rest = tail;
            }
            _ => break,
        }
    }
    if rest.is_empty() {
        eprintln!("{USAGE}");
        return 1;
    }
    let command = rest.join(" ");
    let mut code = 1;
    for attempt in 1..=times.max(1) {
        code = Command::new("bash").arg("-c").arg(&command).status().ok().and_then(|s| s.code()).unwrap_or(1);
        if code == 0 {
            return 0;
        }
        if attempt < times {
            eprintln!("[{attempt}/{times}] Execution Failed with exit status: {code}. Retrying.");
            std::thread::sleep(Duration::from_secs(sleep));
        }
    }
    eprintln!("[{times}/{times}] Execution Failed with exit status: {code}. No more retries.");
    code
}

#[cfg(test)]
mod tests {
    use super::main;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Runs through bash until the command passes, at most `--times`; bad flags are usage errors.
    #[test]
    fn retries_until_it_passes_or_gives_up() {
        assert_eq!(main(&args(&["true"])), 0);
        assert_eq!(main(&args(&["-t", "2", "exit", "7"])), 7, "the last exit status");
        let dir = std::env::temp_dir().join(format!("salve-retry-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        // Fails the first time, passes the second: a flaky command.
        let flaky = format!("test -e {0} || {{ touch {0}; exit 1; }}", dir.display());
        assert_eq!(main(&args(&["--times", "3", &flaky])), 0);
        let _ = std::fs::remove_file(&dir);
        assert_eq!(main(&args(&["--times", "x", "true"])), 1);
        assert_eq!(main(&args(&[])), 1);
    }
}
