//! Excerpts, classes and fingerprints at the crate's boundary: streamed and in-memory reads
//! agree on real logs, baselines remove what passing runs print, and the same failure keeps its
//! fingerprint across reruns.

use std::io::Read;
use std::path::PathBuf;

use salve_logs::classify::Class;
use salve_logs::excerpt::{Baseline, CommandSpan, extract, extract_reader};
use salve_logs::report::{Inputs, report};

fn cidiff() -> PathBuf {
    let dir = std::env::var_os("SALVE_CONFORMANCE")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"), PathBuf::from);
    let dir = dir.join("logs/cidiff");
    assert!(dir.is_dir(), "conformance data not found at {}; set SALVE_CONFORMANCE", dir.display());
    dir
}

/// A reader that hands out a few bytes at a time, as a pipe might.
struct Trickle<'a>(&'a [u8], usize);
impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn streamed_reads_pick_what_in_memory_reads_pick() {
    let dir = cidiff();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let log = std::fs::read(&path).unwrap();
        let mut baseline = Baseline::default();
        baseline.add(&std::fs::read(dir.join("baselines").join(path.file_name().unwrap())).unwrap());
        let whole = extract(&log, &baseline, &[], 4096);
        let trickled = extract_reader(Trickle(&log, 997), &baseline, &[], 4096).unwrap();
        let numbers = |e: &salve_logs::excerpt::Excerpt| e.lines.iter().map(|l| l.number).collect::<Vec<_>>();
        assert_eq!(numbers(&whole), numbers(&trickled), "{}", path.display());
        assert!(whole.bytes <= 4096 && whole.evidence, "{}", path.display());
        assert_eq!(whole.total_lines, trickled.total_lines);
        assert!(whole.total_lines >= log.split(|b| *b == b'\n').count() - 1);
    }
}

#[test]
fn lines_a_passing_run_printed_are_not_evidence() {
    let failed = b"compiling\nwarning: error-prone API used\nerror[E0308]: mismatched types\n --> src/lib.rs:4:5\n  |\n4 |     1u8\n  |     ^^^ expected `u32`, found `u8`\nerror: could not compile `demo`\n";
    let passed = b"compiling\nwarning: error-prone API used\nFinished in 3.2s\n";
    let mut baseline = Baseline::default();
    baseline.add(passed);
    let ex = extract(failed, &baseline, &[], 4096);
    let texts: Vec<String> = ex.lines.iter().map(|l| l.text()).collect();
    assert!(texts.iter().any(|t| t.starts_with("error[E0308]")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("expected `u32`")), "the diagnostic's body comes along: {texts:?}");
    assert!(!texts.iter().any(|t| t.contains("error-prone")), "{texts:?}");
    let r = report(failed, &Inputs { baseline: Some(&baseline), ..Inputs::default() }, 4096);
    assert_eq!(r.class, Class::CompileError);
}

#[test]
fn the_failing_command_outweighs_noise_in_passing_ones() {
    let log = b"npm warn deprecated: Error: old API\nlint ok\n\nFAIL src/app.test.js\n  \xe2\x97\x8f adds \xe2\x80\xba numbers\n    expect(received).toBe(expected)\n";
    let commands = [
        CommandSpan { command: "npm ci".into(), first_line: 0, end_line: 2, exit_code: Some(0) },
        CommandSpan { command: "npm test".into(), first_line: 2, end_line: 6, exit_code: Some(1) },
    ];
    let ex = extract(log, &Baseline::default(), &commands, 4096);
    assert_eq!(ex.failing_command.as_deref(), Some("npm test"));
    assert_eq!(ex.lines.first().map(|l| l.number), Some(4), "{:?}", ex.lines);
}

