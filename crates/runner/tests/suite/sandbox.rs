//! Jobs in real bubblewrap (without the Landlock helper, which is the `salve` binary's and is
//! tested through `salve run` in the CLI suite).

use std::net::TcpListener;

use salve_runner::{Isolation, JobResult, Sandbox, find_bwrap};

use super::common::*;

fn sandbox(network: bool, hide: Vec<std::path::PathBuf>) -> Sandbox {
    let bwrap = find_bwrap().expect("bubblewrap is installed by scripts/test.sh");
    Sandbox {
        isolation: Some(Isolation { bwrap, hide }),
        jail: None,
        network,
        memory_bytes: None,
        max_processes: None,
        nested: false,
    }
}

#[test]
fn read_only_root_writable_home_private_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "host file").unwrap();
    let mut s = spec(
        dir.path(),
        &[
            "echo x > job-file && cat job-file",
            "echo x > /usr/salve-test 2>/dev/null && echo WROTE-USR || echo usr-is-read-only",
            "ls /tmp | wc -l; echo x > /tmp/t && echo tmp-writable",
            &format!("cat {} 2>/dev/null || echo data-dir-hidden", outside.display()),
            "ps -e -o pid= | wc -l",
        ],
    );
    s.sandbox = sandbox(true, vec![dir.path().to_owned()]);
    let (outcome, log) = run(&s);
    assert_eq!(outcome.result, JobResult::Passed, "{log}");
    for want in ["x\n", "usr-is-read-only\n", "tmp-writable\n", "data-dir-hidden\n"] {
        assert!(log.contains(want), "missing {want:?} in {log}");
    }
    assert!(!log.contains("WROTE-USR") && !log.contains("host file"), "{log}");
    assert!(!std::path::Path::new("/usr/salve-test").exists());
    assert!(std::fs::read_to_string(s.dir.join("home/job-file")).is_ok());
}

#[test]
fn no_host_environment_or_processes_visible() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(
        dir.path(),
        &[
            "{ cat /proc/self/environ; for f in /proc/[0-9]*/environ; do cat $f; done; } 2>/dev/null | tr '\\0' '\\n' | sort -u",
        ],
    );
    s.sandbox = sandbox(true, Vec::new());
    s.env = vec![("JOB_SECRET".into(), "visible-to-the-job".into())];
    let (outcome, log) = run(&s);
    assert_eq!(outcome.result, JobResult::Passed, "{log}");
    assert!(log.contains("JOB_SECRET=visible-to-the-job"), "{log}");
    assert!(!log.contains("CARGO_MANIFEST_DIR"), "{log}");
}

#[test]
fn network_can_be_switched_off() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!("(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo connected || echo no-network");
    for (network, want) in [(true, "connected"), (false, "no-network")] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), &[&probe]);
        s.sandbox = sandbox(network, Vec::new());
        let (_, log) = run(&s);
        assert!(log.contains(want), "network={network}: {log}");
    }
}

#[test]
fn host_toolchains_work_inside() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(
        dir.path(),
        &[
            "git --version",
            "python3 -c 'print(6*7)'",
            "cargo new --quiet --vcs none --lib sample && cd sample",
            "cargo test --quiet --offline --lib 2>&1 | tail -3",
            "cd ~ && mkdir pyproj && cd pyproj && printf 'def test_ok():\\n    assert 6 * 7 == 42\\n' > test_it.py",
            "python3 -m pytest -q",
        ],
    );
    s.sandbox = sandbox(true, Vec::new());
    let (outcome, log) = run(&s);
    assert_eq!(outcome.result, JobResult::Passed, "{log}");
    assert!(log.contains("\n42\n"), "{log}");
    assert!(log.contains("test result: ok. 1 passed"), "{log}");
    assert!(log.contains("1 passed"), "{log}");
}
