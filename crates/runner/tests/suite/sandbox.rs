//! Jobs in real bubblewrap with the jail (`salve-jail`, the code behind `salve __jail`): as root,
//! these are the attacks of a job on its host.

use std::net::TcpListener;

use salve_runner::{Isolation, JobResult, Sandbox, find_bwrap};

use super::common::*;

fn sandbox(network: bool, hide: Vec<std::path::PathBuf>) -> Sandbox {
    let bwrap = find_bwrap().expect("bubblewrap is installed by scripts/test.sh");
    Sandbox {
        isolation: Some(Isolation { bwrap, hide }),
        jail: Some(vec![env!("CARGO_BIN_EXE_salve-jail").into()]),
        network,
        memory_bytes: None,
        max_processes: None,
        nested: false,
        slirp: salve_runner::netns::find_slirp(),
        host_ports: Vec::new(),
        podman: None,
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

/// The host's loopback is closed to a job (the server's port and those its secrets name are
/// forwarded), and the network can be switched off; either way the job keeps a loopback of its
/// own.
#[test]
fn a_job_reaches_only_the_host_ports_it_is_given() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        for mut c in listener.incoming().flatten().take(2) {
            let _ = c.write_all(b"hello from the host\n");
        }
    });
    let probe = format!("(exec 3<>/dev/tcp/127.0.0.1/{port}; head -1 <&3) 2>/dev/null || echo no-host-port");
    // slirp4netns's gateway is where the host's loopback would be reachable; it is closed.
    let gateway = format!("(exec 3<>/dev/tcp/10.0.2.2/{port}) 2>/dev/null && echo GATEWAY-OPEN || echo no-gateway");
    let own = "python3 -c \"import socket; s = socket.socket(); s.bind(('127.0.0.1', 8432)); s.listen(); print('own loopback')\"";
    let host = |network: bool, forward: bool, secret: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), &[&probe, own, "echo network=$SALVE_JOB_NETWORK", &gateway]);
        s.sandbox = sandbox(network, Vec::new());
        // The pipeline's own variables are the pusher's: naming a port opens nothing.
        s.env = vec![("DATABASE_URL".into(), format!("postgres://127.0.0.1:{port}/db"))];
        if forward {
            s.sandbox.host_ports = vec![port];
        }
        if secret {
            s.secret_values = vec![format!("http://127.0.0.1:{port}/v1")];
        }
        let (outcome, log) = run(&s);
        assert_eq!(outcome.result, JobResult::Passed, "{log}");
        assert!(log.contains("own loopback\n"), "{log}");
        log
    };
    let closed = host(true, false, false);
    assert!(closed.contains("no-host-port") && closed.contains("network=own"), "{closed}");
    assert!(closed.contains("no-gateway") && !closed.contains("GATEWAY-OPEN"), "{closed}");
    let forwarded = host(true, true, false);
    assert!(forwarded.contains("hello from the host"), "{forwarded}");
    let named = host(true, false, true);
    assert!(named.contains("hello from the host"), "{named}");
    let off = host(false, true, false);
    assert!(off.contains("no-host-port") && off.contains("network=none"), "{off}");
    server.join().unwrap();
}