#[test]
fn classes_of_common_failures() {
    let cases: &[(&[u8], Class)] = &[
        (b"running 3 tests\ntest parse ... FAILED\nthread 'parse' panicked at src/lib.rs:9:5:\nassertion `left == right` failed\n", Class::TestFailure),
        (b"src/app.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.\n", Class::CompileError),
        (b"Diff in /src/main.rs at line 3:\n-fn main(){}\n+fn main() {}\nerror: rustfmt failed\n", Class::LintFormat),
        (b"npm ERR! code ERESOLVE\nnpm ERR! ERESOLVE unable to resolve dependency tree\n", Class::Dependency),
        (b"fatal: unable to access 'https://example.invalid/r.git/': Could not resolve host: example.invalid\n", Class::NetworkInfrastructure),
        (b"FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n", Class::OutOfMemory),
        (b"E   Failed: Timeout >10.0s\nERROR tests/test_x.py::test_slow - Failed: timed out\n", Class::Timeout),
        (b"all good\n", Class::Unknown),
    ];
    for (log, class) in cases {
        let r = report(log, &Inputs::default(), 4096);
        assert_eq!(r.class, *class, "{}: {:?}", String::from_utf8_lossy(log), r.excerpt);
    }
    let quiet = report(b"step one\nstep two\n\n", &Inputs::default(), 4096);
    assert!(!quiet.evidence);
    assert_eq!(quiet.excerpt.iter().map(|l| l.line).collect::<Vec<_>>(), [1, 2], "the log's last lines");
    // Lint output without a telling word: the failing command decides.
    let ruff = b"src/app.py:3:8: F401 [*] `os` imported but unused\nFound 1 error.\n";
    let commands = [CommandSpan { command: "ruff check .".into(), first_line: 0, end_line: 2, exit_code: Some(1) }];
    let r = report(ruff, &Inputs { commands: &commands, ..Inputs::default() }, 4096);
    assert_eq!(r.class, Class::LintFormat);
    assert_eq!(r.excerpt.len(), 2, "the violation leads into its count: {:?}", r.excerpt);
    let hinted = report(b"sleeping\n", &Inputs { hint: Some("timeout"), ..Inputs::default() }, 4096);
    assert_eq!(hinted.class, Class::Timeout);
}

#[test]
fn fingerprints_survive_reruns_and_tell_failures_apart() {
    let run = |stamp: &str, tmp: &str, test: &str| {
        let log = format!(
            "{stamp} collecting\n{stamp} FAILED tests/test_io.py::{test} - AssertionError: /tmp/{tmp}/out.txt differs\n{stamp} E   assert 3 == 4\n"
        );
        report(log.as_bytes(), &Inputs::default(), 4096).fingerprint
    };
    let a = run("2026-11-24T10:00:01.123Z", "pytest-of-ci/pytest-12a8Xq", "test_write");
    let b = run("2026-11-25T18:30:59.999Z", "pytest-of-ci/pytest-77zz9Q", "test_write");
    let c = run("2026-11-24T10:00:01.123Z", "pytest-of-ci/pytest-12a8Xq", "test_read");
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 16);
}

