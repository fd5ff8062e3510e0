//! Jobs in containers (`agent.containers`) through Podman, with images built here from this
//! machine's own files (no registry): the job's commands in the first image (`checkout`, the
//! toolbox), a PostgreSQL service container reachable on 127.0.0.1 and by its name, two parallel
//! jobs each with a database of its own on the same port, every container removed afterwards;
//! and without Podman, a job that fails at start saying what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::serve::{commit, git};
use super::{stderr, stdout};

const MAIN_IMAGE: &str = "localhost/salve-test-main:1";
const PG_IMAGE: &str = "localhost/salve-test-postgres:1";

/// The PostgreSQL version folder of this machine (`/usr/lib/postgresql/N`).
fn postgres_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("scripts/postgres.sh installs PostgreSQL")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("bin/postgres").is_file())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server under /usr/lib/postgresql")
}

/// A root file system of `paths` (files, and folders copied whole) and the libraries the files
/// load, as `ldd` lists them.
fn rootfs(root: &Path, paths: &[PathBuf]) {
    std::fs::create_dir_all(root).unwrap();
    let copy = |p: &Path| {
        let out = Command::new("cp").args(["-r", "-L", "--parents"]).arg(p).arg(root).output().unwrap();
        assert!(out.status.success(), "cp {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
    };
    for p in paths {
        copy(p);
        if p.is_file() {
            for lib in libraries(p) {
                copy(&lib);
            }
        }
    }
    for dir in ["tmp", "etc"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    // Merged /usr, as Debian has it (/bin/sh is where programs look for a shell).
    for (link, to) in [("bin", "usr/bin"), ("sbin", "usr/sbin")] {
        if !root.join(link).exists() {
            std::os::unix::fs::symlink(to, root.join(link)).unwrap();
        }
    }
    Command::new("chmod").arg("1777").arg(root.join("tmp")).status().unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/bash\npostgres:x:70:70::/tmp:/bin/bash\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\npostgres:x:70:\n").unwrap();
    // Only in the images: a command that finds it runs in one.
    std::fs::write(root.join("etc/salve-test-image"), "").unwrap();
}

/// The shared libraries `file` loads, as `ldd` lists them.
fn libraries(file: &Path) -> Vec<PathBuf> {
    let ldd = Command::new("ldd").arg(file).output().unwrap();
    String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from).collect()
}

fn which(tool: &str) -> PathBuf {
    let out = Command::new("bash").args(["-c", &format!("type -P {tool}")]).output().unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Podman's environment for Salve here: runc where it is installed (crun cannot run on hybrid
/// cgroups).
fn podman_env() -> Vec<(&'static str, String)> {
    let runc = which("runc");
    if runc.as_os_str().is_empty() { Vec::new() } else { vec![("SALVE_PODMAN_RUNTIME", "runc".to_owned())] }
}

fn podman(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("podman");
    if !podman_env().is_empty() {
        cmd.args(["--runtime", "runc"]);
    }
    cmd.args(args).output().expect("scripts/test.sh installs podman")
}

/// Builds the two images once (an image from a tar of files: `podman import`).
fn images() -> &'static Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let pg = postgres_dir();
        let work = tempfile::tempdir().unwrap();
        let tools = ["bash", "sh", "cat", "ls", "sleep", "env", "id", "head", "git", "test"];
        let mut main: Vec<PathBuf> = tools.iter().map(|t| which(t)).filter(|p| !p.as_os_str().is_empty()).collect();
        main.extend([pg.join("bin/psql"), pg.join("bin/pg_isready")]);
        // What `checkout` (git clone of a local mirror) runs of git's own programs.
        let exec = Command::new("git").arg("--exec-path").output().unwrap();
        let exec = PathBuf::from(String::from_utf8_lossy(&exec.stdout).trim());
        main.extend(["git", "git-upload-pack"].iter().map(|p| exec.join(p)).filter(|p| p.exists()));
        // The toolbox is the salve binary, mounted into the job's container: its libraries.
        main.extend(libraries(Path::new(env!("CARGO_BIN_EXE_salve"))));
        let mut server: Vec<PathBuf> = ["bash", "sh"].iter().map(|t| which(t)).collect();
        server.extend(["bin/postgres", "bin/initdb", "lib"].iter().map(|p| pg.join(p)));
        let version = pg.file_name().unwrap().to_string_lossy().into_owned();
        server.push(PathBuf::from(format!("/usr/share/postgresql/{version}")));
        let path = format!("ENV PATH={}/bin:/usr/local/bin:/usr/bin:/bin", pg.display());
        for (name, files) in [(MAIN_IMAGE, main), (PG_IMAGE, server)] {
            let root = work.path().join(name.replace(['/', ':'], "-"));
            rootfs(&root, &files);
            let tar = root.with_extension("tar");
            let t = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").output().unwrap();
            assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
            // The image of an earlier run goes once this one is in (each is a few hundred MB).
            let old = podman(&["image", "inspect", "--format", "{{.Id}}", name]);
            let out = podman(&["import", "--quiet", "--change", &path, &tar.to_string_lossy(), name]);
            if !out.status.success() {
                return Err(format!("podman import: {}", String::from_utf8_lossy(&out.stderr)));
            }
            let old = String::from_utf8_lossy(&old.stdout).trim().to_owned();
            if !old.is_empty() && !String::from_utf8_lossy(&out.stdout).contains(&old) {
                let _ = podman(&["rmi", &old]);
            }
        }
        Ok(())
    })
}

