//! `salve run` on real git repositories, every job in real bubblewrap: Semaphore's engine
//! scenarios with their expected results, and the job rules end to end.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A git repository holding a copy of `src` (or the given files), one commit on `main`.
pub(super) fn repo_from(src: Option<&Path>, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if let Some(src) = src {
        let out = Command::new("cp").arg("-a").arg(format!("{}/.", src.display())).arg(dir.path()).output().unwrap();
        assert!(out.status.success());
    }
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(
        dir.path(),
        &["-c", "user.email=t@example.com", "-c", "user.name=Tester", "commit", "-qm", "init", "--allow-empty"],
    );
    dir
}

pub fn salve_run(repo: &Path, data: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salve"))
        .arg("run")
        .args(args)
        .current_dir(repo)
        .env("SALVE_DATA_DIR", data)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

pub(super) fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub(super) fn finished(events: &[Value]) -> &Value {
    events.iter().rev().find(|e| e["event"] == "pipeline_finished").expect("a pipeline_finished event")
}

fn conformance() -> std::path::PathBuf {
    std::env::var_os("SALVE_CONFORMANCE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
        std::path::PathBuf::from,
    )
}

/// Scenario files that reference the secrets `Secret 1` and `Secret 2`.
const NEEDS_SECRETS: &[&str] = &["secrets-both.yml", "no_cmd_files.yml"];

fn salve_in(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salve")).args(args).env("SALVE_DATA_DIR", data).output().unwrap()
}

#[test]
fn semaphore_engine_scenarios() {
    let root = conformance().join("pipelines/scenarios");
    let expected: Vec<Value> = serde_json::from_slice(&std::fs::read(root.join("EXPECTED.json")).unwrap()).unwrap();
    let mut checked = 0;
    for entry in &expected {
        let want = &entry["expected"];
        let notes = entry["notes"].as_str().unwrap_or("");
        let request = &entry["request"];
        let ref_type = request["ref_type"].as_str().unwrap_or("branch");
        let Some(file) = entry["pipeline_file"].as_str() else { continue };
        // Outcomes of user/organisation terminations and forced database states are not
        // definition outcomes of a local run.
        if want["pipeline"].is_null()
            || ["stuck", "erminat", "OrganizationBlocked", "schedule"].iter().any(|w| notes.contains(w))
            || request.get("schedule_extension_of").is_some()
            || request.get("schedule_extension_file").is_some()
            || want.get("describe_by_state").is_some()
            || want.get("time_limit_when_ppl_already_done").is_some()
            || (entry["scenario"] == "2_basic" && want["pipeline"]["result"] == "stopped")
        {
            continue;
        }
        let scenario = entry["scenario"].as_str().unwrap();
        let branch = request["label"].as_str().or(request["branch_name"].as_str()).unwrap_or("main");
        let repo = repo_from(Some(&root.join(scenario)), &[]);
        let data = tempfile::tempdir().unwrap();
        if NEEDS_SECRETS.iter().any(|s| file.ends_with(s)) {
            for (name, var) in
                [("Secret 1", "SECRET_1=one"), ("Secret 2", "SECRET_2=two"), ("Secret 3", "SECRET_3=three")]
            {
                assert!(salve_in(data.path(), &["secret", "create", name, "-e", var]).status.success());
            }
        }
        // The scenarios' images are fictional (Semaphore's engine tests fake the jobs): their
        // commands run here.
        let mut run_args = vec!["--file", file, "--json", "--jobs", "16", "--no-containers"];
        match ref_type {
            "tag" => run_args.extend(["--tag", branch, "--branch", "main"]),
            "pr" => run_args.extend(["--pr", branch, "--branch", "main"]),
            _ => run_args.extend(["--branch", branch]),
        }
        let out = salve_run(repo.path(), data.path(), &run_args, &[]);
        let ev = events(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ctx = format!(
            "{scenario} {file} on {branch}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        let done = finished(&ev);
        let result = &want["pipeline"]["result"];
        if !result.is_null() {
            assert_eq!(&done["result"], result, "{ctx}");
        }
        if let Some(reason) = want["pipeline"].get("result_reason") {
            assert_eq!(&done["result_reason"], reason, "{ctx}");
        }
        assert_eq!(out.status.code(), Some(i32::from(done["result"] != "passed")), "{ctx}");
        for (block, w) in want["blocks"].as_object().into_iter().flatten() {
            if w["result"].is_null() {
                continue;
            }
            let got = ev
                .iter()
                .rev()
                .find(|e| e["event"] == "block_finished" && e["block"] == block.as_str())
                .unwrap_or_else(|| panic!("block {block} never finished: {ctx}"));
            assert_eq!(got["result"], w["result"], "block {block}: {ctx}");
        }
        for text in want["error_contains"].as_array().into_iter().flatten() {
            assert!(stderr.contains(text.as_str().unwrap()), "missing {text}: {ctx}");
        }
        checked += 1;
    }
    assert_eq!(checked, 46, "scenario entries checked");
}

const HEADER: &str = "version: v1.0\nname: t\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n";

fn pipeline(commands: &[&str]) -> String {
    let list: Vec<String> =
        commands.iter().map(|c| format!("            - {}\n", serde_json::to_string(c).unwrap())).collect();
    format!("{HEADER}  - name: B\n    task:\n      jobs:\n        - name: J\n          commands:\n{}", list.concat())
}

/// `yaml` committed alone and run with `salve run --json`: the events, the first finished job's
/// log and what salve printed on stderr.
fn run_yaml(yaml: &str) -> (Vec<Value>, String, String) {
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", yaml)]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = salve_run(repo.path(), data.path(), &["--json"], &[]);
    let ev = events(&out);
    let log = job_log(data.path(), &ev);
    (ev, log, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn job_log(data: &Path, ev: &[Value]) -> String {
    let id = ev.iter().find(|e| e["event"] == "job_finished").unwrap()["job_id"].as_str().unwrap().to_owned();
    String::from_utf8_lossy(&std::fs::read(data.join("jobs").join(id).join("log")).unwrap()).into_owned()
}

#[test]
fn sandboxed_jobs_see_neither_the_launching_environment_nor_salve_data() {
    // Not under /tmp (where the checkout may be, as in CI): jobs may write their own private
    // /tmp, and Landlock allows all of it, including the tmpfs that hides a data folder there.
    let data = tempfile::tempdir_in("/var/tmp").unwrap();
    let probe =
        format!("touch {}/planted 2>/dev/null && echo PLANTED || echo data-dir-not-writable", data.path().display());
    let yaml = pipeline(&[
        "checkout",
        "cat README",
        "env | grep -c LAUNCH_SECRET_VALUE || echo env-clean",
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c LAUNCH_SECRET_VALUE || echo proc-clean",
        &probe,
    ]);
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml), ("README", "from the commit\n")]);
    let out = salve_run(repo.path(), data.path(), &["--json"], &[("LAUNCH_SECRET", "LAUNCH_SECRET_VALUE")]);
    let ev = events(&out);
    let log = job_log(data.path(), &ev);
    assert_eq!(finished(&ev)["result"], "passed", "{log}");
    for want in ["from the commit", "env-clean", "proc-clean", "data-dir-not-writable"] {
        assert!(log.contains(want), "missing {want}: {log}");
    }
    assert!(!data.path().join("planted").exists());
}

#[test]
fn malformed_pipelines_run_nothing() {
    let yaml =
        format!("{HEADER}  - name: B\n    task:\n      jobs:\n        - name: J\n          comands: [echo hi]\n");
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml)]);
    let data = tempfile::tempdir().unwrap();
    let out = salve_run(repo.path(), data.path(), &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("semaphore.yml:10:11") && stderr.contains("nothing was run"), "{stderr}");
    assert!(!data.path().join("jobs").exists() || std::fs::read_dir(data.path().join("jobs")).unwrap().count() == 0);
}