/// Failures as common tools print them, buried in 200 lines of build noise: the line that says
/// why must be in the excerpt, and the class must be right.
#[test]
fn failures_of_many_tools_are_found_in_noise() {
    let cases: &[(&str, &str, Class)] = &[
        (
            "=== RUN   TestParse\n    parse_test.go:42: expected 3, got 4\n--- FAIL: TestParse (0.00s)\nFAIL",
            "    parse_test.go:42: expected 3, got 4",
            Class::TestFailure,
        ),
        (
            "test tests::adds ... FAILED\nthread 'tests::adds' panicked at src/lib.rs:10:9:\nassertion `left == right` failed\n  left: 3\n right: 4",
            "thread 'tests::adds' panicked at src/lib.rs:10:9:",
            Class::TestFailure,
        ),
        (
            ">       assert add(1, 2) == 4\nE       assert 3 == 4\n\ntests/test_math.py:5: AssertionError\nFAILED tests/test_math.py::test_add - assert 3 == 4",
            "E       assert 3 == 4",
            Class::TestFailure,
        ),
        (
            "FAIL src/sum.test.js\n  \u{25cf} sum \u{203a} adds numbers\n\n    expect(received).toBe(expected)\n\n    Expected: 4\n    Received: 3",
            "    Expected: 4",
            Class::TestFailure,
        ),
        (
            "/src/App/Program.cs(12,20): error CS1002: ; expected [/src/App/App.csproj]\nBuild FAILED.",
            "/src/App/Program.cs(12,20): error CS1002: ; expected [/src/App/App.csproj]",
            Class::CompileError,
        ),
        (
            "main.c: In function 'main':\nmain.c:5:3: error: 'x' undeclared (first use in this function)\n    5 |   x = 1;\n      |   ^\nmake: *** [Makefile:3: main.o] Error 1",
            "main.c:5:3: error: 'x' undeclared (first use in this function)",
            Class::CompileError,
        ),
        (
            "npm ERR! code ERESOLVE\nnpm ERR! ERESOLVE unable to resolve dependency tree",
            "npm ERR! ERESOLVE unable to resolve dependency tree",
            Class::Dependency,
        ),
        (
            "/app/src/a.js\n  3:7  error  'x' is assigned a value but never used  no-unused-vars\n\n\u{2716} 1 problem (1 error, 0 warnings)",
            "  3:7  error  'x' is assigned a value but never used  no-unused-vars",
            Class::LintFormat,
        ),
        (
            "Diff in /work/src/lib.rs:1:\n\x1b[31m-pub fn add(a:i32)->i32{a}\n\x1b(B\x1b[m\x1b[32m+pub fn add(a: i32) -> i32 {\n+    a\n+}",
            "-pub fn add(a:i32)->i32{a}",
            Class::LintFormat,
        ),
        (
            "would reformat /app/src/main.py\n1 file would be reformatted, 3 files would be left unchanged.",
            "would reformat /app/src/main.py",
            Class::LintFormat,
        ),
        (
            "Checking formatting...\n[warn] src/index.js\n[warn] Code style issues found in the above file. Run Prettier with --write to fix.",
            "[warn] Code style issues found in the above file. Run Prettier with --write to fix.",
            Class::LintFormat,
        ),
        (
            "##[error]The job running on runner GitHub Actions 2 has exceeded the maximum execution time of 360 minutes.",
            "##[error]The job running on runner GitHub Actions 2 has exceeded the maximum execution time of 360 minutes.",
            Class::Timeout,
        ),
        (
            "+ ./deploy.sh\n./deploy.sh: line 4: kubectl: command not found",
            "./deploy.sh: line 4: kubectl: command not found",
            Class::Environment,
        ),
    ];
    for (failure, key, class) in cases {
        let mut log = String::new();
        for i in 0..200 {
            log.push_str(&format!("[{i:03}] Downloading package {} of 300 (ok)\n", i * 7 % 300));
        }
        log.push_str(failure);
        log.push_str("\nCleaning up\n");
        let r = report(log.as_bytes(), &Inputs::default(), 4096);
        let texts: Vec<&str> = r.excerpt.iter().map(|l| l.text.as_str()).collect();
        assert!(texts.contains(key), "{key:?} not in {texts:#?}");
        assert_eq!(r.class, *class, "{failure}");
    }
}

/// A build tool's failure is one region: the heading over its separator, each diagnostic with
/// its tagged continuation lines, the count, and the closing summary, which a failure far
/// earlier in the log (a larger block) does not crowd out. Its generic epilogue stays out.
#[test]
fn a_build_tools_failure_comes_whole_with_its_summary() {
    let mut log = String::new();
    log.push_str("[INFO] Running org.example.RetryTest\n[WARNING] Error injecting: org.example.Plugin\n");
    log.push_str("java.lang.IllegalStateException: retry\n");
    for i in 0..30 {
        log.push_str(&format!("    at org.example.Retry.attempt{i} (Retry.java:{i})\n"));
    }
    for i in 0..150 {
        log.push_str(&format!("[INFO] Compiling module {i} of 150\n"));
    }
    let region = [
        "[ERROR] COMPILATION ERROR : ",
        "[INFO] -------------------------------------------------------------",
        "[ERROR] /w/src/main/java/a/Parser.java:[23,29] cannot find symbol",
        "  symbol:   class Scanner",
        "  location: package a.b",
        "[INFO] 1 error",
        "[INFO] -------------------------------------------------------------",
        "[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.8.1:compile (default-compile) on project a: Compilation failure",
        "[ERROR] /w/src/main/java/a/Parser.java:[23,29] cannot find symbol",
        "[ERROR]   symbol:   class Scanner",
        "[ERROR]   location: package a.b",
    ];
    for l in region {
        log.push_str(l);
        log.push('\n');
    }
    log.push_str("[ERROR] -> [Help 1]\n[ERROR] \n[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.\n");
    let ex = extract(log.as_bytes(), &Baseline::default(), &[], 4096);
    let texts: Vec<String> = ex.lines.iter().map(|l| l.text()).collect();
    for l in region {
        assert!(texts.iter().any(|t| t == l), "{l:?} not in {texts:#?}");
    }
    assert!(!texts.iter().any(|t| t.contains("To see the full stack trace") || t.contains("[Help 1]")), "{texts:#?}");
}

