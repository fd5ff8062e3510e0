//! Semaphore's job logs as text. Semaphore's agent writes a job's log as JSON events, one per
//! line (`{"event":"cmd_started","directive":"make test",…}`, `cmd_output` with the output,
//! `cmd_finished` with the exit code); its API serves them so. [`Events`] turns such a log into
//! the text a person reads, with the markers [`crate::steps`] knows: `$ make test` where a
//! command starts, `The command "make test" exited with 2.` where it ends. Other lines pass
//! through as they are.

use std::io::{self, BufRead, Read};

use serde::Deserialize;

/// A JSON line longer than this is passed through as it is, not decoded.
const MAX_EVENT: usize = 8 << 20;

#[derive(Deserialize)]
struct Event {
    event: String,
    #[serde(default)]
    directive: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    exit_code: Option<i64>,
}

/// Whether a log starts like Semaphore's event stream.
pub fn is_events(head: &[u8]) -> bool {
    let t = head.trim_ascii_start();
    t.starts_with(b"{") && memchr::memmem::find(&t[..t.len().min(200)], b"\"event\":").is_some()
}

/// A reader of the text of a Semaphore event log.
pub struct Events<R> {
    inner: R,
    line: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    /// The text so far ended inside a line.
    open_line: bool,
    done: bool,
}

impl<R: BufRead> Events<R> {
    pub fn new(inner: R) -> Events<R> {
        Events { inner, line: Vec::new(), out: Vec::new(), pos: 0, open_line: false, done: false }
    }

    /// Decodes the next event into `out`.
    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        self.line.clear();
        let n = (&mut self.inner).take(MAX_EVENT as u64).read_until(b'\n', &mut self.line)?;
        if n == 0 {
            if self.open_line {
                self.out.push(b'\n');
                self.open_line = false;
            }
            self.done = true;
            return Ok(());
        }
        let event = serde_json::from_slice::<Event>(self.line.trim_ascii()).ok();
        let text = |s: &[u8], out: &mut Vec<u8>, open: &mut bool| {
            out.extend_from_slice(s);
            if let Some(last) = s.last() {
                *open = *last != b'\n';
            }
        };
        match event {
            Some(e) if e.event == "cmd_output" => {
                text(e.output.unwrap_or_default().as_bytes(), &mut self.out, &mut self.open_line);
            }
            Some(e) if e.event == "cmd_started" => {
                self.end_line();
                let line = format!("$ {}\n", one_line(&e.directive.unwrap_or_default()));
                self.out.extend_from_slice(line.as_bytes());
            }
            Some(e) if e.event == "cmd_finished" => {
                self.end_line();
                let line = format!(
                    "The command \"{}\" exited with {}.\n",
                    one_line(&e.directive.unwrap_or_default()),
                    e.exit_code.unwrap_or(0)
                );
                self.out.extend_from_slice(line.as_bytes());
            }
            Some(_) => {}
            None => {
                self.end_line();
                let raw = std::mem::take(&mut self.line);
                text(&raw, &mut self.out, &mut self.open_line);
                self.line = raw;
            }
        }
        Ok(())
    }

    fn end_line(&mut self) {
        if self.open_line {
            self.out.push(b'\n');
            self.open_line = false;
        }
    }
}

/// A directive on one line (a multi-line command shows its first line).
fn one_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

impl<R: BufRead> Read for Events<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_text_with_step_markers() {
        let log = br#"{"event":"job_started","timestamp":1}
{"event":"cmd_started","timestamp":2,"directive":"make test"}
{"event":"cmd_output","timestamp":3,"output":"cc -c a.c\na.c:3:1: error: expected ';'"}
{"event":"cmd_output","timestamp":3,"output":" before '}' token\n"}
{"event":"cmd_finished","timestamp":4,"directive":"make test","exit_code":2,"started_at":2,"finished_at":4}
{"event":"job_finished","timestamp":5,"result":"failed"}
"#;
        assert!(is_events(log));
        assert!(!is_events(b"$ make\n{\"event\":1}"));
        let mut text = String::new();
        assert!(Events::new(&log[..]).read_to_string(&mut text).is_ok());
        assert_eq!(
            text,
            "$ make test\ncc -c a.c\na.c:3:1: error: expected ';' before '}' token\nThe command \"make test\" exited with 2.\n"
        );
    }
}
