//! Bad input gets a clear answer and never a panic.

use super::{salve, stderr, stdout};

fn lint_bytes(bytes: &[u8]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".semaphore")).unwrap();
    std::fs::write(dir.path().join(".semaphore/semaphore.yml"), bytes).unwrap();
    let out = salve(&["lint"], dir.path());
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "panic: {err}");
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn empty_file() {
    let (code, err) = lint_bytes(b"");
    assert_eq!(code, 1);
    assert!(err.contains("Empty string is not a valid YAML"), "{err}");
}

#[test]
fn binary_file() {
    let (code, err) = lint_bytes(&[0x7f, b'E', b'L', b'F', 0, 1, 2, 3, 0xff]);
    assert_eq!(code, 1);
    assert!(err.contains("binary"), "{err}");
}

#[test]
fn invalid_utf8() {
    let (code, err) = lint_bytes(b"version: v1.0\nname: \xff\xfe bad\n");
    assert_eq!(code, 1);
    assert!(err.contains("not valid UTF-8") && err.contains(":2:"), "{err}");
}

#[test]
fn fifty_megabytes() {
    let mut big =
        b"version: v1.0\nagent: {machine: {type: e1}}\nblocks:\n  - task:\n      jobs:\n        - commands:\n".to_vec();
    while big.len() < 50 * 1024 * 1024 {
        big.extend_from_slice(b"            - echo this line makes a very large pipeline file indeed\n");
    }
    let (code, err) = lint_bytes(&big);
    assert_eq!(code, 1);
    assert!(err.contains("MiB"), "{err}");
}

#[test]
fn deeply_nested() {
    let deep = format!("version: v1.0\nname: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let (code, err) = lint_bytes(deep.as_bytes());
    assert_eq!(code, 1);
    assert!(err.contains("nested deeper"), "{err}");
    let deep_block = (0..5000).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect::<String>();
    let (code, _) = lint_bytes(deep_block.as_bytes());
    assert_eq!(code, 1);
}

#[test]
fn alias_bomb() {
    let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        y.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
            p = i - 1
        ));
    }
    let (code, err) = lint_bytes(y.as_bytes());
    assert_eq!(code, 1);
    assert!(err.contains("alias"), "{err}");
}

#[test]
fn not_a_mapping_and_broken_yaml() {
    let (code, err) = lint_bytes(b"foo");
    assert_eq!(code, 1);
    assert!(err.contains("expected_map"), "{err}");
    let (code, err) = lint_bytes(b"version: v1.0\n  blocks: [\n");
    assert_eq!(code, 1);
    assert!(err.contains("not valid YAML"), "{err}");
}

#[test]
fn when_with_non_ascii_text() {
    let dir = tempfile::tempdir().unwrap();
    for expr in ["branch = 'café'", "branch = 'ünï ☃'", "brañch = 'x'", "☃", "'\u{1F600}'"] {
        let out = salve(&["when", "eval", expr, "--params", r#"{"branch":"café"}"#], dir.path());
        let text = stdout(&out);
        assert!(!stderr(&out).contains("panicked"), "{expr}: {}", stderr(&out));
        let v: serde_json::Value =
            serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{expr}: not JSON: {text}"));
        assert!(v.is_boolean() || v.get("error").is_some_and(|e| e.is_string()), "{expr}: {v}");
    }
    // Latin-1 text is fine in strings; characters above U+00FF are refused with a reason.
    let out = salve(&["when", "eval", "branch = 'café'", "--params", r#"{"branch":"café"}"#], dir.path());
    assert_eq!(stdout(&out).trim(), "true");
    let out = salve(&["when", "eval", "branch = '☃'", "--params", r#"{"branch":"x"}"#], dir.path());
    assert!(stdout(&out).contains("U+00FF"), "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn hostile_when_expressions() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!("{}true{}", "(".repeat(20_000), ")".repeat(20_000));
    let long_chain = vec!["true"; 10_000].join(" and ");
    for expr in [deep.as_str(), long_chain.as_str(), "branch =~ '('", "branch =~ '(a+)+$'", "f(", "'", "-", "!"] {
        let out = salve(
            &["when", "eval", expr, "--params", r#"{"branch":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"}"#],
            dir.path(),
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert!(v.is_boolean() || v.get("error").is_some(), "{v}");
    }
}

#[test]
fn triage_answers_every_odd_log() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 6] = [
        ("empty.log", b""),
        ("no-newline.log", b"error: linking failed"),
        ("binary.log", b"\x00\x01\xff\xfe\x00error\x00"),
        ("crlf.log", b"compiling\r\nsrc/main.rs:3:5: error: expected `;`\r\n"),
        ("latin1.log", b"caf\xe9 error: bad\n"),
        ("progress.log", b"10%\r20%\r100%\rERROR: tests failed\n"),
    ];
    for (name, bytes) in cases {
        std::fs::write(dir.path().join(name), bytes).unwrap();
        for format in ["text", "json", "lines"] {
            let out = super::salve(&["triage", "--log", name, "--format", format], dir.path());
            assert_eq!(out.status.code(), Some(0), "{name} {format}: {}", super::stderr(&out));
        }
    }
    let out = super::salve(&["triage", "--log", "crlf.log", "--format", "lines"], dir.path());
    let lines = super::stdout(&out);
    assert!(lines.contains("src/main.rs:3:5: error: expected `;`\n") && !lines.contains('\r'), "{lines:?}");
    let out = super::salve(&["triage", "--log", "empty.log"], dir.path());
    assert!(super::stdout(&out).contains("no evidence of a failure found (the log is empty)"));
    // One line longer than a read (the 2 GB case of the benchmark, smaller), then a real error.
    let mut long = vec![b'x'; 3 << 20];
    long.extend_from_slice(b" error: in the long line\r\nerror: after it\n");
    std::fs::write(dir.path().join("long.log"), &long).unwrap();
    let out = super::salve(&["triage", "--log", "long.log", "--format", "json"], dir.path());
    let v: serde_json::Value = serde_json::from_str(&super::stdout(&out)).unwrap();
    let excerpt = v["excerpt"].as_array().unwrap();
    assert_eq!(excerpt.last().unwrap()["line"], 2, "{v}");
    assert_eq!(excerpt.last().unwrap()["text"], "error: after it");
    assert!(excerpt.iter().all(|l| l["text"].as_str().unwrap().len() <= 4096));
    std::fs::write(dir.path().join("junit.xml"), "not xml at all").unwrap();
    let out = super::salve(&["triage", "--log", "crlf.log", "--junit", "junit.xml"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(super::stderr(&out).contains("not JUnit XML"), "{}", super::stderr(&out));
    let out = super::salve(&["triage", "--log", "missing.log"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}
