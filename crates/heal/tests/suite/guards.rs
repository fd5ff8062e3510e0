//! The guards on a candidate diff: each rule refuses what it should, and a plain code fix passes.

use salve_heal::guards::{Policy, check, touches_tests};

/// A one-file diff: `removed` and `added` lines under `path`.
fn diff(path: &str, removed: &[&str], added: &[&str]) -> String {
    let mut d = format!(
        "diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n@@ -1,{} +1,{} @@\n",
        removed.len(),
        added.len()
    );
    for l in removed {
        d.push_str(&format!("-{l}\n"));
    }
    for l in added {
        d.push_str(&format!("+{l}\n"));
    }
    d
}

fn rules(diff: &str, policy: &Policy) -> Vec<&'static str> {
    check(diff, policy).iter().map(|r| r.rule).collect()
}

#[test]
fn each_rule_refuses_what_it_names() {
    let p = Policy::default();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("a code fix", diff("src/lib.rs", &["    a - b"], &["    a + b"]), vec![]),
        (
            "a formatter's change",
            diff(
                "src/lib.rs",
                &["pub fn add(a:i32,b:i32)->i32{a+b}"],
                &["pub fn add(a: i32, b: i32) -> i32 {", "    a + b", "}"],
            ),
            vec![],
        ),
        (
            "a fixed test keeps its assertion",
            diff("tests/math.rs", &["    assert_eq!(add(2, 2), 5);"], &["    assert_eq!(add(2, 2), 4);"]),
            vec![],
        ),
        ("rust #[ignore]", diff("src/lib.rs", &[], &["    #[ignore]"]), vec!["adds_skip"]),
        ("pytest skip", diff("tests/test_api.py", &[], &["@pytest.mark.skip(reason='flaky')"]), vec!["adds_skip"]),
        (
            "jest it.skip",
            diff("src/app.test.js", &["it('adds', () => {"], &["it.skip('adds', () => {"]),
            vec!["removes_test", "adds_skip"],
        ),
        ("go t.Skip", diff("calc_test.go", &[], &["\tt.Skip(\"later\")"]), vec!["adds_skip"]),
        (
            "a removed rust test",
            diff("src/lib.rs", &["    #[test]", "    fn adds() {", "        assert_eq!(add(2, 2), 4);", "    }"], &[]),
            vec!["removes_test", "weakens_assertion"],
        ),
        (
            "a removed python test",
            diff("tests/test_calc.py", &["def test_add():", "    assert add(2, 2) == 4"], &[]),
            vec!["removes_test", "weakens_assertion"],
        ),
        (
            "an assertion dropped",
            diff("tests/math.rs", &["    assert_eq!(add(2, 2), 4);"], &["    let _ = add(2, 2);"]),
            vec!["weakens_assertion"],
        ),
        (
            "an assertion made vacuous",
            diff("tests/test_calc.py", &["    assert add(2, 2) == 4"], &["    assert True"]),
            vec!["weakens_assertion"],
        ),
        (
            "assert!(true)",
            diff("src/lib.rs", &["        assert_eq!(add(2, 2), 4);"], &["        assert!(true);"]),
            vec!["weakens_assertion"],
        ),
        ("|| true", diff("Makefile", &["\tcargo test"], &["\tcargo test || true"]), vec!["swallows_failure"]),
        (
            "the pipeline",
            diff(".semaphore/semaphore.yml", &["            - cargo test"], &["            - echo skip"]),
            vec!["edits_ci"],
        ),
        ("the heal's own files", diff("selfheal/prompt-template.txt", &["Fix it"], &["Pass it"]), vec!["edits_ci"]),
    ];
    for (name, d, want) in cases {
        assert_eq!(rules(&d, &p), want, "{name}:\n{d}");
    }
}

#[test]
fn deleted_test_files_binaries_size_and_protected_paths() {
    let p = Policy { max_diff_lines: 10, protected: vec!["migrations/**".into()], ..Policy::default() };
    let deleted = "diff --git a/tests/test_calc.py b/tests/test_calc.py\ndeleted file mode 100644\nindex 1111111..0000000\n--- a/tests/test_calc.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-def test_add():\n-    assert add(2, 2) == 4\n";
    assert_eq!(rules(deleted, &p), vec!["deletes_test"]);
    let binary = "diff --git a/logo.png b/logo.png\nindex 1111111..2222222 100644\nBinary files a/logo.png and b/logo.png differ\n";
    assert_eq!(rules(binary, &p), vec!["binary"]);
    let big: Vec<String> = (0..11).map(|i| format!("let x{i} = {i};")).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    assert_eq!(rules(&diff("src/lib.rs", &[], &big), &p), vec!["too_large"]);
    assert_eq!(rules(&diff("migrations/0001.sql", &["a"], &["b"]), &p), vec!["protected_path"]);
    let allowed = Policy { allow_ci_edits: true, ..Policy::default() };
    assert!(check(&diff(".semaphore/semaphore.yml", &["a: 1"], &["a: 2"]), &allowed).is_empty());
}

