//! Guards on a candidate diff: what a fix may not do, whoever wrote it. A heal that trips one
//! is refused and nothing is pushed; the refusal says which rule and where.
//!
//! The rules look at `git diff` text: files deleted, lines removed and added. They are
//! deliberately blunt: a real fix to code under test rarely needs to remove a test, add a skip
//! marker, drop an assertion, swallow an exit code or edit the pipeline that judges it.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;

/// Limits and exceptions (from `salve.toml`'s `[heal]`).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Most lines added plus removed.
    pub max_diff_lines: usize,
    /// Globs of paths a fix may not touch.
    pub protected: Vec<String>,
    /// Allow edits to `.semaphore/` and `selfheal/`.
    pub allow_ci_edits: bool,
    /// The failing commit changed no test, expectation or snapshot: the tests were right and
    /// the code broke them, so a fix may not change what they expect (assertions, snapshots,
    /// golden files, tolerances, timeouts). Set by the heal for agents and users' recipes.
    pub frozen_expectations: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { max_diff_lines: 400, protected: Vec::new(), allow_ci_edits: false, frozen_expectations: false }
    }
}

/// Whether a diff (`git diff` text) changes tests or what they expect: a test file, a snapshot
/// or golden file, a line that defines a test or asserts. A heal of a commit that did not is
/// held to [`Policy::frozen_expectations`].
pub fn touches_tests(diff: &str) -> bool {
    parse(diff).iter().any(|f| {
        is_test_path(&f.path)
            || is_snapshot_path(&f.path)
            || f.added.iter().chain(&f.removed).any(|l| asserts(l) || defines_test(l))
    })
}

/// Snapshots and golden files: what a test compares output with.
pub fn is_snapshot_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let in_dir = |d: &str| lower.starts_with(&format!("{d}/")) || lower.contains(&format!("/{d}/"));
    in_dir("__snapshots__")
        || in_dir("snapshots")
        || in_dir("testdata")
        || in_dir("golden")
        || in_dir("goldens")
        || in_dir("expected")
        || in_dir("fixtures")
        || name.ends_with(".snap")
        || name.ends_with(".snap.new")
        || name.ends_with(".golden")
        || name.ends_with(".expected")
        || name.contains(".approved.")
}

/// An assertion line with its white space and trailing commas gone: a formatter's reflow
/// compares equal.
fn normalised(line: &str) -> String {
    line.chars().filter(|c| !c.is_whitespace()).collect::<String>().trim_end_matches([',', ';']).to_owned()
}

/// What a changed assertion loosens, by what it names.
fn loosening(line: &str) -> &'static str {
    let l = line.to_ascii_lowercase();
    if ["approx", "epsilon", "tolerance", "delta", "rel=", "abs=", "closeto", "relative_eq", "abs_diff_eq", "ulps"]
        .iter()
        .any(|w| l.contains(w))
    {
        "widens_tolerance"
    } else {
        "rewrites_expectation"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Which rule: `deletes_test`, `removes_test`, `adds_skip`, `weakens_assertion`,
    /// `swallows_failure`, `edits_ci`, `protected_path`, `binary`, `too_large`, and for a
    /// commit that changed no test `rewrites_expectation`, `widens_tolerance`,
    /// `updates_snapshot`, `raises_timeout`.
    pub rule: &'static str,
    pub file: String,
    pub detail: String,
}

/// One file of a diff.
#[derive(Debug, Default)]
struct FileDiff {
    path: String,
    deleted: bool,
    binary: bool,
    added: Vec<String>,
    removed: Vec<String>,
}

fn parse(diff: &str) -> Vec<FileDiff> {
    let mut files: Vec<FileDiff> = Vec::new();
    for line in diff.lines() {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            // `a/PATH b/PATH`; the `+++`/`---` lines refine it.
            let path = rest.rsplit_once(" b/").map_or(rest, |(_, b)| b);
            files.push(FileDiff { path: path.to_owned(), ..FileDiff::default() });
            continue;
        }
        let Some(f) = files.last_mut() else { continue };
        if line.starts_with("deleted file mode") {
            f.deleted = true;
        } else if line.starts_with("Binary files ") || line == "GIT binary patch" {
            f.binary = true;
        } else if let Some(p) = line.strip_prefix("+++ b/") {
            f.path = p.to_owned();
        } else if line.starts_with("+++ ") || line.starts_with("--- ") {
        } else if let Some(l) = line.strip_prefix('+') {
            f.added.push(l.to_owned());
        } else if let Some(l) = line.strip_prefix('-') {
            f.removed.push(l.to_owned());
        }
    }
    files
}

