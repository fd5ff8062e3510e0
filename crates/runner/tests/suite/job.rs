//! Job semantics (SEMAPHORE.md §1.7) with real bash, no sandbox.

use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use salve_runner::script::Phase;
use salve_runner::{Failure, JobControl, JobResult, NoObserver, StopReason, run_job};

use super::common::*;

#[test]
fn one_session_stops_at_first_failure_and_records_commands() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        dir.path(),
        &[
            "mkdir -p sub && cd sub",
            "export GREETING=hi; declare -A m=([k]=v)",
            "echo \"$GREETING ${m[k]} $(basename $PWD)\"",
            "false",
            "echo never",
        ],
    );
    let (outcome, log) = run(&s);
    assert_eq!(outcome.result, JobResult::Failed);
    assert_eq!(outcome.failure, Some(Failure::Command { exit_code: 1 }));
    assert!(log.contains("hi v sub\n"), "{log}");
    assert!(!log.contains("never"), "{log}");
    let codes: Vec<_> = outcome.commands.iter().map(|c| (c.command.as_str(), c.exit_code)).collect();
    assert_eq!(
        codes,
        [
            ("mkdir -p sub && cd sub", Some(0)),
            ("export GREETING=hi; declare -A m=([k]=v)", Some(0)),
            ("echo \"$GREETING ${m[k]} $(basename $PWD)\"", Some(0)),
            ("false", Some(1)),
        ]
    );
    let echo = &outcome.commands[2];
    assert_eq!(log_lines(&s.dir)[echo.first_line as usize], "hi v sub");
    assert_eq!(echo.end_line, echo.first_line + 1);
    assert_eq!(outcome.failed_command().map(|c| c.index), Some(3));
    assert!(log.ends_with("salve: job failed: `false` — exit code 1\n"), "{log}");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.dir.join("commands.json")).unwrap()).unwrap();
    assert_eq!(stored.as_array().map(Vec::len), Some(4));
}

#[test]
fn epilogues_see_the_result_and_never_change_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), &["echo \"main sees '${SEMAPHORE_JOB_RESULT-unset}'\"", "exit 3", "echo never"]);
    s.epilogue = epilogue(
        &["echo \"always $SEMAPHORE_JOB_RESULT\"", "false", "echo after-failing-always"],
        &["echo on-pass"],
        &["echo \"on-fail $SEMAPHORE_JOB_RESULT\"", "exit 1"],
    );
    let (outcome, log) = run(&s);
    assert_eq!(outcome.result, JobResult::Failed);
    assert!(log.contains("main sees 'unset'"), "{log}");
    assert!(log.contains("always failed\n"), "{log}");
    assert!(!log.contains("after-failing-always") && !log.contains("on-pass"), "{log}");
    assert!(log.contains("on-fail failed\n"), "{log}");
    let phases: Vec<_> = outcome.commands.iter().map(|c| (c.phase, c.index, c.exit_code)).collect();
    assert_eq!(
        phases,
        [
            (Phase::Main, 0, Some(0)),
            (Phase::Main, 1, Some(3)),
            (Phase::Always, 0, Some(0)),
            (Phase::Always, 1, Some(1)),
            (Phase::OnFail, 0, Some(0)),
            (Phase::OnFail, 1, Some(1)),
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), &["cd /tmp", "true"]);
    s.epilogue = epilogue(&["echo \"always in $PWD\""], &["echo on-pass; exit 9"], &["echo on-fail"]);
    let (outcome, log) = run(&s);
    assert_eq!(outcome.result, JobResult::Passed, "{log}");
    assert!(log.contains("always in /tmp\non-pass\n"), "{log}");
}

#[test]
fn exit_130_takes_the_result_the_job_chose() {
    for (commands, want) in [
        (&["export SEMAPHORE_JOB_RESULT=passed", "return 130", "false"][..], JobResult::Passed),
        (&["export SEMAPHORE_JOB_RESULT=failed", "exit 130"][..], JobResult::Failed),
        (&["exit 130", "echo never"][..], JobResult::Stopped),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), commands);
        s.epilogue = epilogue(&["echo epilogue-ran"], &[], &[]);
        let (outcome, log) = run(&s);
        assert_eq!(outcome.result, want, "{commands:?}: {log}");
        assert_eq!(log.contains("epilogue-ran"), want != JobResult::Stopped, "{commands:?}: {log}");
    }
}