/// Why Podman cannot start any container of the test image here, if it cannot: a runtime error
/// three times over (a missing program in the image is the image's fault, not the runtime's).
fn podman_cannot_run() -> Option<String> {
    let mut why = String::new();
    for _ in 0..3 {
        let probe = podman(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            MAIN_IMAGE,
            "bash",
            "-c",
            "true",
        ]);
        if probe.status.success() {
            return None;
        }
        why = String::from_utf8_lossy(&probe.stderr).into_owned();
        if !why.contains("OCI") || why.contains("not found") || why.contains("no such file") {
            return None;
        }
    }
    Some(why)
}

const PIPELINE: &str = r#"version: v1.0
name: Containers
agent:
  machine:
    type: e1-standard-2
  containers:
    - name: main
      image: MAIN
      env_vars:
        - name: FROM_CONTAINER
          value: set-on-main
    - name: db
      image: PG
      user: postgres
      command: bash -c "initdb -D /tmp/pg -U postgres --auth=trust >/dev/null && exec postgres -D /tmp/pg -k /tmp -c listen_addresses=127.0.0.1"
blocks:
  - name: Test
    task:
      prologue:
        commands:
          - checkout
          - for i in {1..150}; do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
      jobs:
        - name: one
          commands:
            - psql -h db -U postgres -v ON_ERROR_STOP=1 -tA -c 'create table t (x int); insert into t values (1); select 40 + count(*) + 1 from t'
            - test -f app.txt && echo "$FROM_CONTAINER $SEMAPHORE_AGENT_MACHINE_ENVIRONMENT_TYPE"
        - name: two
          commands:
            - psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -tA -c 'create table t (x int); select 2'
"#;

fn run_pipeline(extra_env: &[(&str, String)]) -> (tempfile::TempDir, std::process::Output, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let yml = PIPELINE.replace("MAIN", MAIN_IMAGE).replace("PG", PG_IMAGE);
    commit(&repo, &[(".semaphore/semaphore.yml", Some(&yml)), ("app.txt", Some("app\n"))], "containers");
    let data = t.path().join("data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_salve"));
    cmd.args(["run", "--jobs", "2"]).current_dir(&repo).env("SALVE_DATA_DIR", &data);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (t, out, data)
}

fn job_log(data: &Path, job: &str) -> String {
    let mut text = String::new();
    for dir in std::fs::read_dir(data.join("jobs")).unwrap().flatten() {
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        if log.contains(job) {
            text.push_str(&log);
        }
    }
    text
}

#[test]
fn a_container_job_runs_in_its_image_with_a_postgres_service_of_its_own() {
    if let Err(e) = images() {
        panic!("the test images cannot be built here: {e}");
    }
    let (mut _t, mut out, mut data) = run_pipeline(&podman_env());
    // Podman 4.3 here now and then fails to start a container while others start at once (its
    // network namespace): the machine's, not this test's; once more.
    if !out.status.success() && job_log(&data, "").contains("its shell did not start") && podman_cannot_run().is_none()
    {
        (_t, out, data) = run_pipeline(&podman_env());
    }
    let (o, e) = (stdout(&out), stderr(&out));
    let logs = job_log(&data, "");
    // A machine whose Podman cannot start any container (no usable runtime): the jobs must fail
    // at start with Podman's own words, not run their commands somewhere else.
    if !out.status.success()
        && let Some(why) = podman_cannot_run()
    {
        eprintln!("Podman cannot run containers here: {why}");
        assert!(logs.contains("did not start"), "{o}\n{e}\n{logs}");
        assert!(!logs.contains("$ checkout"), "{logs}");
        return;
    }
    assert!(out.status.success(), "{o}\n{e}\n{logs}");
    // Each job's own database: both created table t on 127.0.0.1:5432.
    assert!(logs.contains("\n42\n"), "{logs}");
    assert!(logs.contains("\n2\n"), "{logs}");
    assert!(logs.contains("set-on-main container"), "{logs}");
    assert!(!logs.contains("invalid logging spec"), "Podman's log level is one conmon takes: {logs}");
    assert!(logs.contains(&format!("running in container 'main' ({MAIN_IMAGE}); services: db ({PG_IMAGE})")), "{logs}");
    // Nothing of the jobs is left running.
    let left = podman(&["ps", "--all", "--format", "{{.Names}}"]);
    let names = String::from_utf8_lossy(&left.stdout);
    assert!(!names.lines().any(|n| n.starts_with("salve-")), "containers left: {names}");
}

