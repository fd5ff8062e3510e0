//! JUnit XML, in the dialects test tools write (SEMAPHORE.md §4.5): a `<testsuites>` root or a
//! bare `<testsuite>`, nested suites, `<testcase>` with `<failure>`, `<error>`, `<skipped>`,
//! `<system-out>`/`<system-err>`, times in seconds, `file` attributes or none. Streaming (quick-xml):
//! a report of any size is read without building a DOM. Anything that is not XML is an error
//! that says where it went wrong, never a panic.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Passed,
    Failed,
    Error,
    Skipped,
    Disabled,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The assertion text or stack trace.
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Test {
    pub file: String,
    pub classname: String,
    pub name: String,
    /// Nanoseconds.
    pub duration: u64,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    pub system_out: String,
    pub system_err: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: u64,
    pub passed: u64,
    pub skipped: u64,
    pub error: u64,
    pub failed: u64,
    pub disabled: u64,
    /// Nanoseconds.
    pub duration: u64,
}

impl Summary {
    fn add(&mut self, t: &Test) {
        self.total += 1;
        self.duration += t.duration;
        match t.state {
            State::Passed => self.passed += 1,
            State::Failed => self.failed += 1,
            State::Error => self.error += 1,
            State::Skipped => self.skipped += 1,
            State::Disabled => self.disabled += 1,
        }
    }