/// Paths that hold tests, in the conventions of the common ecosystems.
pub fn is_test_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let in_dir = |d: &str| lower.starts_with(&format!("{d}/")) || lower.contains(&format!("/{d}/"));
    in_dir("tests")
        || in_dir("test")
        || in_dir("__tests__")
        || in_dir("spec")
        || name.starts_with("test_")
        || name.ends_with("_test.py")
        || name.ends_with("_test.go")
        || name.ends_with("_test.rs")
        || name.contains(".test.")
        || name.contains(".spec.")
        || name.ends_with("test.java")
        || name.ends_with("tests.java")
        || name.ends_with("tests.cs")
        || name.ends_with("test.cs")
        || name.ends_with("_spec.rb")
}

/// A line that defines a test.
fn defines_test(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("#[test]")
        || t.starts_with("#[tokio::test")
        || t.starts_with("def test")
        || t.starts_with("async def test")
        || t.starts_with("func Test")
        || t.starts_with("@Test")
        || t.starts_with("[Fact")
        || t.starts_with("[Test")
        || t.starts_with("[Theory")
        || ["it(", "test(", "it.only(", "test.only(", "describe("].iter().any(|p| t.starts_with(p))
}

/// Markers that skip or silence a test.
const SKIP_MARKERS: &[&str] = &[
    "#[ignore",
    "@pytest.mark.skip",
    "@pytest.mark.xfail",
    "pytest.skip(",
    "pytest.xfail(",
    "@unittest.skip",
    "@unittest.expectedFailure",
    "self.skipTest(",
    "it.skip(",
    "test.skip(",
    "describe.skip(",
    "it.todo(",
    "test.todo(",
    "xit(",
    "xtest(",
    "xdescribe(",
    "t.Skip(",
    "t.SkipNow(",
    "t.Skipf(",
    "@Disabled",
    "@Ignore",
    "[Ignore",
    "Skip =",
    "skip:",
    "pending(",
    "#[should_panic",
    "pytest.mark.flaky",
    "@flaky",
];