#[test]
fn without_podman_a_container_job_fails_at_start_saying_what_is_missing() {
    let (_t, out, data) = run_pipeline(&[("SALVE_PODMAN", "/nonexistent/podman".to_owned())]);
    assert!(!out.status.success());
    let logs = job_log(&data, "");
    assert!(
        logs.contains("it runs in containers (image 'localhost/salve-test-main:1'), and Salve runs containers with Podman, which this machine does not have"),
        "{logs}\n{}",
        stdout(&out)
    );
    assert!(!logs.contains("$ checkout"), "no command ran: {logs}");
}

#[test]
fn a_missing_image_fails_the_job_at_start() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let yml = "version: v1.0\nname: C\nagent:\n  machine:\n    type: e1-standard-2\n  containers:\n    - name: main\n      image: localhost/salve-no-such-image:0\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: j\n          commands:\n            - echo never\n";
    commit(&repo, &[(".semaphore/semaphore.yml", Some(yml))], "c");
    let data = t.path().join("data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_salve"));
    cmd.args(["run"]).current_dir(&repo).env("SALVE_DATA_DIR", &data);
    for (k, v) in podman_env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let logs = job_log(&data, "");
    assert!(
        logs.contains(
            "image 'localhost/salve-no-such-image:0' (container 'main') is not on this machine and could not be pulled"
        ),
        "{logs}"
    );
    assert!(!logs.contains("never"), "{logs}");
}

