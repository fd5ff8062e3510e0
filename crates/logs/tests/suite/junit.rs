//! JUnit reports as real tools write them.

use pretty_assertions::assert_eq;
use salve_logs::junit::{self, State};

fn failing_names(xml: &str) -> Vec<(String, String, String)> {
    let suites = junit::parse(xml.as_bytes()).unwrap();
    junit::failing(&suites)
        .map(|(_, t)| {
            let f = t.failure.as_ref().or(t.error.as_ref()).unwrap();
            (t.name.clone(), f.message.clone(), f.body.trim().to_owned())
        })
        .collect()
}

#[test]
fn pytest() {
    let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3" time="0.05" timestamp="2026-11-24T08:00:00" hostname="ci"><testcase classname="tests.test_math" name="test_add" file="tests/test_math.py" line="3" time="0.001" /><testcase classname="tests.test_math" name="test_div" file="tests/test_math.py" line="7" time="0.002"><failure message="assert 2 == 3&#10; +  where 2 = div(6, 3)">def test_div():
&gt;       assert div(6, 3) == 3
E       assert 2 == 3

tests/test_math.py:8: AssertionError</failure></testcase><testcase classname="tests.test_math" name="test_skip" time="0"><skipped type="pytest.skip" message="not today" /></testcase></testsuite></testsuites>"#;
    let suites = junit::parse(xml.as_bytes()).unwrap();
    assert_eq!(suites.len(), 1);
    let s = &suites[0];
    assert_eq!((s.summary.total, s.summary.passed, s.summary.failed, s.summary.skipped), (3, 1, 1, 1));
    let t = &s.tests[1];
    assert_eq!((t.file.as_str(), t.state, t.duration), ("tests/test_math.py", State::Failed, 2_000_000));
    let f = t.failure.as_ref().unwrap();
    assert_eq!(f.message, "assert 2 == 3\n +  where 2 = div(6, 3)");
    assert!(f.body.contains(">       assert div(6, 3) == 3\nE       assert 2 == 3"), "{}", f.body);
}

#[test]
fn go_junit_report_rspec_mocha_and_nested_phpunit() {
    let go = r#"<testsuites><testsuite tests="2" failures="1" time="0.010" name="example.com/calc"><properties><property name="go.version" value="go1.22"></property></properties><testcase classname="calc" name="TestAdd" time="0.000"></testcase><testcase classname="calc" name="TestSub" time="0.000"><failure message="Failed" type="">calc_test.go:12: got 1, want 2</failure></testcase></testsuite></testsuites>"#;
    assert_eq!(failing_names(go), [("TestSub".into(), "Failed".into(), "calc_test.go:12: got 1, want 2".into())]);

    let rspec = r#"<?xml version="1.0"?><testsuite name="rspec" tests="1" failures="1" errors="0"><testcase classname="spec.user_spec" name="User validates email" file="./spec/user_spec.rb" time="0.01"><failure message="expected true" type="RSpec::Expectations::ExpectationNotMetError"><![CDATA[Failure/Error: expect(user).to be_valid
  expected true got false
# ./spec/user_spec.rb:5]]></failure></testcase></testsuite>"#;
    let got = failing_names(rspec);
    assert_eq!(got[0].0, "User validates email");
    assert!(got[0].2.starts_with("Failure/Error: expect(user).to be_valid"));

    let mocha = r#"<testsuites name="Mocha Tests" tests="2" failures="1"><testsuite name="Root Suite" tests="0"></testsuite><testsuite name="Array" timestamp="2026-11-24T08:00:00" tests="2" file="test/array.js" failures="1"><testcase name="Array #indexOf() returns -1" time="0.001" classname="returns -1"></testcase><testcase name="Array #push() adds" time="0.000" classname="adds"><failure message="expected 1 to equal 2" type="AssertionError"><![CDATA[AssertionError: expected 1 to equal 2
    at Context.<anonymous> (test/array.js:9:14)]]></failure></testcase></testsuite></testsuites>"#;
    assert_eq!(failing_names(mocha).len(), 1);

    let phpunit = r#"<testsuites><testsuite name="All" tests="2" errors="1"><testsuite name="Tests\UserTest" file="/app/tests/UserTest.php" tests="2"><testcase name="testName" class="Tests\UserTest" file="/app/tests/UserTest.php" line="10" time="0.002"/><testcase name="testBoom" file="/app/tests/UserTest.php" time="0.001"><error type="Error">Tests\UserTest::testBoom
Error: Call to undefined function boom()
/app/tests/UserTest.php:15</error></testcase></testsuite></testsuite></testsuites>"#;
    let suites = junit::parse(phpunit.as_bytes()).unwrap();
    let names: Vec<&str> = suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Tests\\UserTest", "All"]);
    assert_eq!(suites[0].summary.error, 1);
    assert_eq!(failing_names(phpunit)[0].0, "testBoom");
}

#[test]
fn not_xml_is_an_answer_not_a_panic() {
    for bad in [
        &b""[..],
        b"hello",
        b"<testsuite><testcase name=\"x\"><failure>unterminated",
        b"\xff\xfe\x00<<>>",
        b"<html><body>502</body></html>",
    ] {
        match junit::parse(bad) {
            Ok(suites) => assert!(junit::failing(&suites).count() <= 1),
            Err(e) => assert!(e.to_string().contains("not JUnit XML"), "{e}"),
        }
    }
    assert!(junit::parse(b"<html/>").is_err());
}