#[test]
fn missing_bubblewrap_is_a_clear_error_unless_no_sandbox() {
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &pipeline(&["echo ran"]))]);
    let data = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let git = String::from_utf8(Command::new("sh").args(["-c", "command -v git"]).output().unwrap().stdout).unwrap();
    std::os::unix::fs::symlink(git.trim(), bin.path().join("git")).unwrap();
    let path = bin.path().to_str().unwrap();
    let out = salve_run(repo.path(), data.path(), &[], &[("PATH", path)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("apt-get install bubblewrap") && stderr.contains("--no-sandbox"), "{stderr}");
    let out =
        salve_run(repo.path(), data.path(), &["--no-sandbox", "--json"], &[("PATH", &format!("{path}:/usr/bin:/bin"))]);
    assert_eq!(finished(&events(&out))["result"], "passed", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn out_of_memory_and_dirty_work_trees() {
    let yaml =
        pipeline(&["checkout", "cat NOTE", "python3 -c 'x = bytes(400 << 20) + b\"a\"; print(len(x))'; echo survived"]);
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml), ("NOTE", "committed\n")]);
    std::fs::write(repo.path().join("NOTE"), "uncommitted\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = salve_run(repo.path(), data.path(), &["--dirty", "--memory", "64", "--json"], &[]);
    let ev = events(&out);
    let log = job_log(data.path(), &ev);
    assert!(log.contains("uncommitted"), "{log}");
    let job = ev.iter().find(|e| e["event"] == "job_finished").unwrap();
    assert_eq!(job["result"], "failed", "{log}");
    let summary = job["summary"].as_str().unwrap();
    assert!(summary.contains("out of memory") || log.contains("no cgroup could be created"), "{summary}\n{log}");
}

