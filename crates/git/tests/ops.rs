//! The git crate's named operations against real repositories: what other crates may ask of
//! git, since only this crate writes git's argv.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use salve_git::Repo;

/// A repository with one commit on `main` by `Ada`, and a change staged on top.
fn repo() -> (tempfile::TempDir, Repo, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(dir.path());
    repo.init("main").unwrap();
    std::fs::write(dir.path().join("a.txt"), "one\n").unwrap();
    repo.add_all().unwrap();
    let first = repo.commit_as("Ada", "ada@example.invalid", "first").unwrap();
    std::fs::write(dir.path().join("a.txt"), "two\n").unwrap();
    repo.add_all().unwrap();
    (dir, repo, first)
}

#[test]
fn commits_authors_and_toplevel() {
    let (dir, repo, first) = repo();
    assert_eq!(repo.resolve("HEAD").as_deref(), Some(first.as_str()));
    assert_eq!(repo.authors(&first), ("Ada".to_owned(), "Ada".to_owned()));
    assert_eq!(repo.authors("--all"), (String::new(), String::new()), "an option is not a revision");
    assert_eq!(repo.current_branch().as_deref(), Some("main"));
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let top = Repo::new(dir.path().join("sub")).toplevel().unwrap();
    assert_eq!(top.canonicalize().unwrap(), dir.path().canonicalize().unwrap());
    assert_eq!(Repo::new(std::env::temp_dir().join("salve-no-such-dir")).toplevel(), None);
}

#[test]
fn config_refs_and_diffs() {
    let (dir, repo, first) = repo();
    repo.config_set("salve.test", "yes").unwrap();
    assert_eq!(repo.config_get("salve.test").as_deref(), Some("yes"));
    assert_eq!(repo.config_get("salve.unset"), None);

    // A bare mirror takes the commit; its refs and the diffs between branches read back.
    let bare_dir = tempfile::tempdir().unwrap();
    let bare = Repo::new(bare_dir.path());
    bare.init_bare(Some("main")).unwrap();
    repo.push_local(bare_dir.path(), &first, "refs/heads/main").unwrap();
    let second = repo.commit_as("Bo", "bo@example.invalid", "second").unwrap();
    repo.push_local(bare_dir.path(), &second, "refs/heads/fix").unwrap();
    let refs = bare.refs();
    assert!(refs.contains(&("refs/heads/main".to_owned(), first.clone())), "{refs:?}");
    assert!(refs.contains(&("refs/heads/fix".to_owned(), second.clone())), "{refs:?}");
    let diff = bare.branch_diff("main", "fix");
    assert!(diff.contains("-one") && diff.contains("+two"), "{diff}");
    assert_eq!(bare.branch_diff("main", "--output=/tmp/x"), "", "a hostile branch name is no range");
    assert!(bare.commit_diff(&second).contains("+two"));
    assert_eq!(bare.commit_diff("--output=/tmp/x"), "");
    // Values from outside (a webhook, a job's environment) never become options.
    let planted = dir.path().join("planted");
    let upload = format!("--upload-pack=touch {}", planted.display());
    assert!(repo.fetch("origin", &upload).is_err());
    assert!(repo.fetch_streamed(&upload).is_err());
    assert!(repo.reset_hard_streamed("--hard").is_err());
    assert!(repo.push_local(bare_dir.path(), "--exec=x", "refs/heads/x").is_err());
    assert!(repo.config_set("--global", "x").is_err());
    assert!(!planted.exists(), "no option reached git");
    drop(dir);
}

#[test]
fn exec_path_holds_the_http_backend() {
    let exec = salve_git::exec_path().unwrap();
    assert!(exec.join("git-http-backend").exists(), "{}", exec.display());
}

/// Branch names are checked without starting git, by git's own rules: real git is the oracle.
#[test]
fn branch_names_follow_gits_rules() {
    let names = [
        "main",
        "feature/x",
        "selfheal-3f2a9c1",
        "a.b",
        "v1.2.3",
        "a-b_c",
        "ü-ünïcode",
        "x@y",
        "a/b/c",
        "",
        "-x",
        "@",
        "HEAD",
        "a..b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "a@{1}",
        "a.",
        ".a",
        "a/.b",
        "a.lock",
        "a/b.lock/c",
        "/a",
        "a/",
        "a//b",
        "a\u{7f}",
        "a\tb",
        "refs/heads/x",
        "a.lock.b",
        "..",
        "a/..",
        "@{-1}",
        "head",
        "HEAD/x",
    ];
    // Outside any repository, so `@` and `@{-1}` are not read as the current branch.
    let nowhere = tempfile::tempdir().unwrap();
    for name in names {
        let git = std::process::Command::new("git")
            .args(["check-ref-format", "--branch", name])
            .current_dir(nowhere.path())
            .output()
            .unwrap()
            .status
            .success();
        // Stricter than git on purpose: `@` names HEAD, and an option is no branch.
        let expected = git && name != "@" && !name.starts_with('-');
        assert_eq!(Repo::valid_branch(name), expected, "{name:?}");
    }
}

/// A mirror's fetch carries its token as a header: never in an error, even when the server
/// cannot be reached; names that look like options are refused before git runs.
#[test]
fn a_mirrors_token_stays_out_of_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = Repo::new(dir.path().join("m.git"));
    let e = mirror.mirror_from("http://127.0.0.1:9/nowhere.git", "salve_secret_token_123", "abc").unwrap_err();
    assert!(!e.to_string().contains("salve_secret_token_123"), "{e}");
    assert!(mirror.mirror_from("--upload-pack=touch /tmp/x", "t", "abc").is_err());
    assert!(mirror.mirror_from("http://127.0.0.1:9/x.git", "t", "--output=/tmp/x").is_err());
}
