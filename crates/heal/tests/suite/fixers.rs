//! Fixer recipes: the built-ins match the failures they are for and no others; user recipes
//! are checked when salve.toml is read; envsubst follows envsubst.

use salve_heal::HealConfig;
use salve_heal::fixers::{builtin, matching};
use salve_heal::template::envsubst;

fn names(command: &str, log: &str) -> Vec<String> {
    let all = builtin();
    matching(&all, command, log).iter().map(|r| r.name.clone()).collect()
}

#[test]
fn built_in_recipes_match_their_failures() {
    assert_eq!(names("cargo fmt --check", ""), ["cargo fmt"]);
    assert_eq!(names("cargo fmt --all -- --check", ""), ["cargo fmt"]);
    assert_eq!(names("cargo clippy --all-targets -- -D warnings", ""), ["cargo clippy --fix"]);
    assert_eq!(names("gofmt -l .", ""), ["gofmt -w"]);
    assert_eq!(names("black --check .", ""), ["black"]);
    assert_eq!(names("npx prettier --check .", ""), ["prettier --write"]);
    assert_eq!(names("npx eslint .", ""), ["eslint --fix"]);
    assert_eq!(names("go build ./...", "go: updates to go.mod needed; to update it:\n\tgo mod tidy"), ["go mod tidy"]);
    assert_eq!(names("cargo test", "error: unused variable: `x`"), ["cargo fix"]);
    assert!(names("cargo test", "test adds ... FAILED").is_empty());
    assert!(names("pytest -q", "E   assert 5 == 4").is_empty());
    assert!(names("make", "").is_empty());
}

#[test]
fn user_recipes_come_first_and_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("salve.toml"),
        "listen = \"127.0.0.1:9000\"\n[heal]\nmax_attempts_per_day = 1\n[[heal.fixer]]\nname = \"sort\"\nwhen_command = 'check-sorted'\nrun = [\"sort -o list.txt list.txt\"]\n",
    )
    .expect("write");
    let config = HealConfig::load(dir.path()).expect("valid");
    assert_eq!(config.max_attempts_per_day, Some(1));
    assert_eq!(config.recipes()[0].name, "sort");
    for (text, says) in [
        ("[heal]\nmax_atempts = 1\n", "unknown field `max_atempts`"),
        ("[[heal.fixer]]\nname = \"x\"\nrun = [\"true\"]\n", "needs when_command or when_log"),
        ("[[heal.fixer]]\nname = \"x\"\nwhen_log = '('\nrun = [\"true\"]\n", "is not a regular expression"),
        ("[heal\n", "not valid TOML"),
    ] {
        std::fs::write(dir.path().join("salve.toml"), text).expect("write");
        let e = HealConfig::load(dir.path()).expect_err(text);
        assert!(e.contains(says), "{text}: {e}");
    }
}

#[test]
fn envsubst_replaces_names_and_keeps_the_rest() {
    let get = |k: &str| match k {
        "SEMAPHORE_GIT_SHA" => Some("abc123".to_owned()),
        "PIPE" => Some("p1".to_owned()),
        _ => None,
    };
    assert_eq!(envsubst("fix $SEMAPHORE_GIT_SHA in ${PIPE}.", &get), "fix abc123 in p1.");
    assert_eq!(envsubst("cost $5, $ alone, ${ not, $UNSET!", &get), "cost $5, $ alone, ${ not, !");
    assert_eq!(envsubst("ünïcode $PIPE€", &get), "ünïcode p1€");
}

#[test]
fn a_change_keeps_only_the_new_files_it_is_meant_to_create() {
    use salve_heal::fixers::{build_output, kept_new_files};
    let new: Vec<String> = [
        "target/debug/deps/libx.rlib",
        "target/.rustc_info.json",
        "Cargo.lock",
        "go.sum",
        "web/package-lock.json",
        "node_modules/left-pad/index.js",
        "src/__pycache__/m.cpython-311.pyc",
        "src/new_module.rs",
        "src/bin/tool.rs",
        "vendor/bundle/ruby/gems/x.rb",
    ]
    .map(String::from)
    .to_vec();
    let all = builtin();
    let by = |name: &str| all.iter().find(|r| r.name == name).unwrap();
    // A formatter creates nothing: build output and stray files stay out.
    assert!(kept_new_files(&new, &[by("cargo clippy --fix")]).is_empty());
    assert_eq!(kept_new_files(&new, &[by("cargo lockfile")]), ["Cargo.lock"]);
    assert_eq!(kept_new_files(&new, &[by("go mod tidy")]), ["go.sum"]);
    assert_eq!(kept_new_files(&new, &[by("npm lockfile")]), ["web/package-lock.json"]);
    // An agent keeps the files it wrote, not what its builds left.
    assert_eq!(
        kept_new_files(&new, &[]),
        ["Cargo.lock", "go.sum", "web/package-lock.json", "src/new_module.rs", "src/bin/tool.rs"]
    );
    assert!(build_output("a/b/target/x") && build_output("x.o") && !build_output("src/target.rs"));
}

/// The triggers match what the tools really print (copied from rustc 1.95 under `-D warnings`
/// and go 1.19), and every mainstream ecosystem's formatter or linter has its fix mode.
#[test]
fn triggers_match_the_tools_real_messages_and_every_ecosystem_has_a_fixer() {
    assert_eq!(names("cargo build", "error: use of deprecated method `S::old_way`: use new_way"), ["cargo fix"]);
    assert_eq!(names("cargo test", "error: unused variable: `unused`"), ["cargo fix"]);
    assert_eq!(names("cargo check", "warning: function `f` is never used"), ["cargo fix"]);
    for log in [
        "main.go:5:2: missing go.sum entry for module providing package golang.org/x/text/language (imported by example.com/m); to add:",
        "main.go:5:2: no required module provides package golang.org/x/text/language; to add it:",
        "go: updates to go.mod needed; to update it:",
    ] {
        assert_eq!(names("go build ./...", log), ["go mod tidy"], "{log}");
    }
    for (command, fixer) in [
        ("clang-format --dry-run --Werror src/main.c", "clang-format -i"),
        ("shfmt -d -l .", "shfmt -w"),
        ("shellcheck scripts/*.sh", "shellcheck -f diff"),
        ("bundle exec rubocop", "rubocop -a"),
        ("npx markdownlint-cli2 '**/*.md'", "markdownlint-cli2 --fix"),
        ("markdownlint docs", "markdownlint --fix"),
        ("golangci-lint run ./...", "golangci-lint --fix"),
        ("npx biome ci .", "biome --write"),
        ("./mvnw -B spotless:check", "spotless apply (maven)"),
        ("./gradlew spotlessCheck", "spotless apply (gradle)"),
        ("dotnet format --verify-no-changes", "dotnet format"),
        ("mix format --check-formatted", "mix format"),
        ("terraform fmt -check -recursive", "terraform fmt"),
    ] {
        assert_eq!(names(command, ""), [fixer], "{command}");
    }
}