#[test]
fn secrets_are_injected_masked_and_required() {
    let yaml = format!(
        "{HEADER}  - name: B\n    task:\n      secrets:\n        - name: deploy key\n      jobs:\n        - name: J\n          commands:\n            - echo \"token=$API_TOKEN\"\n            - cat .config/creds\n"
    );
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml)]);
    let data = tempfile::tempdir().unwrap();
    let out = salve_run(repo.path(), data.path(), &["--json"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ev = events(&out);
    assert_eq!(finished(&ev)["result_reason"], "malformed", "{stderr}");
    assert!(stderr.contains("Secret 'deploy key' not found") && stderr.contains("salve secret create"), "{stderr}");
    assert!(!ev.iter().any(|e| e["event"] == "job_started"));

    let creds = data.path().join("creds.txt");
    std::fs::write(&creds, "file-s3cret-content\n").unwrap();
    let file_arg = format!("{}:.config/creds", creds.display());
    let made =
        salve_in(data.path(), &["secret", "create", "deploy key", "-e", "API_TOKEN=tok-9f8e7d", "-f", &file_arg]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let listed = salve_in(data.path(), &["secret", "list"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "deploy key\n");
    let db = std::fs::read(data.path().join("salve.db")).unwrap();
    assert!(!db.windows(10).any(|w| w == b"tok-9f8e7d"), "secret stored in clear");
    let out = salve_run(repo.path(), data.path(), &["--json"], &[]);
    let ev = events(&out);
    let log = job_log(data.path(), &ev);
    assert_eq!(finished(&ev)["result"], "passed", "{log}");
    assert!(log.contains("token=[MASKED]\n[MASKED]\n"), "{log}");
    assert!(!log.contains("tok-9f8e7d") && !log.contains("s3cret"), "{log}");
}

#[test]
fn toolbox_cache_artifact_sem_context_and_retry_work_across_jobs() {
    let yaml = format!(
        "{HEADER}  - name: Produce\n    task:\n      jobs:\n        - name: P\n          commands:\n{}  - name: Consume\n    task:\n      jobs:\n        - name: C\n          commands:\n{}",
        [
            "mkdir -p deps && echo cached-content > deps/a.txt",
            "cache store deps-$SEMAPHORE_GIT_BRANCH-v1 deps",
            "cache store deps-$SEMAPHORE_GIT_BRANCH-v1 deps",
            "cache has_key deps-main-v1 && echo has-key",
            "cache store nothing-here missing-path",
            "echo report > report.txt && artifact push workflow report.txt -d reports/r.txt",
            "artifact push workflow report.txt -d reports/r.txt || echo refused-overwrite",
            "artifact push job report.txt -d ../../escape.txt || echo refused-traversal",
            "sem-context put build_id=42",
            "retry --times 3 --sleep 0 'test -f flag || { touch flag; false; }' && echo retried-ok",
            "checksum report.txt",
            "printf '<testsuite name=\"s\"><testcase classname=\"c\" name=\"ok\" time=\"0.5\"/><testcase classname=\"c\" name=\"bad\"><failure message=\"boom\">trace line</failure></testcase></testsuite>' > junit.xml",
            "test-results publish junit.xml",
            "cat $SALVE_ARTIFACT_DIR/jobs/$SEMAPHORE_JOB_ID/test-results/summary.json; echo",
            "grep -o '\"message\":\"boom\"' $SALVE_ARTIFACT_DIR/workflows/$SEMAPHORE_WORKFLOW_ID/test-results/$SEMAPHORE_PIPELINE_ID/$SEMAPHORE_JOB_ID.json",
            "echo not-xml > bad.xml; test-results publish bad.xml || echo refused-bad-xml",
        ]
        .iter()
        .map(|c| format!("            - {}\n", serde_json::to_string(c).unwrap()))
        .collect::<String>(),
        [
            "cache restore nomatch-xyz,deps-main",
            "cat deps/a.txt",
            "artifact pull workflow reports/r.txt && cat r.txt",
            "artifact pull workflow reports/missing.txt || echo pull-missing",
            "echo \"ctx=$(sem-context get build_id)\"",
            "sem-context get nope_key --fallback dflt",
            "cache list | cut -f1",
            "cache clear && (cache is_not_empty || echo cache-empty)",
        ]
        .iter()
        .map(|c| format!("            - {}\n", serde_json::to_string(c).unwrap()))
        .collect::<String>(),
    );
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml)]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = salve_run(repo.path(), data.path(), &["--json"], &[]);
    let ev = events(&out);
    let logs: Vec<String> = ev
        .iter()
        .filter(|e| e["event"] == "job_finished")
        .map(|e| {
            let dir = data.path().join("jobs").join(e["job_id"].as_str().unwrap());
            String::from_utf8_lossy(&std::fs::read(dir.join("log")).unwrap()).into_owned()
        })
        .collect();
    let all = logs.join("\n----\n");
    assert_eq!(finished(&ev)["result"], "passed", "{all}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "Key 'deps-main-v1' already exists.",
        "has-key",
        "'missing-path' doesn't exist locally.",
        "refused-overwrite",
        "refused-traversal",
        "retried-ok",
        "HIT: 'deps-main-v1'",
        "MISS: 'nomatch-xyz'",
        "cached-content",
        "report",
        "pull-missing",
        "ctx=42",
        "dflt",
        "cache-empty",
        "Published 1 report(s): 2 tests, 1 passed, 1 failed",
        "\"total\":2,\"passed\":1,\"skipped\":0,\"error\":0,\"failed\":1",
        "\"message\":\"boom\"",
        "not JUnit XML",
        "refused-bad-xml",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
    assert!(!data.path().join("escape.txt").exists());
}

#[test]
fn sigint_stops_the_pipeline_and_its_jobs() {
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &pipeline(&["echo started", "sleep 60", "echo never"]))]);
    let data = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_salve"))
        .args(["run", "--json", "--no-sandbox"])
        .current_dir(repo.path())
        .env("SALVE_DATA_DIR", data.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the job to start, then interrupt salve as a terminal would.
    let jobs = data.path().join("jobs");
    for _ in 0..100 {
        let started = std::fs::read_dir(&jobs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path().join("log")).is_ok_and(|l| l.contains("started")));
        if started {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let ev = events(&out);
    let done = finished(&ev);
    assert_eq!((done["result"].as_str(), done["result_reason"].as_str()), (Some("stopped"), Some("user")), "{ev:?}");
    assert_eq!(out.status.code(), Some(1));
    let log = job_log(data.path(), &ev);
    assert!(!log.contains("never") && log.contains("job stopped"), "{log}");
}

#[test]
fn jobs_get_semaphore_variables_in_export_order() {
    let yaml = format!(
        "{HEADER}  - name: Blk\n    task:\n      env_vars:\n        - name: TASK_VAR\n          value: t\n      jobs:\n        - name: J\n          parallelism: 2\n          env_vars:\n            - name: CI\n              value: overridden-by-job\n          commands:\n            - env | grep -E '^(CI|SEMAPHORE[A-Z_0-9]*|TASK_VAR)=' | sort\n\n"
    );
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml)]);
    let data = tempfile::tempdir().unwrap();
    let out = salve_run(repo.path(), data.path(), &["--json", "--branch", "feature/x"], &[]);
    let ev = events(&out);
    let log = job_log(data.path(), &ev);
    assert_eq!(finished(&ev)["result"], "passed", "{log}");
    let sha = String::from_utf8(
        Command::new("git").args(["rev-parse", "HEAD"]).current_dir(repo.path()).output().unwrap().stdout,
    )
    .unwrap();
    for want in [
        "CI=overridden-by-job".to_owned(),
        "SEMAPHORE=true".to_owned(),
        "SEMAPHORE_GIT_BRANCH=feature/x".to_owned(),
        "SEMAPHORE_GIT_REF=refs/heads/feature/x".to_owned(),
        "SEMAPHORE_GIT_REF_TYPE=branch".to_owned(),
        format!("SEMAPHORE_GIT_SHA={}", sha.trim()),
        "SEMAPHORE_BLOCK_NAME=Blk".to_owned(),
        "SEMAPHORE_JOB_COUNT=2".to_owned(),
        "SEMAPHORE_PIPELINE_PROMOTION=false".to_owned(),
        "SEMAPHORE_JOB_TYPE=pipeline_job".to_owned(),
        "TASK_VAR=t".to_owned(),
    ] {
        assert!(log.contains(&format!("{want}\n")), "missing {want}: {log}");
    }
    for var in ["SEMAPHORE_JOB_ID", "SEMAPHORE_PIPELINE_ID", "SEMAPHORE_WORKFLOW_ID", "SEMAPHORE_PROJECT_ID"] {
        let line = log.lines().find(|l| l.starts_with(&format!("{var}="))).unwrap_or_else(|| panic!("no {var}: {log}"));
        assert!(uuid_like(&line[var.len() + 1..]), "{line}");
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

#[test]
fn triage_of_a_job_folder_names_the_failing_command_and_keeps_the_report() {
    let yaml = pipeline(&["echo 'warning: error-prone but fine'", "echo 'error: disk full' >&2; exit 3", "echo never"]);
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml)]);
    let data = tempfile::tempdir().unwrap();
    let out = salve_run(repo.path(), data.path(), &["--json"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let ev = events(&out);
    let id = ev.iter().find(|e| e["event"] == "job_finished").unwrap()["job_id"].as_str().unwrap().to_owned();
    let dir = data.path().join("jobs").join(&id);
    let log = dir.join("log");
    let triage = salve_in(data.path(), &["triage", "--log", log.to_str().unwrap(), "--format", "json"]);
    let v: Value = serde_json::from_slice(&triage.stdout).unwrap();
    assert_eq!(v["failing_command"], "echo 'error: disk full' >&2; exit 3", "{v:#}");
    assert!(v["excerpt"].as_array().unwrap().iter().any(|l| l["text"] == "error: disk full"), "{v:#}");
    // The run kept the same report beside the log.
    let kept: Value = serde_json::from_slice(&std::fs::read(dir.join("failure.json")).unwrap()).unwrap();
    assert_eq!(kept["fingerprint"], v["fingerprint"]);
}

#[test]
fn sem_version_switches_toolchains_for_the_rest_of_the_job() {
    // An operator's toolchains folder with two fake Go versions.
    let tools = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for v in ["9.9.1", "9.9.3", "9.10.0"] {
        let bin = tools.path().join("go").join(v).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("go"), format!("#!/bin/sh\necho \"go version go{v} fake GOROOT=$GOROOT\"\n")).unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(bin.join("go")).unwrap().permissions(),
            0o755,
        );
        std::fs::set_permissions(bin.join("go"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let yaml = pipeline(&[
        "sem-version go 9.9",
        "go version",
        "printf 'sem-version go 9.10.0 && go version\\n' > switch.sh && bash switch.sh",
        "go version",
        "sem-version python 3 && python --version",
        "sem-version go 1.0.7 || echo refused-missing",
        "sem-version cobol 85 || echo refused-language",
        "sem-version --help | head -1",
    ]);
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml)]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out =
        salve_run(repo.path(), data.path(), &["--json"], &[("SALVE_TOOLCHAINS", &tools.path().to_string_lossy())]);
    let ev = events(&out);
    let log = job_log(data.path(), &ev);
    assert_eq!(finished(&ev)["result"], "passed", "{log}\n{}", String::from_utf8_lossy(&out.stderr));
    let root = tools.path().join("go").display().to_string();
    // The newest 9.9.x, its GOROOT set; kept by the next command; a bash script's switch is its own.
    assert!(log.contains(&format!("go version go9.9.3 fake GOROOT={root}/9.9.3\n")), "{log}");
    assert!(log.contains(&format!("go version go9.10.0 fake GOROOT={root}/9.10.0\n")), "{log}");
    assert_eq!(log.matches("go version go9.9.3").count(), 2, "the switch persists: {log}");
    assert!(log.contains("\nPython 3."), "{log}");
    assert!(
        log.contains("go 1.0.7 is not installed on this machine. Installed: 9.10.0")
            && log.contains("9.9.3 (toolchains folder")
            && log.contains("refused-missing"),
        "{log}"
    );
    assert!(log.contains("'cobol' is not a language sem-version knows") && log.contains("refused-language"), "{log}");
    assert!(log.contains("Usage: sem-version LANGUAGE VERSION"), "{log}");
}

