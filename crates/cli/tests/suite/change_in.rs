//! `change_in` against real git repositories.

use std::path::Path;
use std::process::Command;

use super::{salve, stdout};

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@e", "-c", "init.defaultBranch=master"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(ok.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&ok.stderr));
}

fn commit(dir: &Path, file: &str) {
    let p = dir.join(file);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, file).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", file]);
}

fn eval(dir: &Path, expr: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_salve"))
        .args(["when", "eval", expr, "--repo", ".", "--params", r#"{"branch":"feature"}"#])
        .current_dir(dir)
        .env_remove("SEMAPHORE_GIT_BRANCH")
        .env_remove("SEMAPHORE_GIT_SHA")
        .env_remove("SEMAPHORE_GIT_COMMIT_RANGE")
        .env_remove("SEMAPHORE_GIT_REF_TYPE")
        .output()
        .unwrap();
    stdout(&out).trim().to_owned()
}

#[test]
fn change_in_on_a_feature_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    git(d, &["init", "-q"]);
    commit(d, ".semaphore/semaphore.yml");
    commit(d, "lib/base.rs");
    git(d, &["checkout", "-qb", "feature"]);
    commit(d, "lib/changed.rs");
    commit(d, "docs/readme.md");

    assert_eq!(eval(d, "change_in('/lib/')"), "true");
    assert_eq!(eval(d, "change_in('/app/')"), "false");
    // Plain prefix test without `*`: `/li` matches `/lib/...`.
    assert_eq!(eval(d, "change_in('/li')"), "true");
    assert_eq!(eval(d, "change_in('/lib/**/*.rs')"), "true");
    assert_eq!(eval(d, "change_in('/lib/**/*.py')"), "false");
    // Relative patterns are relative to the pipeline file's directory.
    assert_eq!(eval(d, "change_in('../docs')"), "true");
    assert_eq!(eval(d, "change_in('docs')"), "false");
    assert_eq!(eval(d, "change_in(['/app', '/docs'], {exclude: ['/docs/readme.md']})"), "false");
    assert_eq!(eval(d, "branch = 'feature' and change_in('/lib/')"), "true");
    // A default branch that does not exist is reported the way spc reports it.
    assert!(eval(d, "change_in('/lib', {default_branch: 'main'})").contains("Unknown git reference 'main'."));
    assert!(eval(d, "change_in(1)").contains("uprocessable path parameter"));
    // On the default branch the range is default_branch...sha: nothing changed on master itself.
    git(d, &["checkout", "-q", "master"]);
    let out = salve(&["when", "eval", "change_in('/lib/')", "--repo", "."], d);
    assert_eq!(stdout(&out).trim(), "false");
}
