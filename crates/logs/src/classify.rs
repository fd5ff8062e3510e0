//! What kind of failure an excerpt shows, and a fingerprint that stays the same when the same
//! failure happens again.
//!
//! The class drives the heal tiers: flaky or infrastructure failures are rerun, lint and format
//! failures go to deterministic fixers, the rest to an agent; an environment failure (a tool or
//! toolchain the machine lacks) is never "fixed" by editing code. Causes outside the code win
//! over their symptoms: a test that failed because the disk was full is an infrastructure failure.

use crate::excerpt::{Line, shape};

/// The contract's failure class, by the name the classifier uses.
pub use salve_contract::FailureClass as Class;

/// Phrases of each class, lower case, in precedence order: the first class with a phrase in
/// the excerpt wins.
const RULES: &[(Class, &[&str])] = &[
    (
        Class::OutOfMemory,
        &[
            "out of memory",
            "outofmemoryerror",
            "cannot allocate memory",
            "java heap space",
            "oom-kill",
            "oomkilled",
            "memory allocation failed",
            "javascript heap out of memory",
            "memoryerror",
        ],
    ),
    (
        Class::Timeout,
        &[
            "timed out",
            "timeout exceeded",
            "deadline exceeded",
            "execution time limit",
            "took too long",
            "job stopped: timeout",
            "maximum execution time",
        ],
    ),
    (Class::Killed, &["killed", "sigkill", "signal 9", "terminated by signal", "exit code 137", "exit code 143"]),
    (
        Class::NetworkInfrastructure,
        &[
            "no space left on device",
            "could not resolve host",
            "temporary failure in name resolution",
            "name or service not known",
            "connection refused",
            "connection reset",
            "connection timed out",
            "network is unreachable",
            "503 service unavailable",
            "502 bad gateway",
            "504 gateway",
            "econnreset",
            "etimedout",
            "econnrefused",
            "tls handshake",
            "ssl_error",
            "rate limit",
            "could not transfer artifact",
            "transfer failed for",
            "read-only file system",
            "device or resource busy",
            "couldn't connect to server",
            "could not connect to",
            "failed to connect to",
            "address already in use",
            "eaddrinuse",
            "connection aborted",
            "remote end closed connection",
        ],
    ),
    (
        Class::Environment,
        &[
            "command not found",
            "no default is configured",
            "could not choose a version of",
            "executable file not found in $path",
            "is not installed",
            "not installed on this",
            "no such command",
            "toolchain '",
            "unable to find a java runtime",
            "no java runtime present",
            "pyenv: version",
        ],
    ),
    (
        Class::Configuration,
        &[
            "malformed",
            "invalid pipeline",
            "yaml:",
            "unknown option",
            "unrecognized option",
            "no such file or directory",
            "permission denied",
        ],
    ),
    (
        Class::Dependency,
        &[
            "could not resolve dependencies",
            "could not find artifact",
            "could not resolve",
            "failed to resolve",
            "lockfile",
            "lock file",
            "package-lock.json",
            "cargo.lock",
            "yarn.lock",
            "poetry.lock",
            "go.sum",
            "go.mod",
            "no required module provides package",
            "cannot find module providing package",
            "is replaced but not required",
            "no matching version",
            "could not find a version that satisfies",
            "no module named",
            "modulenotfounderror",
            "cannot find module",
            "eresolve",
            "failed to select a version",
            "version solving failed",
            "unresolved dependency",
            "dependency resolution",
            "unsupportedclassversionerror",
        ],
    ),
    (
        Class::LintFormat,
        &[
            "rustfmt",
            "black --check",
            "isort",
            "mypy",
            "cargo fmt",
            "diff in ",
            "would reformat",
            "would be reformatted",
            "prettier",
            "eslint",
            "flake8",
            "pylint",
            "ruff",
            "clippy",
            "checkstyle",
            "rubocop",
            "gofmt",
            "golangci-lint",
            "go vet",
            "staticcheck",
            "shellcheck",
            "shfmt",
            "clang-format",
            "markdownlint",
            "yamllint",
            "hadolint",
            "lint",
            "code style",
            "fixable with the",
            " problems (",
            " problem (",
            "no-unused-vars",
            "formatting",
            "spotless",
        ],
    ),
    (
        Class::CompileError,
        &[
            "error[e",
            "error cs",
            "error ts",
            "error c2",
            "undeclared",
            "compilation failure",
            "compilation error",
            "compilation failed",
            "failed to compile",
            "cannot find symbol",
            "syntaxerror",
            "syntax error",
            "undefined reference",
            "cannot find type",
            "mismatched types",
            "could not compile",
            "does not exist in the current context",
            "is not defined",
            "not declared by package",
            "undefined: ",
            "compilejava",
            "compiler error",
            "build error",
        ],
    ),
    (
        Class::TestFailure,
        &[
            "tests failed",
            "test failed",
            "failed tests",
            "tests in error",
            "failures:",
            "assertionerror",
            "assertion failed",
            "assert",
            "--- fail",
            "test result: failed",
            "panicked at",
            "expected",
            "✕",
            "✗",
            "failing",
            "there were test failures",
            "test failures",
            " failed,",
            " failed in ",
            "failed (failures=",
            "failed (errors=",
        ],
    ),
];

