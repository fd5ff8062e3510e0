//! `retry [--times|-t N] [--sleep|-s S] COMMAND...` (SEMAPHORE.md §4.6): runs the command (through
//! bash, as the toolbox does) until it succeeds, at most N times (default 3), S seconds apart.

use std::process::Command;
use std::time::Duration;

const USAGE: &str = "Usage: retry [--times N] [--sleep SECONDS] COMMAND...";

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