#[test]
fn test_results_compile_combine_and_the_pipeline_report() {
    let junit = |name: &str, bad: bool| {
        let failure = if bad { "<failure message=\\\"boom\\\">trace</failure>" } else { "" };
        format!(
            "printf '<testsuite name=\\\"{name}\\\"><testcase classname=\\\"c\\\" name=\\\"ok\\\" time=\\\"0.5\\\"/><testcase classname=\\\"c\\\" name=\\\"t\\\">{failure}</testcase></testsuite>' > {name}.xml"
        )
    };
    let job = |name: &str, bad: bool| {
        format!(
            "        - name: {name}\n          commands:\n            - \"{}\"\n            - test-results publish {name}.xml --name Tests\n",
            junit(name, bad)
        )
    };
    let yaml = format!(
        "{HEADER}  - name: Test\n    task:\n      jobs:\n{}{}  - name: Report\n    task:\n      jobs:\n        - name: report\n          commands:\n{}",
        job("one", false),
        job("two", true),
        [
            "test-results gen-pipeline-report",
            "cat $SALVE_ARTIFACT_DIR/workflows/$SEMAPHORE_WORKFLOW_ID/test-results/$SEMAPHORE_PIPELINE_ID-summary.json; echo",
            &junit("local", true),
            "test-results compile local.xml local.json",
            "test-results combine local.json local.json both.json",
            "grep -o '\"total\":[0-9]*' both.json | head -1",
            "for c in checkout cache artifact retry checksum sem-context sem-version test-results; do $c --help | head -1; done",
            "test-results explode || echo refused-verb",
        ]
        .iter()
        .map(|c| format!("            - {}\n", serde_json::to_string(c).unwrap()))
        .collect::<String>(),
    );
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml)]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = salve_run(repo.path(), data.path(), &["--json"], &[]);
    let ev = events(&out);
    let report_job = ev.iter().rfind(|e| e["event"] == "job_finished").unwrap()["job_id"].as_str().unwrap().to_owned();
    let log = String::from_utf8_lossy(&std::fs::read(data.path().join("jobs").join(&report_job).join("log")).unwrap())
        .into_owned();
    // Both jobs published a report named Tests (job two's with a failed test, which does not
    // fail the job): the pipeline report merges them into one of four tests.
    assert!(log.contains("Pipeline report from 2 job report(s): 4 tests, 3 passed, 1 failed"), "{log}");
    assert!(log.contains("\"total\":4,\"passed\":3"), "{log}");
    assert!(log.contains("\"total\":4\n"), "combine adds two reports of two tests: {log}");
    for usage in ["Usage: checkout", "Usage: cache", "Usage: artifact", "Usage: retry", "Usage: checksum"] {
        assert!(log.contains(usage), "{usage}: {log}");
    }
    for usage in ["Usage: sem-context", "Usage: sem-version", "Usage: test-results publish"] {
        assert!(log.contains(usage), "{usage}: {log}");
    }
    assert!(log.contains("'explode' is not a test-results command") && log.contains("refused-verb"), "{log}");
}