/// The class of a failure shown by `lines`, with the numbers of the lines that say so. `hint`
/// is what the runner knows (its stop reason or failure kind: `timeout`, `out_of_memory`,
/// `killed`, `malformed`) and wins when given; the failing `command` decides when no line does.
pub fn classify(lines: &[Line], hint: Option<&str>, command: Option<&str>) -> (Class, Vec<usize>) {
    match hint {
        Some("timeout") => return (Class::Timeout, Vec::new()),
        Some("out_of_memory") => return (Class::OutOfMemory, Vec::new()),
        Some("killed" | "signal") => return (Class::Killed, Vec::new()),
        Some("malformed") => return (Class::Configuration, Vec::new()),
        _ => {}
    }
    let lower: Vec<String> = lines.iter().map(|l| l.text().to_lowercase()).collect();
    for (class, phrases) in RULES {
        let hits: Vec<usize> = lines
            .iter()
            .zip(&lower)
            .filter(|(_, t)| phrases.iter().any(|p| t.contains(p)))
            .map(|(l, _)| l.number)
            .collect();
        if !hits.is_empty() {
            return (*class, hits);
        }
    }
    // The failing command says what ran when the lines do not (`ruff check .`, `black --check`).
    let command = command.unwrap_or("").to_lowercase();
    RULES
        .iter()
        .find(|(_, phrases)| phrases.iter().any(|p| command.contains(p)))
        .map_or((Class::Unknown, Vec::new()), |(class, _)| (*class, Vec::new()))
}

/// A short hex digest of the class and the shapes of the excerpt's evidence lines (numbers,
/// hashes, timestamps and temporary names masked), so a rerun that fails the same way has the
/// same fingerprint. Order-independent within the excerpt, since parallel output interleaves.
pub fn fingerprint(class: Class, lines: &[Line]) -> String {
    let mut shapes: Vec<u64> =
        lines.iter().filter(|l| l.is_evidence()).map(|l| shape(mask_random(&l.text()).as_bytes())).collect();
    if shapes.is_empty() {
        shapes = lines.iter().map(|l| shape(mask_random(&l.text()).as_bytes())).collect();
    }
    shapes.sort_unstable();
    shapes.dedup();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in class.as_str().bytes().chain(shapes.iter().flat_map(|s| s.to_le_bytes())) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Words that change from run to run though the failure does not: temporary names
/// (`tmp.Xa81bQ`, `/tmp/pytest-of-runner/pytest-12`), ports, addresses: any word mixing
/// letters and digits over 6 characters becomes `~`.
fn mask_random(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace() || c == '/' || c == '=' || c == ':')
        .map(|w| {
            let core = w.trim_end_matches(|c: char| c.is_whitespace() || c == '/' || c == '=' || c == ':');
            let mixed = core.len() > 6
                && core.chars().any(|c| c.is_ascii_digit())
                && core.chars().any(|c| c.is_ascii_alphabetic())
                && !core.contains('.');
            if mixed { format!("~{}", &w[core.len()..]) } else { w.to_owned() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip() {
        for &c in Class::ALL {
            assert_eq!(Class::from_name(c.as_str()), c);
            assert_eq!(serde_json::to_value(c).ok(), Some(serde_json::json!(c.as_str())));
        }
        assert_eq!(Class::from_name("no such class"), Class::Unknown);
        assert!(Class::Timeout.is_infrastructure() && !Class::TestFailure.is_infrastructure());
        assert_eq!(Class::LintFormat.words(), "lint format");
    }

    #[test]
    fn random_words_are_masked() {
        assert_eq!(mask_random("open /tmp/tmpa8Bk2x9/data: no"), mask_random("open /tmp/tmpZ09qq1c/data: no"));
        assert_ne!(mask_random("test_alpha failed"), mask_random("test_beta failed"));
    }
}
