//! `salve triage`: the lines of a failed job's log that explain the failure, within a budget,
//! with its class, fingerprint and the failing tests of its JUnit reports.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use salve_logs::excerpt::{self, Baseline, CommandSpan};
use salve_logs::junit;
use salve_logs::report::{self, Inputs};

use crate::err;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// For people: class, failing command, numbered excerpt lines and failing tests.
    Text,
    /// For tools: the report as one JSON object.
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

fn open(p: &PathBuf) -> Result<std::fs::File, String> {
    std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

pub fn run(args: &TriageArgs) -> u8 {
    match triage(args) {
        Ok(()) => 0,
        Err(e) => {
            err!("error: {e}");
            2
        }
    }
}

fn triage(args: &TriageArgs) -> Result<(), String> {
    let mut baseline = Baseline::default();
    for b in &args.baseline {
        baseline.add_reader(open(b)?).map_err(|e| format!("cannot read {}: {e}", b.display()))?;
    }
    let mut suites = Vec::new();
    for j in &args.junit {
        match std::fs::read(j).map(|b| junit::parse(&b)) {
            Ok(Ok(s)) => suites.extend(s),
            Ok(Err(e)) => err!("warning: {}: {e}", j.display()),
            Err(e) => err!("warning: cannot read {}: {e}", j.display()),
        }
    }
    // A Salve job folder keeps the runner's per-command records beside the log: they say which
    // command failed.
    let commands: Vec<CommandSpan> = std::fs::read(args.log.with_file_name("commands.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<salve_runner::CommandRecord>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|c| CommandSpan {
            command: c.command,
            first_line: c.first_line,
            end_line: c.end_line,
            exit_code: c.exit_code,
        })
        .collect();
    let ex = excerpt::extract_reader(open(&args.log)?, &baseline, &commands, args.max_bytes)
        .map_err(|e| format!("cannot read {}: {e}", args.log.display()))?;
    let inputs = Inputs { baseline: Some(&baseline), suites: &suites, ..Inputs::default() };
    let report = report::from_excerpt(&ex, &inputs);
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Lines => ex.lines.iter().try_for_each(|l| {
            out.write_all(&l.raw)?;
            out.write_all(b"\n")
        }),
        Format::Json => {
            let mut v = serde_json::to_value(&report).unwrap_or_default();
            v["log"] = serde_json::json!(args.log);
            writeln!(out, "{v}")
        }
        Format::Text => text(&mut out, args, &report),
    };
    // A reader that went away (`| head`) is not an error.
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

fn text(out: &mut impl std::io::Write, args: &TriageArgs, r: &report::Report) -> std::io::Result<()> {
    if r.evidence {
        writeln!(
            out,
            "{}: {} (fingerprint {}); excerpt of {} lines, {} bytes:",
            args.log.display(),
            r.class.as_str().replace('_', " "),
            r.fingerprint,
            r.excerpt.len(),
            r.bytes
        )?;
    } else if r.excerpt.is_empty() {
        writeln!(out, "{}: no evidence of a failure found (the log is empty).", args.log.display())?;
    } else {
        writeln!(out, "{}: no evidence of a failure found; the log ends with:", args.log.display())?;
    }
    if let Some(c) = &r.failing_command {
        writeln!(out, "failing command: {c}")?;
    }
    let mut prev = 0;
    for l in &r.excerpt {
        if prev != 0 && l.line != prev + 1 {
            writeln!(out, "      ...")?;
        }
        writeln!(out, "{:>6} | {}", l.line, l.text)?;
        prev = l.line;
    }
    if !r.failing_tests.is_empty() {
        writeln!(out, "\nFailing tests:")?;
        for t in &r.failing_tests {
            writeln!(
                out,
                "  {} {}{}: {}",
                if t.file.is_empty() { &t.suite } else { &t.file },
                if t.classname.is_empty() { String::new() } else { format!("{}.", t.classname) },
                t.name,
                t.message.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(())
}