#[test]
fn install_package_unpacks_debian_packages_for_the_rest_of_the_job() {
    let again = "  - name: Again\n    task:\n      jobs:\n        - name: K\n          commands:\n            - install-package figlet hello\n            - hello\n";
    let yaml = pipeline(&[
        "install-package --skip-update hello figlet",
        "hello",
        "bash -c 'command -v hello'",
        "command -v figlet",
        "install-package no-such-package-for-salve || echo refused-unknown",
        "install-package --help | head -1",
    ]) + again;
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml)]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = salve_run(repo.path(), data.path(), &["--json"], &[]);
    let ev = events(&out);
    let log = job_log(data.path(), &ev);
    assert_eq!(finished(&ev)["result"], "passed", "{log}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(log.contains("Hello, world!\n"), "{log}");
    // The next job gets the same packages (in any order) from the project's cache.
    let later = ev.iter().rfind(|e| e["event"] == "job_finished").unwrap()["job_id"].as_str().unwrap().to_owned();
    let later =
        String::from_utf8_lossy(&std::fs::read(data.path().join("jobs").join(later).join("log")).unwrap()).into_owned();
    let downloaded = !(machine_has_all(&["hello", "figlet"]));
    assert!(later.contains("Hello, world!\n"), "{later}");
    if downloaded {
        assert!(later.contains("HIT: 'install-package-"), "{later}");
    }
    // Unpacked in the job's home unless the machine has it; Debian's alternative made for figlet.
    let machine_has = |tool: &str| std::path::Path::new("/usr/bin").join(tool).exists();
    if !machine_has("hello") {
        assert!(log.contains("/.salve/packages/usr/bin/hello\n"), "{log}");
    }
    if !machine_has("figlet") {
        assert!(log.contains("/.salve/packages/usr/bin/figlet\n"), "{log}");
    }
    assert!(
        log.contains("Unable to locate package no-such-package-for-salve") && log.contains("refused-unknown"),
        "{log}"
    );
    assert!(log.contains("Usage: install-package"), "{log}");
}