/// Messages copied from the tools themselves (go 1.19, curl, Python, bash, rustup, pytest), each
/// followed by the runner's own footer, which is never the evidence: the tool's lines are in the
/// excerpt and decide the class.
#[test]
fn real_tool_messages_are_found_and_classed_past_salves_footer() {
    let cases: &[(&str, &str, Class)] = &[
        (
            "go: updates to go.mod needed; to update it:\n\tgo mod tidy",
            "go: updates to go.mod needed; to update it:",
            Class::Dependency,
        ),
        (
            "main.go:5:2: missing go.sum entry for module providing package golang.org/x/text/language (imported by example.com/m); to add:\n\tgo get example.com/m",
            "main.go:5:2: missing go.sum entry for module providing package golang.org/x/text/language (imported by example.com/m); to add:",
            Class::Dependency,
        ),
        (
            "main.go:5:2: no required module provides package golang.org/x/text/language; to add it:\n\tgo get golang.org/x/text/language",
            "main.go:5:2: no required module provides package golang.org/x/text/language; to add it:",
            Class::Dependency,
        ),
        (
            "# example.com/m\n./main.go:5:19: undefined: fmt.Printx",
            "./main.go:5:19: undefined: fmt.Printx",
            Class::CompileError,
        ),
        (
            "curl: (7) Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server",
            "curl: (7) Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server",
            Class::NetworkInfrastructure,
        ),
        (
            "  File \"/usr/lib/python3.11/socketserver.py\", line 472, in server_bind\n    self.socket.bind(self.server_address)\nOSError: [Errno 98] Address already in use",
            "OSError: [Errno 98] Address already in use",
            Class::NetworkInfrastructure,
        ),
        ("bash: line 1: ruff: command not found", "bash: line 1: ruff: command not found", Class::Environment),
        (
            "error: rustup could not choose a version of cargo to run, because one wasn't specified explicitly, and no default is configured.\nhelp: run 'rustup default stable' to download the latest stable release of Rust and set it as your default toolchain.",
            "error: rustup could not choose a version of cargo to run, because one wasn't specified explicitly, and no default is configured.",
            Class::Environment,
        ),
        (
            "FAILED test_s.py::test_split - assert [334, 333, 333] == [334, 334, 333]\n1 failed in 0.16s",
            "1 failed in 0.16s",
            Class::TestFailure,
        ),
    ];
    for (failure, key, class) in cases {
        let log = format!("{failure}\nsalve: job failed: `make` \u{2014} exit code 1\n");
        let r = report(log.as_bytes(), &Inputs::default(), 4096);
        let texts: Vec<&str> = r.excerpt.iter().map(|l| l.text.as_str()).collect();
        assert!(texts.contains(key), "{key:?} not in {texts:#?}");
        assert!(!texts.iter().any(|t| t.starts_with("salve: ")), "the runner's footer is evidence: {texts:#?}");
        assert_eq!(r.class, *class, "{failure}");
    }
    // go vet says nothing a keyword finds: the failing command classes it, its last lines are the excerpt.
    let vet = b"# example.com/m\n./main.go:5:15: fmt.Printf format %d has arg \"s\" of wrong type string\nsalve: job failed: `go vet ./...` \xe2\x80\x94 exit code 1\n";
    let commands = [CommandSpan { command: "go vet ./...".into(), first_line: 0, end_line: 2, exit_code: Some(1) }];
    let r = report(vet, &Inputs { commands: &commands, ..Inputs::default() }, 4096);
    assert_eq!(r.class, Class::LintFormat);
    assert!(r.excerpt.iter().any(|l| l.text.contains("wrong type string")), "{:?}", r.excerpt);
}

