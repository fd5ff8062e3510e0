//! Every pipeline file of `shared/conformance/pipelines/`: schema fixtures (`.fail.yml` rejected,
//! the rest accepted) and the scenario expectations of Semaphore's own engine tests that are
//! about the definition (validity, error texts, job names, dependencies).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use salve_pipeline::{Analysis, FileSource, Mode, analyze};
use serde_json::Value as Json;

use super::common::conformance_dir;

struct Dir(PathBuf);

impl FileSource for Dir {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.0.join(path)).map_err(|e| e.to_string())
    }
}

fn run(root: &Path, file: &str, mode: Mode) -> Analysis {
    let bytes = std::fs::read(root.join(file)).unwrap_or_default();
    analyze(file, &bytes, &Dir(root.to_path_buf()), &BTreeMap::new(), mode)
}

fn errors(a: &Analysis) -> Vec<String> {
    a.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}:{}:{} {} {}", d.file, d.line, d.column, d.path, d.message))
        .collect()
}

#[test]
fn schema_fixtures_are_accepted_or_rejected() {
    let dir = conformance_dir().join("pipelines/schema");
    let mut failures = Vec::new();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yml") {
            continue;
        }
        n += 1;
        let a = run(&dir, &name, Mode::Lint);
        let errs = errors(&a);
        if name.ends_with(".fail.yml") && errs.is_empty() {
            failures.push(format!("{name}: accepted, but must be rejected"));
        }
        if !name.ends_with(".fail.yml") && !errs.is_empty() {
            failures.push(format!("{name}: rejected:\n    {}", errs.join("\n    ")));
        }
    }
    assert!(n > 20, "too few schema fixtures in {}", dir.display());
    assert!(failures.is_empty(), "{} of {n} schema fixtures wrong:\n{}", failures.len(), failures.join("\n"));
}