/// A line that asserts something.
fn asserts(line: &str) -> bool {
    let t = line.trim_start();
    [
        "assert",
        "expect(",
        "expect!",
        "debug_assert",
        "t.Error",
        "t.Fatal",
        "require.",
        "Assert.",
        "self.assert",
        "should",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// Assertions that cannot fail (`assert True`, `assert!(true)`, `expect(true).toBe(true)`, ...).
fn vacuous(line: &str) -> bool {
    let t: String = line.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    let t = t.trim_end_matches(';');
    t == "asserttrue"
        || t.starts_with("asserttrue,")
        || t.starts_with("asserttrue#")
        || [
            "assert!(true)",
            "assert!(true,",
            "assert(true)",
            "assert(true,",
            "asserttrue(true)",
            "self.asserttrue(true)",
            "assert.true(true)",
            "assert.istrue(true)",
            "expect(true).tobe(true)",
            "expect(true).tobetruthy()",
            "assert_eq!(1,1)",
            "assert_eq!(true,true)",
        ]
        .iter()
        .any(|p| t.starts_with(p))
}

/// Shell idioms that turn a failure into a success.
fn swallows(line: &str) -> bool {
    let t = line.trim();
    t.contains("|| true")
        || t.contains("|| :")
        || t.ends_with("|| exit 0")
        || t == "set +e"
        || t.contains("continue-on-error")
}

/// Checks `diff` (output of `git diff`) against the rules; empty when it may be pushed.
pub fn check(diff: &str, policy: &Policy) -> Vec<Refusal> {
    let mut out = Vec::new();
    let protected = globs(&policy.protected);
    let mut size = 0;
    for f in parse(diff) {
        size += f.added.len() + f.removed.len();
        let mut refuse = |rule, detail: String| out.push(Refusal { rule, file: f.path.clone(), detail });
        let ci = f.path.starts_with(".semaphore/") || f.path.starts_with("selfheal/");
        if ci && !policy.allow_ci_edits {
            refuse("edits_ci", "a fix may not change the pipeline that judges it (allow_ci_edits in [heal])".into());
        }
        if protected.as_ref().is_some_and(|g| g.is_match(&f.path)) {
            refuse("protected_path", "the path is protected ([heal] protected_paths)".into());
        }
        if f.binary {
            refuse("binary", "a fix may not change binary files".into());
        }
        let test_file = is_test_path(&f.path);
        if f.deleted && test_file {
            refuse("deletes_test", "deletes a test file".into());
            continue;
        }
        let tests_removed = f.removed.iter().filter(|l| defines_test(l)).count();
        let tests_added = f.added.iter().filter(|l| defines_test(l)).count();
        if tests_removed > tests_added {
            refuse("removes_test", format!("removes {} test(s)", tests_removed - tests_added));
        }
        let skips = |lines: &[String]| -> Vec<String> {
            lines.iter().filter(|l| SKIP_MARKERS.iter().any(|m| l.contains(m))).map(|l| l.trim().to_owned()).collect()
        };
        let (skips_added, skips_removed) = (skips(&f.added), skips(&f.removed));
        if skips_added.len() > skips_removed.len() {
            refuse("adds_skip", format!("adds a skip marker: `{}`", skips_added[0]));
        }
        let asserts_removed = f.removed.iter().filter(|l| asserts(l)).count();
        let asserts_added = f.added.iter().filter(|l| asserts(l) && !vacuous(l)).count();
        if asserts_removed > asserts_added {
            refuse("weakens_assertion", format!("removes {} assertion(s)", asserts_removed - asserts_added));
        } else if let Some(l) = f.added.iter().find(|l| vacuous(l)) {
            refuse("weakens_assertion", format!("adds an assertion that cannot fail: `{}`", l.trim()));
        }
        if let Some(l) = f.added.iter().find(|l| swallows(l)) {
            refuse("swallows_failure", format!("makes a failure pass: `{}`", l.trim()));
        }
        if policy.frozen_expectations {
            frozen(&f, &mut refuse);
        }
    }
    if size > policy.max_diff_lines {
        out.push(Refusal {
            rule: "too_large",
            file: String::new(),
            detail: format!("changes {size} lines; the limit is {} ([heal] max_diff_lines)", policy.max_diff_lines),
        });
    }
    out
}

/// The rules for a commit that changed no test: its tests' expectations stay as they are.
fn frozen(f: &FileDiff, refuse: &mut impl FnMut(&'static str, String)) {
    let reflow_only = normalised(&f.removed.concat()) == normalised(&f.added.concat());
    if reflow_only {
        return;
    }
    if is_snapshot_path(&f.path) {
        refuse("updates_snapshot", "changes a snapshot or golden file the failing commit did not touch".into());
        return;
    }
    let before: Vec<String> = f.removed.iter().filter(|l| asserts(l)).map(|l| normalised(l)).collect();
    let after: Vec<String> = f.added.iter().filter(|l| asserts(l)).map(|l| normalised(l)).collect();
    if let Some(old) = f.removed.iter().filter(|l| asserts(l)).find(|l| !after.contains(&normalised(l))) {
        let new = f.added.iter().find(|l| asserts(l) && !before.contains(&normalised(l)));
        let rule = loosening(new.map_or(old.as_str(), String::as_str));
        let detail = match new {
            Some(n) => format!("`{}` becomes `{}`, though the failing commit changed no test", old.trim(), n.trim()),
            None => format!("changes `{}`, though the failing commit changed no test", old.trim()),
        };
        refuse(rule, detail);
    }
    let timeout = |l: &String| l.to_ascii_lowercase().contains("timeout");
    if let Some(l) = f.added.iter().find(|l| timeout(l) && !f.removed.contains(l)).filter(|_| is_test_path(&f.path)) {
        refuse(
            "raises_timeout",
            format!("changes a test's time limit (`{}`), though the failing commit changed no test", l.trim()),
        );
    }
}

fn globs(patterns: &[String]) -> Option<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).ok()?);
    }
    b.build().ok()
}