/// Whether every tool is in the machine's /usr/bin (then apt downloads nothing).
fn machine_has_all(tools: &[&str]) -> bool {
    tools.iter().all(|t| std::path::Path::new("/usr/bin").join(t).exists())
}

/// Two jobs at once each start PostgreSQL and Redis on the default ports of their own loopback
/// (Semaphore's `sem-service`), each with its own user, database and data; services are
/// stopped, refused when unknown, and a version the machine lacks says which ones it has.
#[test]
fn sem_service_gives_parallel_jobs_their_own_postgres_and_redis() {
    let job = |name: &str| {
        let commands = [
            "echo \"job=$SEMAPHORE_JOB_NAME\"".to_owned(),
            format!("sem-service start postgres --username=app --password=s3cret --db=app_{name}"),
            "sem-service start redis".to_owned(),
            "sem-service status postgres".to_owned(),
            format!(
                "PGPASSWORD=s3cret psql -h 127.0.0.1 -U app -d app_{name} -Atc \"create table t (x text); insert into t values ('{name}'); select 'rows: ' || string_agg(x, ',') from t\""
            ),
            format!(
                "redis-cli -h 127.0.0.1 set who {name} && sleep 2 && echo \"redis: $(redis-cli -h 127.0.0.1 get who)\""
            ),
            "sem-service stop redis && (sem-service status redis || echo redis-stopped)".to_owned(),
            "sem-service start redis 1.0 || echo refused-version".to_owned(),
            "sem-service start oracle || echo refused-service".to_owned(),
            "sem-service --help | head -1".to_owned(),
        ];
        let list: String =
            commands.iter().map(|c| format!("            - {}\n", serde_json::to_string(c).unwrap())).collect();
        format!("        - name: {name}\n          commands:\n{list}")
    };
    let yaml = format!("{HEADER}  - name: Services\n    task:\n      jobs:\n{}{}", job("one"), job("two"));
    let repo = repo_from(None, &[(".semaphore/semaphore.yml", &yaml)]);
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = salve_run(repo.path(), data.path(), &["--json", "--jobs", "2"], &[]);
    let ev = events(&out);
    let logs: Vec<(String, String)> = ev
        .iter()
        .filter(|e| e["event"] == "job_finished")
        .map(|e| {
            let id = e["job_id"].as_str().unwrap();
            let log = std::fs::read(data.path().join("jobs").join(id).join("log")).unwrap();
            (e["name"].as_str().unwrap_or_default().to_owned(), String::from_utf8_lossy(&log).into_owned())
        })
        .collect();
    assert_eq!(finished(&ev)["result"], "passed", "{logs:#?}\n{}", String::from_utf8_lossy(&out.stderr));
    // Both ran at once: each had started before either ended.
    let first_end = ev.iter().position(|e| e["event"] == "job_finished").unwrap();
    assert_eq!(ev[..first_end].iter().filter(|e| e["event"] == "job_started").count(), 2, "{ev:#?}");
    let mut names: Vec<bool> = logs.iter().map(|(_, l)| l.contains("job=one\n")).collect();
    names.sort();
    assert_eq!(names, [false, true], "one job each: {logs:#?}");
    for (_, log) in &logs {
        let name = if log.contains("job=one\n") { "one" } else { "two" };
        assert!(log.contains("Starting postgres...done.\npostgres "), "{log}");
        assert!(log.contains("is running at 127.0.0.1:5432"), "{log}");
        assert!(log.contains(&format!("rows: {name}\n")), "only its own rows: {log}");
        assert!(log.contains(&format!("redis: {name}\n")), "its own redis: {log}");
        assert!(log.contains("postgres running.") && log.contains("redis-stopped"), "{log}");
        assert!(
            log.contains("redis 1.0 is not installed on this machine. Installed: ") && log.contains("refused-version"),
            "{log}"
        );
        assert!(
            log.contains("'oracle' is not a service sem-service knows") && log.contains("refused-service"),
            "{log}"
        );
        assert!(log.contains("Usage: sem-service start SERVICE"), "{log}");
    }
}

