//! Attacks on a running server, each as it was found (ARCHITECTURE.md's threat model lists
//! them): a job that reaches for the host, secrets left on disk, unbounded unauthenticated
//! bodies, jobs without limits, a push lost to a crash, a branch name Salve cannot build, a
//! relative data folder. The runner's suite attacks the sandbox itself; the heal's suite its git.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::serve::{Server, commit, git};

fn pipeline_yml(commands: &[&str], extra: &str) -> String {
    let list: String = commands.iter().map(|c| format!("            - '{}'\n", c.replace('\'', "''"))).collect();
    format!(
        "version: v1.0\nname: CI\nagent:\n  machine:\n    type: e1-standard-2\n{extra}blocks:\n  - name: Job\n    task:\n      jobs:\n        - name: job\n          commands:\n{list}"
    )
}

/// A hosted project `name` whose main runs `yml`; returns the work tree.
fn project(server: &Server, name: &str, yml: &str) -> tempfile::TempDir {
    let created = server.salve(&["project", "create", name]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    commit(dir.path(), &[(".semaphore/semaphore.yml", Some(yml))], "ci");
    server.push(dir.path(), name, "HEAD:refs/heads/main");
    dir
}

/// The pipeline's first job's log (empty while that job does not exist yet).
fn job_log(server: &Server, pipeline: &Value) -> String {
    let p = server.get(&format!("/api/v1/pipelines/{}", pipeline["id"].as_str().unwrap()));
    let Some(job) = p["blocks"][0]["jobs"][0]["id"].as_str().map(str::to_owned) else { return String::new() };
    let log = server.get(&format!("/api/v1/jobs/{job}/logs?tail=500"));
    log["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap().to_owned() + "\n").collect()
}

fn finished(list: &[Value]) -> bool {
    !list.is_empty() && list.iter().all(|p| p["state"] == "done")
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            out.extend(files_under(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

fn holding(dir: &Path, values: &[&str]) -> Vec<std::path::PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap_or_default();
            values.iter().any(|v| bytes.windows(v.len()).any(|w| w == v.as_bytes()))
        })
        .collect()
}

/// A root server's job: an unprivileged user with no capabilities, the data folder and the
/// repository's hooks out of reach, no raw sockets to sniff the server's loopback traffic with;
/// its secret variable and secret file reach it, and no file under the data folder holds their
/// values, neither while it runs nor after.
#[test]
fn a_servers_job_owns_nothing_and_leaves_no_secret_behind() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = data.path().join("key-source");
    std::fs::write(&key, "KEY-material-8d2e\n").unwrap();
    let file_arg = format!("{}:.ssh/id_deploy", key.display());
    let made = server.salve(&["secret", "create", "deploy", "-e", "DEPLOY_TOKEN=tok-3f9a7c-value", "-f", &file_arg]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    std::fs::remove_file(data.path().join("key-source")).unwrap();
    let hooks = data.path().join("repos/owned.git/hooks");
    let yml = pipeline_yml(
        &[
            "id -u",
            "grep -E \"^(CapEff|CapBnd|NoNewPrivs)\" /proc/self/status",
            &format!("echo evil >> {}/post-receive && echo WROTE-HOOK || echo hooks-read-only", hooks.display()),
            &format!("ls {} >/dev/null 2>&1 && echo SAW-DATA || echo data-hidden", data.path().join("salve.db").display()),
            "python3 -c \"import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\" 2>/dev/null && echo RAW || echo raw-refused",
            "test \"${DEPLOY_TOKEN:4:6}\" = 3f9a7c && echo variable-arrived",
            "grep -q KEY-material ~/.ssh/id_deploy && echo file-arrived",
            "sleep 3",
        ],
        "",
    )
    .replace("    task:\n", "    task:\n      secrets:\n        - name: deploy\n");
    let _p = project(&server, "owned", &yml);
    // While the job runs (its `sleep`), nothing under the data folder holds a secret value.
    let start = Instant::now();
    let mut looked = false;
    while !looked && start.elapsed() < Duration::from_secs(60) {
        let list = server.pipelines("owned");
        if list.first().is_some_and(|p| p["state"] == "done") {
            break;
        }
        if list.first().is_some_and(|p| p["state"] == "running") && job_log(&server, &list[0]).contains("file-arrived")
        {
            let during = holding(data.path(), &["tok-3f9a7c-value", "KEY-material-8d2e"]);
            assert!(during.is_empty(), "secret values on disk while the job runs: {during:?}");
            looked = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(looked, "the job was never seen running");
    let list = server.wait("owned", "the job", finished);
    let log = job_log(&server, &list[0]);
    assert_eq!(list[0]["result"], "passed", "{log}");
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    assert!(log.starts_with(if root { "65532\n" } else { "" }), "{log}");
    for want in [
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
        "hooks-read-only",
        "data-hidden",
        "raw-refused",
        "variable-arrived",
        "file-arrived",
    ] {
        assert!(log.contains(want), "missing {want:?} in {log}");
    }
    for bad in ["WROTE-HOOK", "SAW-DATA", "RAW\n"] {
        assert!(!log.contains(bad), "{bad} in {log}");
    }
    let after = holding(data.path(), &["tok-3f9a7c-value", "KEY-material-8d2e"]);
    assert!(after.is_empty(), "secret values on disk after the job: {after:?}");
}

/// The server's RSS in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Sends `head` (request line and headers) and up to `body` bytes, then reads the status line.
fn raw(url: &str, head: &str, body: usize) -> String {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    while sent < body {
        let n = chunk.len().min(body - sent);
        if s.write_all(&chunk[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let mut reply = vec![0u8; 4096];
    let n = s.read(&mut reply).unwrap_or(0);
    String::from_utf8_lossy(&reply[..n]).lines().next().unwrap_or("").to_owned()
}

/// Nobody signs in to call a webhook, so nothing unbounded is read: an unknown project or a
/// wrong GitLab token is refused before the body, a body declared too large gets 413 before it
/// is read, and one that does not declare its length is cut off at the limit.
#[test]
fn webhook_bodies_are_bounded_before_any_work() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let upstream = tempfile::tempdir().unwrap();
    git(upstream.path(), &["init", "-q", "-b", "main"]);
    commit(upstream.path(), &[("README", Some("x"))], "init");
    let made = server.salve(&[
        "project",
        "create",
        "ext",
        "--repo-url",
        &upstream.path().to_string_lossy(),
        "--webhook-secret",
        "s3cret-value",
    ]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let before = rss_kib(server.pid());
    let huge = 300 * 1024 * 1024;
    let post = |path: &str, headers: &str| format!("POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    let declared = |path: &str, extra: &str| post(path, &format!("{extra}Content-Length: {huge}\r\n"));
    let status = raw(&server.url, &declared("/webhooks/github/nope", "X-Hub-Signature-256: sha256=00\r\n"), 1 << 20);
    assert!(status.contains(" 401 "), "{status}");
    let status = raw(
        &server.url,
        &declared("/webhooks/gitlab/ext", "X-Gitlab-Token: wrong\r\nX-Gitlab-Event: Push Hook\r\n"),
        1 << 20,
    );
    assert!(status.contains(" 401 "), "{status}");
    let status = raw(
        &server.url,
        &declared("/webhooks/github/ext", "X-Hub-Signature-256: sha256=00\r\nX-GitHub-Event: push\r\n"),
        1 << 20,
    );
    assert!(status.contains(" 413 "), "{status}");
    // Chunked, no length: read to the limit (25 MB) and no further.
    let chunked = post("/webhooks/github/ext", "X-Hub-Signature-256: sha256=00\r\nTransfer-Encoding: chunked\r\n");
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(chunked.as_bytes()).unwrap();
    let piece = vec![b'y'; 1 << 20];
    for _ in 0..40 {
        if s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .and_then(|()| s.write_all(&piece))
            .and_then(|()| s.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    let mut reply = vec![0u8; 4096];
    let n = s.read(&mut reply).unwrap_or(0);
    let status = String::from_utf8_lossy(&reply[..n]).lines().next().unwrap_or("").to_owned();
    assert!(status.contains(" 413 "), "{status}");
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 128 * 1024, "the server grew by {grown} KiB");
    assert!(server.pipelines("ext").is_empty());
}

/// Jobs on a server have a process and a memory limit by default (here set low with flags),
/// and a job may ask for less (`SALVE_MEMORY_MB`), never more.
#[test]
fn server_jobs_have_memory_and_process_limits() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--job-max-processes", "64", "--job-memory-mb", "4096"], None);
    let script = r"printf 'import os, time\nn = 0\ntry:\n    for i in range(200):\n        if os.fork() == 0:\n            time.sleep(3)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    print(\042fork refused after\042, n)\n' > forks.py";
    let hog = "python3 -c \"b = bytearray(512 * 1024 * 1024); print(len(b))\"";
    let yml = pipeline_yml(
        &[script, "python3 forks.py", "echo next", hog, "echo HOGGED"],
        "global_job_config:\n  env_vars:\n    - name: SALVE_MEMORY_MB\n      value: \"128\"\n    - name: SALVE_MAX_PROCESSES\n      value: \"100000\"\n",
    );
    let _p = project(&server, "limits", &yml);
    let list = server.wait("limits", "the job", finished);
    let log = job_log(&server, &list[0]);
    assert_eq!(list[0]["result"], "failed", "{log}");
    assert!(log.contains("next"), "{log}");
    assert!(!log.contains("HOGGED"), "{log}");
    assert!(log.contains("out of memory") || log.contains("MemoryError"), "{log}");
    let refused: u32 = log
        .lines()
        .find_map(|l| l.strip_prefix("fork refused after "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the process limit did not hold: {log}"));
    assert!(refused < 64, "{log}");
}

/// A push whose ref update reached the repository while the server was down (killed after git
/// moved the ref, before it read the hook's record) gets its workflow when the server starts.
#[test]
fn a_ref_moved_while_the_server_was_down_gets_its_workflow() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let work = project(&server, "lost", &pipeline_yml(&["true"], ""));
    server.wait("lost", "the first push", finished);
    drop(server);
    // The push git finished but the server never heard of: a new commit, the ref moved.
    commit(work.path(), &[("more", Some("1"))], "more");
    let bare = data.path().join("repos/lost.git");
    git(work.path(), &["push", "-q", &bare.to_string_lossy(), "HEAD:refs/heads/main", "HEAD:refs/heads/side"]);
    let sha = String::from_utf8(
        std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(work.path()).output().unwrap().stdout,
    )
    .unwrap();
    let server = Server::start(data.path());
    let list = server.wait("lost", "the lost push's workflows", |l| {
        l.iter().filter(|p| p["sha"] == sha.trim() && p["state"] == "done").count() == 2
    });
    assert!(list.iter().any(|p| p["branch"] == "side"), "{list:#?}");
    // Started once: a restart finds nothing more to do.
    drop(server);
    let server = Server::start(data.path());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.pipelines("lost").len(), 3, "{:#?}", server.pipelines("lost"));
}

/// A branch git takes but Salve cannot build (`-x` reads as an option) gets a workflow that
/// fails and says why; a relative `--data-dir` works for pushes and jobs.
#[test]
fn odd_branch_names_and_a_relative_data_folder() {
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start_with(&data, &[], Some(base.path()));
    let work = project(&server, "odd", &pipeline_yml(&["echo built"], ""));
    server.push(work.path(), "odd", "HEAD:refs/heads/-x");
    let list = server.wait("odd", "both pushes", |l| l.len() == 2 && finished(l));
    let main = list.iter().find(|p| p["branch"] == "main").unwrap();
    assert_eq!(main["result"], "passed", "{list:#?}");
    let odd = list.iter().find(|p| p["branch"] == "-x").unwrap();
    assert_eq!(odd["result"], "failed", "{list:#?}");
    let shown = server.get(&format!("/api/v1/pipelines/{}", odd["id"].as_str().unwrap()));
    let error = shown["error"].as_str().unwrap_or_default();
    assert!(error.contains("'-x' cannot be built"), "{shown:#}");
}