/// A log from elsewhere, with no command records: the failing step is recovered from its CI's
/// markers, its output outweighs louder lines of other steps, and when it holds no evidence the
/// excerpt is its end, not the noise after it.
#[test]
fn foreign_logs_weigh_the_failing_step_and_fall_back_to_its_end() {
    let travis = "travis_fold:start:install.1\r\x1b[0Ktravis_time:start:1\r\x1b[0K$ npm ci\n\
        npm WARN deprecated request@2.88.2: request has been deprecated\n\
        npm ERR! missing optional dependency fsevents: not found\n\
        added 300 packages\n\
        travis_time:end:1:start=1,finish=2,duration=1\r\x1b[0Ktravis_fold:end:install.1\r\x1b[0K\n\
        travis_time:start:2\r\x1b[0K$ npx flake8 src\n\
        src/app.py:3:1: F401 'os' imported but unused\n\
        src/app.py:9:80: E501 line too long (91 > 79 characters)\n\
        travis_time:end:2:start=1,finish=2,duration=1\r\x1b[0K\n\
        \x1b[31;1mThe command \"npx flake8 src\" exited with 1.\x1b[0m\n\
        travis_time:start:3\r\x1b[0K$ ./upload-artifacts.sh\n\
        error: artifact upload failed: connection refused\n\
        \nDone. Your build exited with 1.\n";
    let ex = extract(travis.as_bytes(), &Baseline::default(), &[], 4096);
    assert_eq!(ex.failing_command.as_deref(), Some("npx flake8 src"));
    let texts: Vec<String> = ex.lines.iter().map(|l| l.text()).collect();
    assert_eq!(
        texts,
        ["src/app.py:3:1: F401 'os' imported but unused", "src/app.py:9:80: E501 line too long (91 > 79 characters)"],
        "the failing step's own lines, not the upload's or npm's errors"
    );

    // GitHub Actions: the step that reported an exit code wins over a louder earlier one.
    let github = "2024-01-01T00:00:00.0000000Z ##[group]Run npm ci\n\
        2024-01-01T00:00:01.0000000Z npm ERR! code EINTEGRITY (retrying, fine)\n\
        2024-01-01T00:00:02.0000000Z ##[group]Run npm test\n\
        2024-01-01T00:00:03.0000000Z ##[endgroup]\n\
        2024-01-01T00:00:04.0000000Z FAIL src/sum.test.js\n\
        2024-01-01T00:00:05.0000000Z   Expected: 3, Received: 4\n\
        2024-01-01T00:00:06.0000000Z ##[error]Process completed with exit code 1.\n\
        2024-01-01T00:00:07.0000000Z Post job cleanup.\n\
        2024-01-01T00:00:08.0000000Z Error: Unable to upload coverage: fatal: not a git repository\n";
    let ex = extract(github.as_bytes(), &Baseline::default(), &[], 4096);
    assert_eq!(ex.failing_command.as_deref(), Some("npm test"));
    let texts: Vec<String> = ex.lines.iter().map(|l| l.text()).collect();
    assert!(texts.iter().any(|t| t.contains("FAIL src/sum.test.js")), "{texts:?}");
    assert!(!texts.iter().any(|t| t.contains("coverage") || t.contains("EINTEGRITY")), "{texts:?}");
}