    pub fn merge(&mut self, o: &Summary) {
        self.total += o.total;
        self.passed += o.passed;
        self.skipped += o.skipped;
        self.error += o.error;
        self.failed += o.failed;
        self.disabled += o.disabled;
        self.duration += o.duration;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suite {
    pub name: String,
    pub timestamp: String,
    pub hostname: String,
    pub package: String,
    pub tests: Vec<Test>,
    pub system_out: String,
    pub system_err: String,
    pub summary: Summary,
}

#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    #[error("not JUnit XML: {message} (at byte {position}); check that the file is the test report and complete")]
    Xml { message: String, position: u64 },
    #[error("not JUnit XML: no <testsuite> or <testsuites> element found")]
    NoSuites,
}

/// Parses a report into its suites (nested suites are flattened, each keeping its own tests).
pub fn parse(xml: &[u8]) -> Result<Vec<Suite>, JunitError> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut buf = Vec::new();
    let mut suites: Vec<Suite> = Vec::new();
    let mut open: Vec<Suite> = Vec::new();
    let mut test: Option<Test> = None;
    // Where text goes: the failure/error of the current test, or a system-out/err.
    let mut sink: Option<Sink> = None;
    let mut text = String::new();
    let mut seen_root = false;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| JunitError::Xml { message: e.to_string(), position: reader.error_position() })?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name();
                match name.as_ref() {
                    b"testsuites" => seen_root = true,
                    b"testsuite" => {
                        seen_root = true;
                        let s = Suite {
                            name: attr(e, "name"),
                            timestamp: attr(e, "timestamp"),
                            hostname: attr(e, "hostname"),
                            package: attr(e, "package"),
                            ..Suite::default()
                        };
                        if empty {
                            suites.push(s);
                        } else {
                            open.push(s);
                        }
                    }
                    b"testcase" => {
                        let t = Test {
                            file: attr(e, "file"),
                            classname: attr(e, "classname"),
                            name: attr(e, "name"),
                            duration: seconds_to_ns(&attr(e, "time")),
                            state: State::Passed,
                            failure: None,
                            error: None,
                            system_out: String::new(),
                            system_err: String::new(),
                        };
                        if empty {
                            push_test(&mut open, &mut suites, t);
                        } else {
                            test = Some(t);
                        }
                    }
                    b"failure" | b"error" | b"skipped" | b"disabled" if test.is_some() => {
                        let which = name.as_ref().to_vec();
                        if let Some(t) = test.as_mut() {
                            let f = Failure { message: attr(e, "message"), kind: attr(e, "type"), body: String::new() };
                            match which.as_slice() {
                                b"failure" => {
                                    t.state = State::Failed;
                                    t.failure = Some(f);
                                    sink = (!empty).then_some(Sink::Failure);
                                }
                                b"error" => {
                                    if t.state != State::Failed {
                                        t.state = State::Error;
                                    }
                                    t.error = Some(f);
                                    sink = (!empty).then_some(Sink::Error);
                                }
                                b"skipped" => t.state = State::Skipped,
                                _ => t.state = State::Disabled,
                            }
                        }
                        text.clear();
                    }
                    b"system-out" | b"system-err" => {
                        sink = (!empty).then_some(if name.as_ref() == b"system-out" { Sink::Out } else { Sink::Err });
                        text.clear();
                    }
                    _ => {}
                }
            }
            Event::Text(t) if sink.is_some() => text.push_str(&String::from_utf8_lossy(&t)),
            Event::CData(t) if sink.is_some() => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) if sink.is_some() => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => match r.as_ref() {
                        b"lt" => Some('<'),
                        b"gt" => Some('>'),
                        b"amp" => Some('&'),
                        b"quot" => Some('"'),
                        b"apos" => Some('\''),
                        _ => None,
                    },
                };
                match resolved {
                    Some(c) => text.push(c),
                    None => {
                        text.push('&');
                        text.push_str(&String::from_utf8_lossy(&r));
                        text.push(';');
                    }
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"testsuite" => {
                    if let Some(s) = open.pop() {
                        suites.push(s);
                    }
                }
                b"testcase" => {
                    if let Some(t) = test.take() {
                        push_test(&mut open, &mut suites, t);
                    }
                }
                b"failure" | b"error" | b"system-out" | b"system-err" => {
                    let body = std::mem::take(&mut text);
                    match sink.take() {
                        Some(Sink::Failure) => {
                            if let Some(f) = test.as_mut().and_then(|t| t.failure.as_mut()) {
                                f.body = body;
                            }
                        }
                        Some(Sink::Error) => {
                            if let Some(f) = test.as_mut().and_then(|t| t.error.as_mut()) {
                                f.body = body;
                            }
                        }
                        Some(Sink::Out) => match test.as_mut() {
                            Some(t) => t.system_out = body,
                            None => {
                                if let Some(s) = open.last_mut() {
                                    s.system_out = body;
                                }
                            }
                        },
                        Some(Sink::Err) => match test.as_mut() {
                            Some(t) => t.system_err = body,
                            None => {
                                if let Some(s) = open.last_mut() {
                                    s.system_err = body;
                                }
                            }
                        },
                        None => {}
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !seen_root {
        return Err(JunitError::NoSuites);
    }
    if let Some(t) = test.take() {
        push_test(&mut open, &mut suites, t);
    }
    suites.extend(open.drain(..).rev());
    for s in &mut suites {
        let mut sum = Summary::default();
        for t in &s.tests {
            sum.add(t);
        }
        s.summary = sum;
    }
    Ok(suites)
}

enum Sink {
    Failure,
    Error,
    Out,
    Err,
}

fn push_test(open: &mut [Suite], suites: &mut Vec<Suite>, t: Test) {
    match open.last_mut() {
        Some(s) => s.tests.push(t),
        None => {
            // A test case outside any suite (some tools): give it one.
            if suites.last().is_none_or(|s| !s.name.is_empty()) {
                suites.push(Suite::default());
            }
            if let Some(s) = suites.last_mut() {
                s.tests.push(t);
            }
        }
    }
}

fn attr(e: &BytesStart<'_>, name: &str) -> String {
    e.try_get_attribute(name)
        .ok()
        .flatten()
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
        .unwrap_or_default()
}

/// `"1.5"` seconds → nanoseconds; also `"1,234.5"` and empty.
fn seconds_to_ns(s: &str) -> u64 {
    let s: String = s.chars().filter(|c| *c != ',').collect();
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map_or(0, |v| (v * 1e9) as u64)
}

/// The tests that failed or errored, for people and agents.
pub fn failing(suites: &[Suite]) -> impl Iterator<Item = (&Suite, &Test)> {
    suites
        .iter()
        .flat_map(|s| s.tests.iter().map(move |t| (s, t)))
        .filter(|(_, t)| matches!(t.state, State::Failed | State::Error))
}