/// Two jobs at once each listen on the same port of their own 127.0.0.1 (as two jobs' databases
/// do) and each talks to its own.
#[test]
fn parallel_jobs_each_have_their_own_loopback() {
    let serve = "python3 -c \"import socket,os; s = socket.socket(); s.bind(('127.0.0.1', 5432)); s.listen(); \
open('ready', 'w').close(); c, _ = s.accept(); c.sendall(os.environ['WHO'].encode())\" &";
    let ask = "until [ -e ready ]; do sleep 0.05; done; sleep 0.5; \
python3 -c \"import socket; print('answered', socket.create_connection(('127.0.0.1', 5432)).recv(64).decode())\"; wait";
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let logs: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                scope.spawn(move || {
                    let mut s = spec(dir.path(), &[serve, ask]);
                    s.sandbox = sandbox(true, Vec::new());
                    s.env = vec![("WHO".into(), format!("job-{i}"))];
                    let (outcome, log) = run(&s);
                    assert_eq!(outcome.result, JobResult::Passed, "{log}");
                    log
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, log) in logs.iter().enumerate() {
        assert!(log.contains(&format!("answered job-{i}\n")), "{log}");
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

/// Python that tries the "shocker" escape: `open_by_handle_at` with a handle of the job's own
/// folder (on the host's file system) and with a forged handle of that file system's root
/// (ext4's inode 2). Either one opened means the job can read any file of the host.
const SHOCKER: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
class FH(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]
fh = FH(); fh.handle_bytes = 128
mount_id = ctypes.c_int()
libc.name_to_handle_at(-100, b".", ctypes.byref(fh), ctypes.byref(mount_id), 0)
root = FH(); root.handle_bytes = 8; root.handle_type = 1; root.f_handle[0] = 2
fd = os.open(".", os.O_RDONLY)
for name, h in (("own", fh), ("forged", root)):
    r = libc.open_by_handle_at(fd, ctypes.byref(h), os.O_RDONLY)
    print("handle", name, "OPENED" if r >= 0 else "refused")
"#;

#[test]
fn a_job_of_a_root_process_owns_nothing_of_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("repos/p.git/hooks")).unwrap();
    std::fs::write(data.join("secrets.key"), "data-folder-key").unwrap();
    // A file in the home of the user running Salve (root's /root here): hidden from jobs.
    let home = std::path::PathBuf::from(std::env::var("HOME").unwrap());
    let planted = home.join(format!(".salve-test-{}", std::process::id()));
    std::fs::write(&planted, "host-home-secret").unwrap();
    std::fs::write(data.join("repos/shocker.py"), SHOCKER).unwrap();
    let mut s = spec(
        &data.join("jobs/j1"),
        &[
            "id -u; id -G",
            "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status",
            "cat /etc/shadow >/dev/null 2>&1 && echo READ-SHADOW || echo shadow-refused",
            &format!("cat {} 2>/dev/null || echo home-hidden", planted.display()),
            &format!("cat {} 2>/dev/null || echo data-hidden", data.join("secrets.key").display()),
            &format!(
                "echo evil > {}/post-receive 2>/dev/null && echo WROTE-HOOK || echo hooks-read-only",
                data.join("repos/p.git/hooks").display()
            ),
            "python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)' 2>/dev/null && echo RAW-SOCKET || echo raw-refused",
            &format!("cp {} . && python3 shocker.py", data.join("repos/shocker.py").display()),
            "cargo --version >/dev/null && echo cargo-works",
            "node -e 'console.log(\"node-\" + 6 * 7)'",
            "npm --version >/dev/null && npm config get cache | grep -q \"^$HOME\" && echo npm-works",
            "python3 -m venv venv && venv/bin/pip --version >/dev/null && echo venv-works",
            "command -v go >/dev/null && { go env GOCACHE | grep -q \"^$HOME\" && echo go-works; } || echo go-works",
            "echo x > /tmp/t && echo x > /dev/shm/t && echo x > ~/t && echo writes-ok",
        ],
    );
    s.readable = vec![data.join("repos")];
    s.sandbox = sandbox(true, vec![data.clone()]);
    let (outcome, log) = run(&s);
    let _ = std::fs::remove_file(&planted);
    assert_eq!(outcome.result, JobResult::Passed, "{log}");
    let want_uid = if rustix::process::geteuid().is_root() { 65532 } else { rustix::process::getuid().as_raw() };
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], want_uid.to_string(), "{log}");
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(log.contains(line), "missing {line:?} in {log}");
    }
    if rustix::process::geteuid().is_root() {
        assert!(log.contains("CapBnd:\t0000000000000000"), "{log}");
    }
    for want in [
        "shadow-refused",
        "home-hidden",
        "data-hidden",
        "hooks-read-only",
        "raw-refused",
        "handle own refused",
        "handle forged refused",
        "cargo-works",
        "writes-ok",
    ] {
        assert!(log.contains(want), "missing {want:?} in {log}");
    }
    for bad in ["READ-SHADOW", "host-home-secret", "data-folder-key", "WROTE-HOOK", "RAW-SOCKET", "OPENED"] {
        assert!(!log.contains(bad), "{bad} in {log}");
    }
}

#[test]
fn secrets_never_touch_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(
        dir.path(),
        &[
            "echo \"${DEPLOY_KEY:0:4}\"",
            "cat ~/.ssh/id_deploy",
            "test -f ~/.ssh/id_deploy && stat -L -c '%a' ~/.ssh/id_deploy",
            "od -An -c config.bin | tr -s ' '",
            // While the job runs, nothing under its folder holds the values.
            &format!(
                "grep -rl -e wxyz-secret-''value -e BEGIN-KEY-''material {} 2>/dev/null | head -1; echo scanned",
                dir.path().display()
            ),
        ],
    );
    s.env = vec![("DEPLOY_KEY".into(), "wxyz-secret-value".into())];
    s.secret_values = vec!["wxyz-secret-value".into(), "BEGIN-KEY-material".into()];
    s.files = vec![
        salve_runner::JobFile {
            path: "~/.ssh/id_deploy".into(),
            content: b"BEGIN-KEY-material\n".to_vec(),
            mode: 0o600,
        },
        salve_runner::JobFile {
            path: "config.bin".into(),
            content: vec![b'a', 0, b'%', b'\\', b'\'', 0xff],
            mode: 0o644,
        },
    ];
    s.sandbox = sandbox(true, vec![dir.path().to_owned()]);
    let (outcome, log) = run(&s);
    assert_eq!(outcome.result, JobResult::Passed, "{log}");
    for want in ["wxyz\n", "[MASKED]\n600\n", " a \\0 % \\ ' 377\nscanned"] {
        assert!(log.contains(want), "missing {want:?} in {log}");
    }
    // After the job: nothing under its folder holds a secret value.
    let mut found = Vec::new();
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        if text.contains("wxyz-secret-value") || text.contains("BEGIN-KEY-material") {
            found.push(entry);
        }
    }
    assert!(found.is_empty(), "secret values on disk in {found:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(walk(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}