/// Runner prefixes of other CIs come off before a line is read: `gh run view --log`'s job and
/// step columns (the step column names the step), GitLab's timestamps and stream tags, Jenkins'
/// bracketed timestamps.
#[test]
fn prefixes_of_other_runners() {
    let gh = "build\tSet up job\t2024-01-01T00:00:00.0000000Z Current runner version: '2.311.0'\n\
        build\tRun cargo test\t2024-01-01T00:00:01.0000000Z error[E0425]: cannot find value `x` in this scope\n\
        build\tRun cargo test\t2024-01-01T00:00:02.0000000Z error: could not compile `demo`\n\
        build\tPost Run actions/checkout@v4\t2024-01-01T00:00:03.0000000Z error: cleanup warning ignored\n";
    let ex = extract(gh.as_bytes(), &Baseline::default(), &[], 4096);
    assert_eq!(ex.failing_command.as_deref(), Some("Run cargo test"));
    assert_eq!(ex.lines.iter().map(|l| l.number).collect::<Vec<_>>(), [2, 3]);
    let gitlab = "2024-01-01T00:00:00.000000Z 00O $ make test\n2024-01-01T00:00:01.000000Z 01E make: *** [test] Error 2\n2024-01-01T00:00:02.000000Z 00O ERROR: Job failed: exit code 2\n";
    let ex = extract(gitlab.as_bytes(), &Baseline::default(), &[], 4096);
    assert_eq!(ex.failing_command.as_deref(), Some("make test"));
    assert_eq!(ex.lines.iter().map(|l| l.number).collect::<Vec<_>>(), [2]);
    let jenkins = "[2024-01-01T00:00:00.000Z] + ./gradlew check\n[2024-01-01T00:00:01.000Z] FAILURE: Build failed with an exception.\n[2024-01-01T00:00:01.500Z] * What went wrong:\n[2024-01-01T00:00:02.000Z] Execution failed for task ':test'.\n[2024-01-01T00:00:03.000Z] Finished: FAILURE\n";
    let ex = extract(jenkins.as_bytes(), &Baseline::default(), &[], 4096);
    assert_eq!(ex.failing_command.as_deref(), Some("./gradlew check"));
    assert!(ex.lines.iter().any(|l| l.text().contains("Execution failed for task ':test'")), "{:?}", ex.lines);
}

/// Logs are attacker-controlled: any mix of bytes and markers (truncated markers, absurd exit
/// codes, a hundred thousand `set -x` steps, broken Semaphore events, lines of escape codes)
/// gives an excerpt within the budget, read the same streamed or whole, and no panic.
#[test]
fn hostile_logs_of_markers_and_bytes() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let pieces: &[&[u8]] = &[
        b"$ ",
        b"+ ",
        b"##[group]Run ",
        b"##[error]Process completed with exit code 99999999999999999999.",
        b"The command \"",
        b"\" exited with -1.",
        b"section_start:1:after_script\r\x1b[0K",
        b"ERROR: Job failed: exit code ",
        b"#!/bin/bash -eo pipefail\n",
        b"--- :x: ",
        b"Exited with code exit status ",
        b"\xf0\x9f\x9a\xa8 Error: The command exited with status ",
        b"{\"event\":\"cmd_output\",\"output\":\"",
        b"{\"event\":\"cmd_finished\",\"exit_code\":1e99}",
        b"error: boom ",
        b"3 errors",
        b"\x1b[31m",
        b"\x1b[",
        b"\r",
        b"\n",
        b"\n\n",
        b"\t",
        b"\xff\xfe",
        b"2024-01-01T00:00:00.000Z 00O+",
        b"[Pipeline] { (",
    ];
    for round in 0..40 {
        let mut log = Vec::new();
        // Some rounds start like a Semaphore event log.
        if round % 5 == 0 {
            log.extend_from_slice(b"{\"event\":\"job_started\"}\n");
        }
        for _ in 0..2000 {
            let p = pieces[(next() % pieces.len() as u64) as usize];
            log.extend_from_slice(p);
            if next() % 3 == 0 {
                log.extend(std::iter::repeat_n(b'a' + (next() % 26) as u8, (next() % 40) as usize));
            }
        }
        let whole = extract(&log, &Baseline::default(), &[], 2048);
        let streamed = extract_reader(Trickle(&log, 61), &Baseline::default(), &[], 2048).unwrap();
        assert!(whole.bytes <= 2048, "round {round}: {} bytes", whole.bytes);
        assert_eq!(
            whole.lines.iter().map(|l| l.number).collect::<Vec<_>>(),
            streamed.lines.iter().map(|l| l.number).collect::<Vec<_>>(),
            "round {round}"
        );
    }
    // A hundred thousand `set -x` steps: steps stop at their cap, the pass stays linear.
    let mut log = Vec::new();
    for i in 0..100_000 {
        log.extend_from_slice(format!("+ echo {i}\n{i}\n").as_bytes());
    }
    log.extend_from_slice(b"+ false\nerror: the last command failed\n");
    let ex = extract(&log, &Baseline::default(), &[], 4096);
    assert!(ex.lines.iter().any(|l| l.text().contains("the last command failed")), "{:?}", ex.lines);
}