fn check_scenario(scen_dir: &Path, e: &Json) -> Result<(), String> {
    let scenario = e["scenario"].as_str().unwrap_or_default();
    let Some(file) = e["pipeline_file"].as_str() else { return Ok(()) };
    let root = scen_dir.join(scenario);
    let ex = &e["expected"];
    let a = run(&root, file, Mode::Compile);
    let errs = errors(&a);
    if ex["yaml_parses"].is_boolean() {
        let yaml_ok = !errs.iter().any(|m| m.contains("not valid YAML"));
        return if yaml_ok == (ex["yaml_parses"] == true) {
            Ok(())
        } else {
            Err(format!("YAML parse outcome differs: {errs:?}"))
        };
    }
    // Not about the definition: Semaphore Community Edition's promotion ban (Salve has
    // promotions), and the organisation's missing init-job machine settings.
    if e.get("request").is_some_and(|r| r.get("env").is_some())
        || ex["error_equals"].as_str().is_some_and(|t| t.contains("initialization job"))
    {
        return Ok(());
    }
    let malformed = ex["pipeline"]["result_reason"] == "malformed" || ex["valid"] == false;
    let must_be_valid = ex["valid"] == true
        || ex["yaml_parses"] == true
        || (ex["pipeline"]["result"].is_string()
            && !malformed
            && e.get("notes").is_none_or(|n| !n.as_str().unwrap_or("").contains("Fails during initialization")));
    // A few entries are about runtime termination, not the definition; only check those that say
    // something about the definition.
    if scenario == "3_should_fail" {
        if errs.is_empty() {
            return Err("expected the definition to be rejected".into());
        }
        return Ok(());
    }
    if malformed {
        if errs.is_empty() {
            return Err("expected errors, got none".into());
        }
        let mut wanted: Vec<String> = ex["error_contains"]
            .as_array()
            .map(|v| v.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if let Some(eq) = ex["error_equals"].as_str() {
            // `Error: "<text>"` is the stored description; the text itself must be reported.
            let inner = eq.trim_start_matches("Error: \"").trim_end_matches('"');
            if !inner.contains("initialization job") {
                wanted.push(inner.split('\n').next().unwrap_or(inner).to_owned());
            }
        }
        for w in wanted {
            if !errs.iter().any(|m| m.contains(&w)) {
                return Err(format!("no error contains {w:?}; errors:\n    {}", errs.join("\n    ")));
            }
        }
        return Ok(());
    }
    if must_be_valid && !errs.is_empty() {
        return Err(format!("rejected:\n    {}", errs.join("\n    ")));
    }
    let plan = a.plan.as_ref();
    if let Some(jobs) = ex["topology_jobs"].as_array() {
        let got: Vec<Vec<String>> = plan
            .map(|p| p.blocks.iter().map(|b| b.jobs.iter().map(|j| j.name.clone()).collect()).collect())
            .unwrap_or_default();
        let want: Vec<Vec<String>> = serde_json::from_value(Json::Array(jobs.clone())).unwrap_or_default();
        if got != want {
            return Err(format!("jobs {got:?}, expected {want:?}"));
        }
    }
    if let Some(want) = ex["after_pipeline_jobs"].as_array() {
        let got: Vec<String> = plan
            .and_then(|p| p.after_pipeline.as_ref())
            .map(|ap| ap.jobs.iter().map(|j| j.name.clone()).collect())
            .unwrap_or_default();
        let want: Vec<String> = want.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect();
        if got != want {
            return Err(format!("after_pipeline jobs {got:?}, expected {want:?}"));
        }
    }
    for key in ["topology_dependencies", "revised_dependencies"] {
        if let Some(want) = ex[key].as_object() {
            for (block, deps) in want {
                let got: Vec<String> = plan
                    .and_then(|p| p.blocks.iter().find(|b| &b.name == block))
                    .map(|b| b.dependencies.clone())
                    .unwrap_or_default();
                let mut want: Vec<String> = serde_json::from_value(deps.clone()).unwrap_or_default();
                let mut got = got;
                want.sort();
                got.sort();
                if got != want {
                    return Err(format!("block {block} depends on {got:?}, expected {want:?}"));
                }
            }
        }
    }
    if let Some(counts) = ex["block_job_counts"].as_array() {
        let got: Vec<usize> = plan.map(|p| p.blocks.iter().map(|b| b.jobs.len()).collect()).unwrap_or_default();
        let want: Vec<usize> = counts.iter().filter_map(|c| c.as_u64().and_then(|n| usize::try_from(n).ok())).collect();
        if got != want {
            return Err(format!("job counts {got:?}, expected {want:?}"));
        }
    }
    if let Some(ai) = ex["after_initializing"].as_object() {
        let p = plan.ok_or("no plan")?;
        if let Some(name) = ai.get("name").and_then(Json::as_str)
            && p.name != name
        {
            return Err(format!("pipeline name {:?}, expected {name:?}", p.name));
        }
        if let Some(limit) = ai.get("exec_time_limit_min").and_then(Json::as_u64)
            && p.execution_time_limit_minutes != limit
        {
            return Err(format!("pipeline limit {}, expected {limit}", p.execution_time_limit_minutes));
        }
        if let Some(with_after) = ai.get("with_after_task").and_then(Json::as_bool)
            && p.after_pipeline.is_some() != with_after
        {
            return Err("after_pipeline presence differs".into());
        }
    }
    Ok(())
}

#[test]
fn scenario_definitions_match_semaphore() {
    let dir = conformance_dir().join("pipelines/scenarios");
    let expected: Vec<Json> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("EXPECTED.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    for e in &expected {
        if let Err(msg) = check_scenario(&dir, e) {
            failures.push(format!("{} {}: {msg}", e["scenario"], e["pipeline_file"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenario expectations failed:\n{}",
        failures.len(),
        expected.len(),
        failures.join("\n")
    );
}

/// Every YAML file under `scenarios/` is analysed without a panic, and a rejected one always
/// says where and why.
#[test]
fn every_scenario_file_gets_an_answer() {
    let dir = conformance_dir().join("pipelines/scenarios");
    let mut stack = vec![dir.clone()];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                n += 1;
                let rel = path.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
                let a =
                    analyze(&rel, &std::fs::read(&path).unwrap(), &Dir(dir.clone()), &BTreeMap::new(), Mode::Compile);
                for d in &a.diagnostics {
                    assert!(d.line >= 1 && !d.message.is_empty(), "{rel}: diagnostic without position or text: {d:?}");
                }
                // A plan is stored with its pipeline and read back instead of compiled again.
                if let Some(plan) = &a.plan {
                    let json = serde_json::to_string(plan).unwrap();
                    let back: salve_pipeline::compile::Plan = serde_json::from_str(&json).unwrap();
                    assert_eq!(&back, plan, "{rel}: the plan reads back as it was stored");
                }
            }
        }
    }
    assert!(n > 30);
}
