//! `salve triage`: the lines of a failed job's log that explain the failure, within a budget,
//! with the failing tests of its JUnit reports.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use salve_logs::excerpt::{self, Baseline};
use salve_logs::junit;

use crate::err;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// For people: numbered excerpt lines and failing tests.
    Text,
    /// For tools.
    Json,
    /// Only the excerpt lines, verbatim, in log order.
    Lines,
}

#[derive(Args)]
pub struct TriageArgs {
    /// The failed job's log.
    #[arg(long)]
    log: PathBuf,
    /// A log of a passing run of the same job (repeatable): lines seen there are not evidence.
    #[arg(long)]
    baseline: Vec<PathBuf>,
    /// A JUnit XML report of the failed run (repeatable).
    #[arg(long)]
    junit: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// The excerpt's size limit in bytes.
    #[arg(long, default_value_t = 4096)]
    max_bytes: usize,
}

pub fn run(args: &TriageArgs) -> u8 {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let log = match read(&args.log) {
        Ok(b) => b,
        Err(e) => {
            err!("error: {e}");
            return 2;
        }
    };
    let mut baseline = Baseline::default();
    for b in &args.baseline {
        match read(b) {
            Ok(bytes) => baseline.add(&bytes),
            Err(e) => {
                err!("error: {e}");
                return 2;
            }
        }
    }
    let mut tests = Vec::new();
    for j in &args.junit {
        match read(j).map(|b| junit::parse(&b)) {
            Ok(Ok(suites)) => tests.extend(suites),
            Ok(Err(e)) => err!("warning: {}: {e}", j.display()),
            Err(e) => err!("warning: {e}"),
        }
    }
    let all = excerpt::lines(&log);
    let ex = excerpt::extract(&all, &baseline, args.max_bytes);
    let mut out = std::io::stdout().lock();
    let failing: Vec<_> = junit::failing(&tests).collect();
    match args.format {
        Format::Lines => {
            for &n in &ex.lines {
                let _ = out.write_all(all[n - 1].raw);
                let _ = out.write_all(b"\n");
            }
        }
        Format::Text => {
            if ex.lines.is_empty() {
                let _ = writeln!(out, "No evidence of a failure found in {}.", args.log.display());
            } else {
                let _ =
                    writeln!(out, "Excerpt of {} ({} lines, {} bytes):", args.log.display(), ex.lines.len(), ex.bytes);
            }
            let mut prev = 0;
            for &n in &ex.lines {
                if prev != 0 && n != prev + 1 {
                    let _ = writeln!(out, "      ...");
                }
                let _ = writeln!(out, "{n:>6} | {}", excerpt::clean(all[n - 1].raw));
                prev = n;
            }
            if !failing.is_empty() {
                let _ = writeln!(out, "\nFailing tests:");
                for (s, t) in &failing {
                    let f = t.failure.as_ref().or(t.error.as_ref());
                    let _ = writeln!(
                        out,
                        "  {} {}{}: {}",
                        if t.file.is_empty() { &s.name } else { &t.file },
                        if t.classname.is_empty() { String::new() } else { format!("{}.", t.classname) },
                        t.name,
                        f.map_or("", |f| f.message.as_str())
                    );
                }
            }
        }
        Format::Json => {
            let report = salve_logs::report::report(&log, &baseline, &tests, args.max_bytes);
            let mut v = serde_json::to_value(&report).unwrap_or_default();
            v["log"] = serde_json::json!(args.log);
            let _ = writeln!(out, "{v}");
        }
    }
    0
}