#[test]
fn a_refusal_says_where_and_why() {
    let r = check(&diff("tests/test_api.py", &[], &["@pytest.mark.skip"]), &Policy::default());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].file, "tests/test_api.py");
    assert!(r[0].detail.contains("@pytest.mark.skip"), "{}", r[0].detail);
}

/// When the failing commit changed no test, the tests were right: a fix may not change what
/// they expect. One-for-one rewrites are caught, not only removed assertions; a formatter's
/// reflow is not a change.
#[test]
fn a_commit_that_changed_no_test_keeps_its_expectations() {
    let frozen = Policy { frozen_expectations: true, ..Policy::default() };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "a rewritten expectation (Rust, in the module's own tests)",
            diff(
                "src/lib.rs",
                &["        assert_eq!(split(1000, 3), vec![334, 333, 333]);"],
                &["        assert_eq!(split(1000, 3), vec![334, 334, 333]);"],
            ),
            vec!["rewrites_expectation"],
        ),
        (
            "a rewritten expectation (pytest)",
            diff(
                "tests/test_money.py",
                &["    assert split(1000, 3) == [334, 333, 333]"],
                &["    assert split(1000, 3) == [334, 334, 333]"],
            ),
            vec!["rewrites_expectation"],
        ),
        (
            "a rewritten expectation (jest)",
            diff(
                "src/money.test.js",
                &["  expect(split(1000, 3)).toEqual([334, 333, 333]);"],
                &["  expect(split(1000, 3)).toEqual([334, 334, 333]);"],
            ),
            vec!["rewrites_expectation"],
        ),
        (
            "a widened tolerance",
            diff(
                "tests/test_rate.py",
                &["    assert rate() == pytest.approx(0.05, rel=1e-9)"],
                &["    assert rate() == pytest.approx(0.05, rel=0.5)"],
            ),
            vec!["widens_tolerance"],
        ),
        (
            "a regenerated golden file",
            diff("testdata/report.golden", &["total: 1000"], &["total: 1001"]),
            vec!["updates_snapshot"],
        ),
        (
            "a jest snapshot",
            diff("src/__snapshots__/app.test.js.snap", &["exports[`a`] = `1`;"], &["exports[`a`] = `2`;"]),
            vec!["updates_snapshot"],
        ),
        (
            "a raised timeout",
            diff("tests/test_slow.py", &["@pytest.mark.timeout(5)"], &["@pytest.mark.timeout(500)"]),
            vec!["raises_timeout"],
        ),
        ("should_panic", diff("src/lib.rs", &[], &["    #[should_panic]"]), vec!["adds_skip"]),
        (
            "a formatter's reflow of an assertion",
            diff(
                "src/lib.rs",
                &["        assert_eq!(split(1000, 3), vec![334, 333, 333]);"],
                &[
                    "        assert_eq!(",
                    "            split(1000, 3),",
                    "            vec![334, 333, 333]",
                    "        );",
                ],
            ),
            vec![],
        ),
        (
            "a code fix",
            diff("src/lib.rs", &["    let share = total / parts;"], &["    let share = (total + parts - 1) / parts;"]),
            vec![],
        ),
    ];
    for (name, d, want) in cases {
        assert_eq!(rules(&d, &frozen), want, "{name}:\n{d}");
    }
    // The same rewrite when the failing commit changed the tests: for people to judge.
    let rewrite = diff(
        "tests/test_money.py",
        &["    assert split(1000, 3) == [334, 333, 333]"],
        &["    assert split(1000, 3) == [334, 334, 333]"],
    );
    assert!(check(&rewrite, &Policy::default()).is_empty());
    // What the failing commit touched decides.
    assert!(touches_tests(&rewrite));
    assert!(touches_tests(&diff("testdata/out.golden", &["a"], &["b"])));
    assert!(touches_tests(&diff("src/lib.rs", &[], &["    #[test]", "    fn splits() {}"])));
    assert!(!touches_tests(&diff(
        "src/lib.rs",
        &["    let share = total / parts;"],
        &["    let share = total * parts;"]
    )));
}
