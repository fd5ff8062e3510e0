//! The CLI contracts: exit codes, output formats, the `when` CLI files.

use super::{salve, stderr, stdout};

const VALID: &str = "version: v1.0\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: Test\n    task:\n      jobs:\n        - name: unit\n          parallelism: 2\n          commands:\n            - make test\n";

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn lint_exit_codes_and_json() {
    let dir = project(&[
        (".semaphore/semaphore.yml", VALID),
        (
            "bad.yml",
            "version: v1.0\nagent: {machine: {type: x}}\nblocks:\n  - task:\n      jobs:\n        - comands: [x]\n",
        ),
    ]);
    assert_eq!(salve(&["lint"], dir.path()).status.code(), Some(0));
    let out = salve(&["lint", "--format", "json", "bad.yml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let diags: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let unknown = diags.iter().find(|d| d["path"] == "#/blocks/0/task/jobs/0/comands").expect("unknown key reported");
    assert_eq!(unknown["line"], 6);
    assert_eq!(unknown["column"], 11);
    assert_eq!(unknown["severity"], "error");
    assert!(unknown["message"].as_str().unwrap().contains("Did you mean `commands`?"));
    for key in ["file", "line", "column", "path", "severity", "message"] {
        assert!(diags.iter().all(|d| d.get(key).is_some()), "every diagnostic has {key}");
    }
    // Human output points at the line with a caret.
    let out = salve(&["lint", "bad.yml"], dir.path());
    assert!(stderr(&out).contains("bad.yml:6:11") && stderr(&out).contains('^'), "{}", stderr(&out));
    // A missing file is an IO error: exit 2.
    assert_eq!(salve(&["lint", "nope.yml"], dir.path()).status.code(), Some(2));
}

#[test]
fn compile_prints_the_plan() {
    let dir = project(&[
        (
            ".semaphore/semaphore.yml",
            "version: v1.0\nagent: {machine: {type: e1}}\nglobal_job_config:\n  env_vars: [{name: G, value: g}]\n  prologue: {commands: [global-prologue]}\n  epilogue: {always: {commands: [global-epi]}}\nblocks:\n  - name: B\n    task:\n      env_vars: [{name: T, value: t}]\n      prologue: {commands_file: prologue.sh}\n      epilogue: {always: {commands: [task-epi]}}\n      jobs:\n        - name: J\n          env_vars: [{name: J, value: j}]\n          matrix:\n            - env_var: A\n              values: [\"1\", \"2\"]\n            - env_var: B\n              values: [x, y]\n          commands: [run]\n",
        ),
        (".semaphore/prologue.sh", "echo one\r\n  \necho two\t\n"),
    ]);
    let out = salve(&["compile", ".semaphore/semaphore.yml", "--param", "P=p"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let jobs = plan["blocks"][0]["jobs"].as_array().unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["J - A=1, B=x", "J - A=1, B=y", "J - A=2, B=x", "J - A=2, B=y"]);
    assert_eq!(jobs[1]["commands"], serde_json::json!(["global-prologue", "echo one", "echo two", "run"]));
    assert_eq!(jobs[1]["prologue_len"], 3);
    assert_eq!(jobs[1]["epilogue"]["always"], serde_json::json!(["task-epi", "global-epi"]));
    let env: Vec<String> = jobs[1]["env_vars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}={}", e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env, ["P=p", "G=g", "T=t", "J=j", "A=1", "B=y"]);
    assert_eq!(plan["execution_time_limit_minutes"], 60);
    // A malformed pipeline compiles to nothing.
    let bad = project(&[(
        "p.yml",
        "version: v1.0\nagent: {machine: {type: e1}}\nblocks:\n  - task: {jobs: [{commands: [x]}]}\n    dependencies: [missing]\n",
    )]);
    let out = salve(&["compile", "p.yml"], bad.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("unknown_block_name"), "{}", stderr(&out));
}

#[test]
fn templates_fill_parameters_at_compile_time() {
    let dir = project(&[(
        "p.yml",
        "version: v1.0\nname: \"Deploy ${{ parameters.ENV }}\"\nagent: {machine: {type: e1}}\nblocks:\n  - task:\n      jobs:\n        - name: j\n          parallelism: \"%{{ parameters.N | int64 }}\"\n          commands: [\"echo ${{ parameters.ENV }}\"]\n        - name: m\n          matrix:\n            - env_var: X\n              values: \"%{{ parameters.XS | splitList \\\",\\\" }}\"\n          commands: [x]\n",
    )]);
    let out = salve(&["compile", "p.yml", "--param", "ENV=prod", "--param", "N=3", "--param", "XS=a,b"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["name"], "Deploy prod");
    let names: Vec<&str> =
        plan["blocks"][0]["jobs"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["j - 1/3", "j - 2/3", "j - 3/3", "m - X=a", "m - X=b"]);
    // Commands are shell text: templates there are left alone.
    assert_eq!(plan["blocks"][0]["jobs"][0]["commands"][0], "echo ${{ parameters.ENV }}");
    // Lint leaves templates alone and accepts the file.
    assert_eq!(salve(&["lint", "p.yml"], dir.path()).status.code(), Some(0));
}

#[test]
fn when_eval_contract() {
    let dir = tempfile::tempdir().unwrap();
    let eval = |args: &[&str]| {
        let mut a = vec!["when", "eval"];
        a.extend_from_slice(args);
        let out = salve(&a, dir.path());
        (stdout(&out).trim().to_owned(), out.status.code())
    };
    assert_eq!(
        eval(&["result = 'failed' AND branch !~ '^selfheal-.*'", "--params", r#"{"branch":"main","result":"failed"}"#]),
        ("true".into(), Some(0))
    );
    assert_eq!(
        eval(&[
            "result = 'failed' AND branch !~ '^selfheal-.*'",
            "--params",
            r#"{"branch":"selfheal-1a2b","result":"failed"}"#
        ]),
        ("false".into(), Some(0))
    );
    assert_eq!(
        eval(&["branch = 'x'"]),
        (r#"{"error":"Missing value of keyword parameter 'branch'."}"#.into(), Some(1))
    );
    assert_eq!(
        eval(&["change_in('/lib')", "--dry-run"]),
        (r#"{"error":"Function with name 'change_in' is not found."}"#.into(), Some(1))
    );
    assert_eq!(eval(&["true", "--params", "[1]"]).1, Some(1));
}

#[test]
fn when_list_inputs_and_reduce_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("in.json"), r#"["branch = 'master' and change_in('/lib')", "branch = true"]"#).unwrap();
    let out = salve(&["when", "list-inputs", "--input", "in.json", "--output", "out.json"], p);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p.join("out.json")).unwrap()).unwrap();
    assert_eq!(
        got,
        serde_json::json!([
            {"inputs": [{"type": "keyword", "name": "branch"}, {"type": "fun", "name": "change_in", "params": ["/lib"]}], "error": ""},
            {"inputs": [], "error": "Invalid expression on the left of 'true'."}
        ])
    );
    std::fs::write(
        p.join("r.json"),
        r#"[{"expression": "branch = 'master' and change_in('/lib')", "inputs": {"keywords": {}, "functions": [{"name": "change_in", "params": ["/lib"], "result": true}]}}]"#,
    )
    .unwrap();
    let out = salve(&["when", "reduce", "--input", "r.json", "--output", "r.out"], p);
    assert_eq!(out.status.code(), Some(0));
    let got: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p.join("r.out")).unwrap()).unwrap();
    assert_eq!(got, serde_json::json!([{"result": "(branch = 'master') and true", "error": ""}]));
    std::fs::write(p.join("bad.json"), "{not json").unwrap();
    let out = salve(&["when", "reduce", "--input", "bad.json", "--output", "x"], p);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not valid JSON"));
}

#[test]
fn init_self_heal_adds_the_promotions_keeps_the_file_and_runs_twice() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join(".semaphore")).unwrap();
    let yml = "version: v1.0\nname: CI   # ours\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: Test\n    task:\n      jobs:\n        - name: test\n          commands:\n            - make test\npromotions:\n    # deploys\n    - name: Deploy\n      pipeline_file: deploy.yml\n\nafter_pipeline:\n  task:\n    jobs:\n      - name: notify\n        commands:\n          - echo done\n";
    std::fs::write(p.join(".semaphore/semaphore.yml"), yml).unwrap();
    let out = salve(&["init", "--self-heal", "--base", "trunk"], p);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(p.join(".semaphore/semaphore.yml")).unwrap();
    assert!(text.starts_with(&yml[..yml.find("\nafter_pipeline").unwrap()]), "{text}");
    assert!(text.contains("    - name: Self-heal\n      pipeline_file: selfheal.yml\n      auto_promote:\n        when: \"(result = 'failed' OR (result = 'stopped' AND result_reason = 'timeout')) AND branch !~ '^selfheal-.*'\"\n"), "{text}");
    assert!(text.contains("        when: \"result = 'passed' AND branch =~ '^selfheal-.*'\"\n"), "{text}");
    assert!(std::fs::read_to_string(p.join(".semaphore/selfheal-pr.yml")).unwrap().contains("--base trunk"));
    assert!(std::fs::read_to_string(p.join("salve.toml")).unwrap().contains("[heal]"));
    let lint = salve(&["lint", ".semaphore/semaphore.yml", ".semaphore/selfheal.yml", ".semaphore/selfheal-pr.yml"], p);
    assert_eq!(lint.status.code(), Some(0), "{}{}", stdout(&lint), stderr(&lint));
    let again = salve(&["init", "--self-heal"], p);
    assert_eq!(again.status.code(), Some(0));
    assert!(stdout(&again).contains("kept    .semaphore/semaphore.yml"), "{}", stdout(&again));
    assert_eq!(std::fs::read_to_string(p.join(".semaphore/semaphore.yml")).unwrap(), text);
    // No pipeline yet, or a broken one: a clear message and nothing written.
    let empty = tempfile::tempdir().unwrap();
    let out = salve(&["init", "--self-heal"], empty.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("write the project's CI pipeline first"), "{}", stderr(&out));
    std::fs::create_dir_all(empty.path().join(".semaphore")).unwrap();
    std::fs::write(empty.path().join(".semaphore/semaphore.yml"), "version: v1.0\nblocks: [").unwrap();
    let out = salve(&["init", "--self-heal"], empty.path());
    assert!(stderr(&out).contains("has errors"), "{}", stderr(&out));
    assert!(!empty.path().join(".semaphore/selfheal.yml").exists());
}

#[test]
fn lint_warns_of_helpers_and_containers_this_installation_lacks() {
    let yaml = "version: v1.0\nname: Rails\nagent:\n  machine:\n    type: e1-standard-2\n  containers:\n    - name: main\n      image: 'registry.semaphoreci.com/ruby:3.2'\nblocks:\n  - name: Test\n    task:\n      jobs:\n        - name: rspec\n          commands:\n            - sem-version ruby 3.2\n            - sem-service start postgres 14 && install-package libpq-dev\n            - sem-service start oracle\n            - echo sem-service is a word here\n";
    let dir = project(&[(".semaphore/semaphore.yml", yaml)]);
    let out = salve(&["lint", "--format", "json"], dir.path());
    assert_eq!(out.status.code(), Some(0), "warnings only: {}", stderr(&out));
    let diags: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let messages: Vec<&str> = diags.iter().map(|d| d["message"].as_str().unwrap()).collect();
    assert!(diags.iter().all(|d| d["severity"] == "warning"), "{diags:#?}");
    // postgres runs here (scripts/test.sh installs it and slirp4netns); oracle is no service.
    assert!(!messages.iter().any(|m| m.contains("start postgres")), "{messages:?}");
    assert!(
        messages.iter().any(|m| m.starts_with("`sem-service start oracle`: 'oracle' is not a service")),
        "{messages:?}"
    );
    assert!(!messages.iter().any(|m| m.contains("install-package")), "install-package is provided: {messages:?}");
    // Podman is installed by scripts/test.sh: the image is not on this machine.
    assert!(
        messages.iter().any(|m| m.starts_with("image 'registry.semaphoreci.com/ruby:3.2' is not on this machine")),
        "{messages:?}"
    );
    assert!(!messages.iter().any(|m| m.contains("sem-version")), "sem-version is provided: {messages:?}");
    let service = diags.iter().find(|d| d["message"].as_str().unwrap().starts_with("`sem-service")).unwrap();
    assert_eq!((service["line"].as_u64(), service["column"].as_u64()), (Some(17), Some(15)), "{service}");
}
