//! `test-results publish FILE|DIR... [--name N] [--no-raw] [--force] [--ignore-missing]`
//! (SEMAPHORE.md §4.5): parses JUnit XML into Semaphore's JSON report and summary and stores
//! them as job artifacts (`test-results/junit.json`, `test-results/summary.json`, the raw XML),
//! plus the workflow artifact `test-results/<pipeline id>/<job id>.json` that pipeline reports
//! are built from. The JSON is written uncompressed (`--no-compress` is accepted).

use std::path::{Path, PathBuf};

use salve_logs::junit::{self, Summary};
use serde_json::{Value, json};

use crate::artifact::scope_dir;
use crate::env;
use crate::storage::{Area, Storage};

pub(crate) const USAGE: &str =
    "Usage: test-results publish FILE|DIR... [--name NAME] [--no-raw] [--no-compress] [--force] [--ignore-missing]
       test-results compile FILE|DIR... OUT.json      (JUnit XML to the JSON report, on this machine)
       test-results combine REPORT.json... OUT.json   (JSON reports into one)
       test-results gen-pipeline-report               (the pipeline's job reports into workflow artifacts
                                                       test-results/<pipeline id>.json and -summary.json)";

pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("test-results: {message}");
            1
        }
    }
}

fn id(parts: &[&str]) -> String {
    let digest = md5::compute(parts.join("\u{1f}").as_bytes());
    let b = digest.0;
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

fn run(args: &[String]) -> Result<(), String> {
    let Some((verb, rest)) = args.split_first() else { return Err(USAGE.into()) };
    match verb.as_str() {
        "publish" => publish(rest),
        "compile" => {
            let (out, inputs) = rest.split_last().filter(|(_, i)| !i.is_empty()).ok_or(USAGE)?;
            let files = expand(&inputs.iter().map(PathBuf::from).collect::<Vec<_>>(), false)?;
            let (report, _) = compile(&files, None)?;
            write_local(Path::new(out), &report)
        }
        "combine" => {
            let (out, inputs) = rest.split_last().filter(|(_, i)| !i.is_empty()).ok_or(USAGE)?;
            let mut reports = Vec::new();
            for input in inputs {
                let bytes = std::fs::read(input).map_err(|e| format!("cannot read {input}: {e}"))?;
                reports.push(serde_json::from_slice(&bytes).map_err(|e| format!("{input} is not a JSON report: {e}"))?);
            }
            write_local(Path::new(out), &combine(&reports))
        }
        "gen-pipeline-report" => gen_pipeline_report(),
        _ => Err(format!("'{verb}' is not a test-results command\n{USAGE}")),
    }
}

/// The job reports the pipeline's jobs published, merged into the pipeline's report.
fn gen_pipeline_report() -> Result<(), String> {
    let pipeline = env("SEMAPHORE_PIPELINE_ID").ok_or("SEMAPHORE_PIPELINE_ID is not set")?;
    let store = Storage::open(Area::Artifacts)?;
    let dir = scope_dir("workflow", &[None, None, None])?.join("test-results");
    let mut reports = Vec::new();
    let mut entries = store.list(&dir.join(&pipeline))?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries.iter().filter(|e| !e.dir && e.name.ends_with(".json")) {
        if let Some(bytes) = store.read(&dir.join(&pipeline).join(&e.name)) {
            reports
                .push(serde_json::from_slice(&bytes).map_err(|err| format!("{} is not a JSON report: {err}", e.name))?);
        }
    }
    let report = combine(&reports);
    let summary = summary_of(&report);
    write(&store, &dir.join(format!("{pipeline}.json")), &report)?;
    write(&store, &dir.join(format!("{pipeline}-summary.json")), &summary)?;
    println!(
        "Pipeline report from {} job report(s): {} tests, {} passed, {} failed, {} errors, {} skipped.",
        reports.len(),
        summary["total"],
        summary["passed"],
        summary["failed"],
        summary["error"],
        summary["skipped"]
    );
    Ok(())
}

/// JSON reports as one: results of the same report (by id) merge their suites and summaries.
fn combine(reports: &[Value]) -> Value {
    let mut merged: Vec<Value> = Vec::new();
    for r in reports.iter().filter_map(|r| r["testResults"].as_array()).flatten() {
        match merged.iter_mut().find(|m| m["id"] == r["id"]) {
            Some(m) => {
                let suites: Vec<Value> = m["suites"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(r["suites"].as_array().into_iter().flatten())
                    .cloned()
                    .collect();
                m["suites"] = Value::Array(suites);
                m["summary"] = add_summaries(&m["summary"], &r["summary"]);
                let ok = m["summary"]["failed"].as_u64() == Some(0) && m["summary"]["error"].as_u64() == Some(0);
                m["status"] = json!(if ok { "success" } else { "error" });
            }
            None => merged.push(r.clone()),
        }
    }
    json!({ "testResults": merged })
}

const SUMMARY_FIELDS: [&str; 7] = ["total", "passed", "skipped", "error", "failed", "disabled", "duration"];

fn add_summaries(a: &Value, b: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for f in SUMMARY_FIELDS {
        out.insert(f.into(), json!(a[f].as_u64().unwrap_or(0) + b[f].as_u64().unwrap_or(0)));
    }
    Value::Object(out)
}

fn summary_of(report: &Value) -> Value {
    report["testResults"]
        .as_array()
        .into_iter()
        .flatten()
        .fold(add_summaries(&json!({}), &json!({})), |acc, r| add_summaries(&acc, &r["summary"]))
}

fn write_local(path: &Path, value: &Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn publish(rest: &[String]) -> Result<(), String> {
    let (mut inputs, mut name, mut raw, mut ignore_missing) = (Vec::new(), None, true, false);
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--name" | "-N" => name = it.next().cloned(),
            "--no-raw" => raw = false,
            "--ignore-missing" => ignore_missing = true,
            "--no-compress"
            | "--force"
            | "-f"
            | "--verbose"
            | "-v"
            | "--no-trim-output"
            | "--omit-output-for-passed"
            | "-o" => {}
            "--parser" | "-p" | "--suite-prefix" | "-S" | "--trim-output-to" | "-s" | "--config" => {
                it.next();
            }
            _ if a.starts_with('-') => return Err(format!("unknown flag {a}\n{USAGE}")),
            _ => inputs.push(PathBuf::from(a)),
        }
    }
    let files = expand(&inputs, ignore_missing)?;
    if files.is_empty() {
        return if ignore_missing { Ok(()) } else { Err("no JUnit XML files given".into()) };
    }
    let (report, total) = compile(&files, name)?;
    let store = Storage::open(Area::Artifacts)?;
    let job_dir = scope_dir("job", &[None, None, None])?.join("test-results");
    write(&store, &job_dir.join("junit.json"), &report)?;
    write(&store, &job_dir.join("summary.json"), &json!(total))?;
    if raw {
        for (i, file) in files.iter().enumerate() {
            let target = if files.len() == 1 { "junit.xml".to_owned() } else { format!("junit-{i}.xml") };
            store.put(file, &job_dir.join(target)).map_err(|e| format!("cannot store the raw report: {e}"))?;
        }
    }
    if let (Some(pipeline), Some(job)) = (env("SEMAPHORE_PIPELINE_ID"), env("SEMAPHORE_JOB_ID")) {
        let wf = scope_dir("workflow", &[None, None, None])?.join("test-results").join(&pipeline);
        write(&store, &wf.join(format!("{job}.json")), &report)?;
    }
    println!(
        "Published {} report(s): {} tests, {} passed, {} failed, {} errors, {} skipped.",
        files.len(),
        total.total,
        total.passed,
        total.failed,
        total.error,
        total.skipped
    );
    Ok(())
}

/// JUnit XML files as Semaphore's JSON report and its summary.
fn compile(files: &[PathBuf], name: Option<String>) -> Result<(Value, Summary), String> {
    let env_block = json!({
        "projectId": env("SEMAPHORE_PROJECT_ID").unwrap_or_default(),
        "pipelineId": env("SEMAPHORE_PIPELINE_ID").unwrap_or_default(),
        "workflowId": env("SEMAPHORE_WORKFLOW_ID").unwrap_or_default(),
        "jobName": env("SEMAPHORE_JOB_NAME").unwrap_or_default(),
        "jobId": env("SEMAPHORE_JOB_ID").unwrap_or_default(),
        "agentType": env("SEMAPHORE_AGENT_MACHINE_TYPE").unwrap_or_default(),
        "agentOsImage": env("SEMAPHORE_AGENT_MACHINE_OS_IMAGE").unwrap_or_default(),
        "gitRefType": env("SEMAPHORE_GIT_REF_TYPE").unwrap_or_default(),
        "gitRefName": env("SEMAPHORE_GIT_BRANCH").unwrap_or_default(),
        "gitRefSha": env("SEMAPHORE_GIT_SHA").unwrap_or_default(),
    });
    let mut results = Vec::new();
    let mut total = Summary::default();
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let suites = junit::parse(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        let report_name = name
            .clone()
            .unwrap_or_else(|| file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()));
        let report_id = id(&[&report_name]);
        let mut summary = Summary::default();
        let suites_json: Vec<Value> = suites
            .iter()
            .map(|s| {
                summary.merge(&s.summary);
                let suite_id = id(&[&report_id, &s.name]);
                let tests: Vec<Value> = s
                    .tests
                    .iter()
                    .map(|t| {
                        let mut v = json!({
                            "id": id(&[&suite_id, &t.classname, &t.name]),
                            "file": t.file, "classname": t.classname, "package": s.package, "name": t.name,
                            "duration": t.duration, "state": t.state, "systemOut": t.system_out, "systemErr": t.system_err,
                            "semaphoreEnv": env_block,
                        });
                        if let Some(f) = &t.failure {
                            v["failure"] = json!(f);
                        }
                        if let Some(f) = &t.error {
                            v["error"] = json!(f);
                        }
                        v
                    })
                    .collect();
                json!({
                    "id": suite_id, "name": s.name, "isSkipped": false, "isDisabled": false,
                    "timestamp": s.timestamp, "hostname": s.hostname, "package": s.package, "properties": {},
                    "summary": s.summary, "systemOut": s.system_out, "systemErr": s.system_err, "tests": tests,
                })
            })
            .collect();
        let ok = summary.failed == 0 && summary.error == 0;
        total.merge(&summary);
        results.push(json!({
            "id": report_id, "name": report_name, "framework": "generic", "isDisabled": false,
            "summary": summary, "status": if ok { "success" } else { "error" }, "statusMessage": "",
            "suites": suites_json,
        }));
    }
    Ok((json!({ "testResults": results }), total))
}

fn expand(inputs: &[PathBuf], ignore_missing: bool) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> =
                walk(p).into_iter().filter(|f| f.extension().is_some_and(|e| e == "xml")).collect();
            found.sort();
            out.extend(found);
        } else if p.is_file() {
            out.push(p.clone());
        } else if !ignore_missing {
            return Err(format!("{} does not exist", p.display()));
        }
    }
    Ok(out)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn write(store: &Storage, path: &Path, value: &Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    store.write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