/// `image_pull_secrets`: a secret of a kind Salve cannot log in with fails the job at start
/// with which kinds it can; one it can is given to the pull and gone afterwards.
#[test]
fn image_pull_secrets_log_the_pull_in_or_say_why_not() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let yml = "version: v1.0\nname: C\nagent:\n  machine:\n    type: e1-standard-2\n  containers:\n    - name: main\n      image: 127.0.0.1:9/private/app:1\n  image_pull_secrets:\n    - name: pull\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: j\n          commands:\n            - echo never\n";
    commit(&repo, &[(".semaphore/semaphore.yml", Some(yml))], "c");
    let data = t.path().join("data");
    let salve = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_salve"));
        cmd.args(args).current_dir(&repo).env("SALVE_DATA_DIR", &data);
        for (k, v) in podman_env() {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let made = salve(&["secret", "create", "pull", "-e", "DOCKER_CREDENTIAL_TYPE=AWS_ECR", "-e", "AWS_REGION=x"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let out = salve(&["run"]);
    assert!(!out.status.success());
    let all = format!("{}{}{}", stdout(&out), stderr(&out), job_log(&data, ""));
    assert!(all.contains("DOCKER_CREDENTIAL_TYPE 'AWS_ECR' is not one Salve can use"), "{all}");
    // A kind it can use: the pull is tried with it (nothing listens there) and the job says so.
    let gone = salve(&["secret", "delete", "pull"]);
    assert!(gone.status.success(), "{}", stderr(&gone));
    let made = salve(&[
        "secret",
        "create",
        "pull",
        "-e",
        "DOCKER_CREDENTIAL_TYPE=GenericDocker",
        "-e",
        "DOCKER_URL=127.0.0.1:9",
        "-e",
        "DOCKER_USERNAME=me",
        "-e",
        "DOCKER_PASSWORD=pull-secret-value",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let out = salve(&["run"]);
    assert!(!out.status.success());
    let logs = job_log(&data, "");
    assert!(
        logs.contains(
            "image '127.0.0.1:9/private/app:1' (container 'main') is not on this machine and could not be pulled"
        ),
        "{logs}"
    );
    assert!(!logs.contains("pull-secret-value"), "{logs}");
    let left: Vec<PathBuf> = std::fs::read_dir(data.join("jobs"))
        .unwrap()
        .flatten()
        .map(|d| d.path().join("podman-auth.json"))
        .filter(|p| p.exists())
        .collect();
    assert!(left.is_empty(), "the auth file is removed: {left:?}");
}

/// A heal verifies a container job in its image where Podman can run it (here, replaying the
/// failure): the job's check passes only inside the image, and the project's fixer's change is
/// verified there and pushed.
#[test]
fn a_heal_verifies_a_container_job_in_its_image() {
    if let Err(e) = images() {
        panic!("the test images cannot be built here: {e}");
    }
    let t = tempfile::tempdir().unwrap();
    let case = t.path().join("cases/in-image");
    let repo = case.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let check =
        "test -f /etc/salve-test-image && [ \"$(cat file.txt)\" = good ] || { echo 'file.txt is not good'; exit 1; }";
    let yml = format!(
        "version: v1.0\nname: C\nagent:\n  machine:\n    type: e1-standard-2\n  containers:\n    - name: main\n      image: {MAIN_IMAGE}\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: check\n          commands:\n            - checkout\n            - '{}'\n",
        check.replace('\'', "''")
    );
    let toml = "[[heal.fixer]]\nname = \"make it good\"\nwhen_log = 'is not good'\nrun = [\"echo good > file.txt\"]\n";
    commit(
        &repo,
        &[(".semaphore/semaphore.yml", Some(&yml)), ("file.txt", Some("bad\n")), ("salve.toml", Some(toml))],
        "c",
    );
    std::fs::create_dir_all(case.join("logs")).unwrap();
    std::fs::write(case.join("logs/check.log"), format!("$ {check}\nfile.txt is not good\n")).unwrap();
    std::fs::write(case.join("case.toml"), "expect = \"pushed\"\n").unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let replay = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_salve"));
        cmd.args(["heal", "replay", "--cases", "cases", "--json", "r.json"]).current_dir(t.path()).env("HOME", &home);
        for (k, v) in podman_env() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out, std::fs::read_to_string(t.path().join("r.json")).unwrap_or_default())
    };
    let (mut out, mut report) = replay();
    // Podman 4.3 here now and then fails to start a container while others start at once (its
    // network namespace); that is the machine's, not what this test is about: once more.
    if report.contains("its shell did not start") {
        (out, report) = replay();
    }
    let o = stdout(&out);
    assert!(out.status.success(), "{o}\n{}", stderr(&out));
    assert!(o.contains("pushed (unknown): selfheal CI: apply make it good"), "{o}\n{report}");
    let left = podman(&["ps", "--all", "--format", "{{.Names}}"]);
    assert!(!String::from_utf8_lossy(&left.stdout).lines().any(|n| n.starts_with("salve-heal-")), "no container left");
}

/// `os_image` names an image this installation maps (`salve run --os-image NAME=IMAGE`, the
/// server's `[os_images]`): the job runs in it; unmapped, on the machine.
#[test]
fn an_os_image_this_installation_maps_runs_the_job_in_that_image() {
    if let Err(e) = images() {
        panic!("the test images cannot be built here: {e}");
    }
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("app");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let yml = "version: v1.0\nname: C\nagent:\n  machine:\n    type: e1-standard-2\n    os_image: ubuntu2204\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: j\n          commands:\n            - checkout\n            - test -f /etc/salve-test-image\n";
    commit(&repo, &[(".semaphore/semaphore.yml", Some(yml))], "c");
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_salve"));
        cmd.arg("run").args(extra).current_dir(&repo).env("SALVE_DATA_DIR", t.path().join("data"));
        for (k, v) in podman_env() {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let mut mapped = run(&["--os-image", &format!("ubuntu2204={MAIN_IMAGE}")]);
    if stdout(&mapped).contains("its shell did not start") {
        // Podman's occasional failure to start a container here (see above): once more.
        mapped = run(&["--os-image", &format!("ubuntu2204={MAIN_IMAGE}")]);
    }
    assert!(mapped.status.success(), "{}\n{}", stdout(&mapped), stderr(&mapped));
    let unmapped = run(&[]);
    assert!(!unmapped.status.success(), "on the machine, there is no image marker: {}", stdout(&unmapped));
    let bad = run(&["--os-image", "ubuntu2204"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("give NAME=IMAGE"), "{}", stderr(&bad));
}