/// `sem-service start mysql` runs the machine's MariaDB: root with no password from 127.0.0.1,
/// and the user and database asked for.
#[test]
fn sem_service_runs_mysql_with_the_user_and_database_asked_for() {
    let yaml = pipeline(&[
        "sem-service start mysql --username=app --password=s3cret --db=app_test",
        "mysql -h 127.0.0.1 -u root -N -e 'select 40 + 2'",
        "mysql -h 127.0.0.1 -u app -ps3cret app_test -N -e 'create table t (x int); insert into t values (7); select concat(\"rows: \", count(*)) from t'",
        "sem-service stop mysql && (sem-service status mysql || echo mysql-stopped)",
    ]);
    let (ev, log, err) = run_yaml(&yaml);
    assert_eq!(finished(&ev)["result"], "passed", "{log}\n{err}");
    assert!(log.contains("Starting mysql...done.\nmysql ") && log.contains("is running at 127.0.0.1:3306"), "{log}");
    assert!(log.contains("\n42\n") && log.contains("rows: 1\n") && log.contains("mysql-stopped"), "{log}");
}

/// Artifacts pushed with `--expire-in` are gone once it passes (a pull finds nothing); a cache
/// that runs out of its space (`SALVE_CACHE_SIZE_MB`) evicts the oldest keys first, refuses an
/// archive larger than all of it, and reports free and used space.
#[test]
fn artifacts_expire_and_the_cache_keeps_to_its_space() {
    let yaml = pipeline(&[
        "echo short > short.txt && echo long > long.txt",
        "artifact push workflow short.txt --expire-in 1s",
        "artifact push workflow long.txt --expire-in 2w",
        "artifact push workflow long.txt --expire-in 7x || echo refused-age",
        "sleep 2",
        "rm short.txt long.txt",
        "artifact pull workflow short.txt || echo short-expired",
        "artifact pull workflow long.txt && cat long.txt",
        "head -c 600000 /dev/urandom > one.bin && head -c 600000 /dev/urandom > two.bin && head -c 2000000 /dev/urandom > big.bin",
        "cache store one one.bin",
        "cache store two two.bin",
        "cache has_key one || echo one-evicted",
        "cache has_key two",
        "cache store big big.bin",
        "cache has_key big || echo big-refused",
        "cache usage",
    ]);
    let yaml = yaml.replace(
        "        - name: J\n",
        "        - name: J\n          env_vars:\n            - name: SALVE_CACHE_SIZE_MB\n              value: \"1\"\n",
    );
    let (ev, log, err) = run_yaml(&yaml);
    assert_eq!(finished(&ev)["result"], "passed", "{log}\n{err}");
    assert!(log.contains("(it expires in 1s)") && log.contains("refused-age"), "{log}");
    assert!(log.contains("'short.txt' expired and was deleted") && log.contains("short-expired"), "{log}");
    assert!(log.contains("Pulled 'long.txt'") && log.contains("\nlong\n"), "{log}");
    assert!(log.contains("Deleted 'one' (") && log.contains("one-evicted"), "{log}");
    assert!(log.contains("Key 'two' exists"), "{log}");
    assert!(log.contains("is larger than the cache's space") && log.contains("big-refused"), "{log}");
    assert!(log.contains("FREE SPACE: ") && log.contains("USED SPACE: "), "{log}");
}