#[test]
fn missing_commands_and_signals_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, log) = run(&spec(dir.path(), &["no-such-command-xyz --flag"]));
    assert_eq!(outcome.failure, Some(Failure::CommandNotFound));
    assert!(log.contains("no-such-command-xyz: command not found"), "{log}");
    assert!(
        log.contains("salve: job failed: `no-such-command-xyz --flag` — command not found (exit code 127)"),
        "{log}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (outcome, log) = run(&spec(dir.path(), &["kill -KILL $$"]));
    assert_eq!(outcome.result, JobResult::Failed);
    assert_eq!(outcome.failure, Some(Failure::Signal { signal: 9 }));
    assert!(log.contains("killed by signal 9 (SIGKILL)"), "{log}");
}

#[test]
fn time_limit_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), &["(sleep 30; echo orphan) & echo started", "sleep 30"]);
    s.time_limit = Some(Duration::from_millis(500));
    s.epilogue = epilogue(&["echo epilogue-ran"], &[], &[]);
    let t = Instant::now();
    let (outcome, log) = run(&s);
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    assert_eq!(outcome.result, JobResult::Stopped);
    assert_eq!(outcome.stop_reason, Some(StopReason::Timeout));
    assert!(log.contains("started\n"), "{log}");
    assert!(!log.contains("orphan") && !log.contains("epilogue-ran"), "{log}");
    assert!(log.contains("salve: job stopped: execution time limit of 0.5 seconds reached during `sleep 30`"), "{log}");
    assert_eq!(outcome.commands.last().map(|c| c.exit_code), Some(None));
}

#[test]
fn stop_from_another_thread_and_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), &["echo ready", "sleep 30"]);
    let control = JobControl::new();
    let stopper = control.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        stopper.stop(StopReason::User);
    });
    let outcome = run_job(&s, &control, &NoObserver).unwrap();
    t.join().unwrap();
    assert_eq!((outcome.result, outcome.stop_reason), (JobResult::Stopped, Some(StopReason::User)));

    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), &["echo should-not-run"]);
    let control = JobControl::new();
    control.stop(StopReason::FastFailing);
    let outcome = run_job(&s, &control, &NoObserver).unwrap();
    assert_eq!((outcome.result, outcome.stop_reason), (JobResult::Stopped, Some(StopReason::FastFailing)));
    assert!(!log_text(&s.dir).contains("should-not-run"));
}

#[test]
fn secrets_are_masked_even_when_printed_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(
        dir.path(),
        &[
            "echo \"token is $API_TOKEN\"",
            "printf 'sp'; sleep 0.1; printf 'lit-s3cr'; sleep 0.1; printf 'et-value\\n'",
            "echo $API_TOKEN >&2; false",
        ],
    );
    s.env = vec![("API_TOKEN".into(), "split-s3cret-value".into())];
    s.secret_values = vec!["split-s3cret-value".into()];
    let seen = Seen::default();
    let outcome = run_job(&s, &JobControl::new(), &seen).unwrap();
    let log = log_text(&s.dir);
    assert!(!log.contains("s3cret"), "{log}");
    let live = String::from_utf8_lossy(&seen.0.lock().unwrap()).into_owned();
    assert!(!live.contains("s3cret") && live.contains("token is [MASKED]"), "{live}");
    assert_eq!(log.matches("[MASKED]").count(), 3, "{log}");
    assert_eq!(outcome.result, JobResult::Failed);
}

#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<u8>>);

impl salve_runner::JobObserver for Seen {
    fn output(&self, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
    }
}

#[test]
fn output_is_stored_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        dir.path(),
        &["printf 'a\\xff\\xfe\\x00b\\r\\nno newline'", "head -c 3000000 /dev/zero | tr '\\0' 'x'; echo"],
    );
    let (outcome, _) = run(&s);
    assert_eq!(outcome.result, JobResult::Passed);
    let bytes = log_bytes(&s.dir);
    assert!(bytes.starts_with(b"a\xff\xfe\x00b\r\nno newline\n"));
    assert_eq!(bytes.iter().filter(|&&b| b == b'x').count(), 3_000_000);
    let lines = log_lines(&s.dir);
    assert_eq!(lines.len(), 4, "{:?}", lines.iter().map(|l| l.len()).collect::<Vec<_>>());
    assert_eq!(outcome.log_lines, 4);
}

#[test]
fn the_launching_environment_does_not_leak() {
    // cargo sets CARGO_MANIFEST_DIR for this test process; a job must not see it.
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), &["env | sort", "cat /proc/$$/environ | tr '\\0' '\\n'"]);
    s.env = vec![("JOB_VAR".into(), "it's \"quoted\" $(not run)".into())];
    let (_, log) = run(&s);
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    assert!(!log.contains("CARGO_MANIFEST_DIR"), "{log}");
    assert!(log.contains("JOB_VAR=it's \"quoted\" $(not run)\n"), "{log}");
    assert!(log.contains(&format!("HOME={}\n", s.dir.join("home").display())), "{log}");
}