/// `sem-version` with the toolchains this machine has: Python (pyenv) switched for the rest of
/// the job, Node and Rust at their installed versions, and versions it lacks refused.
#[test]
fn sem_version_switches_the_python_node_and_rust_installed_here() {
    let version = |cmd: &str, arg: &str| {
        let out = Command::new(cmd).arg(arg).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: String = text
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .find(|w| w.contains('.'))
            .unwrap_or_default()
            .to_owned();
        v.split('.').take(2).collect::<Vec<_>>().join(".")
    };
    let (node, rust, python) =
        (version("node", "--version"), version("rustc", "--version"), version("python3", "--version"));
    // A pyenv version other than the default python3, when there is one.
    let pyenv = std::env::var_os("PYENV_ROOT").map(|r| Path::new(&r).join("versions"));
    let other: Option<String> = pyenv
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().split('.').take(2).collect::<Vec<_>>().join("."))
        .filter(|v| v.starts_with("3.") && *v != python)
        .max();
    let node_major = node.split('.').next().unwrap_or_default().to_owned();
    let mut commands = vec![
        format!("sem-version node {node_major} && node --version"),
        format!("sem-version rust {rust} && rustc --version"),
        "sem-version rust 1.2 || echo refused-rust".to_owned(),
    ];
    if let Some(py) = &other {
        commands.push(format!("sem-version python {py}"));
        commands.push("python --version && python3 --version".to_owned());
    }
    let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
    let (ev, log, err) = run_yaml(&pipeline(&refs));
    assert_eq!(finished(&ev)["result"], "passed", "{log}\n{err}");
    assert!(log.contains(&format!("\nv{node}")), "{log}");
    assert!(log.contains(&format!("\nrustc {rust}")), "{log}");
    assert!(
        log.contains("rust 1.2 is not installed on this machine. Installed: ") && log.contains("refused-rust"),
        "{log}"
    );
    if let Some(py) = other {
        assert_eq!(log.matches(&format!("Python {py}.")).count(), 2, "the switch persists: {log}");
    }
}

/// `sem-service start rabbitmq` runs the machine's RabbitMQ in the job: an AMQP client is
/// answered on 127.0.0.1:5672 with the user asked for.
#[test]
fn sem_service_runs_rabbitmq() {
    let amqp = "python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', 5672)); s.sendall(b'AMQP\\x00\\x00\\x09\\x01'); print('amqp frame', s.recv(1)[0])\"";
    let (ev, log, err) = run_yaml(&pipeline(&[
        "sem-service start rabbitmq --username=app --password=s3cret",
        amqp,
        "sem-service status rabbitmq",
        "sem-service stop rabbitmq && (sem-service status rabbitmq || echo rabbitmq-stopped)",
    ]));
    assert_eq!(finished(&ev)["result"], "passed", "{log}\n{err}");
    assert!(log.contains("Starting rabbitmq...done.\nrabbitmq ") && log.contains("127.0.0.1:5672"), "{log}");
    assert!(
        log.contains("amqp frame 1\n") && log.contains("rabbitmq running.") && log.contains("rabbitmq-stopped"),
        "{log}"
    );
}
