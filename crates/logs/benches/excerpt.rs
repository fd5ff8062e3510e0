//! Failure analysis on a generated 200 MB log (long, noisy, a failure in the middle and one near
//! the end): zero-shot, and with five 200 MB baselines, against `grep -c error` on the same file
//! in the same run. `SALVE_BENCH_MB` sets the size. The files stay in `target/bench-logs/` for
//! `scripts/bench_triage.sh`, which measures peak memory.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use salve_logs::excerpt::{Baseline, extract_reader};

/// A small deterministic generator (xorshift), so every run gets the same logs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Writes `mb` MB of build output to `path`; `failing` puts failures at 50% and 97%.
fn generate(path: &Path, mb: u64, seed: u64, failing: bool) {
    let Ok(file) = File::create(path) else { std::process::exit(1) };
    let mut out = BufWriter::new(file);
    let mut r = Rng(seed | 1);
    let total = mb << 20;
    let mut written = 0u64;
    let mut i = 0u64;
    let (mut middle, mut end) = (false, false);
    while written < total {
        let n = r.next();
        let ts = format!("2026-11-24T10:{:02}:{:02}.{:06}Z", (i / 60_000) % 60, (i / 1000) % 60, n % 1_000_000);
        let line = match n % 16 {
            0..=4 => format!(
                "{ts}    Compiling module-{} v0.{}.{} (/home/runner/work/app/crates/m{})\n",
                n % 997,
                n % 9,
                n % 13,
                n % 31
            ),
            5..=8 => format!("{ts} test suite::case_{}::checks_{} ... \x1b[32mok\x1b[0m\n", n % 5003, n % 7),
            9 => {
                format!("{ts} Downloading https://registry.example/pkg-{}/1.{}.tgz ({} kB)\n", n % 211, n % 40, n % 900)
            }
            10 => format!(
                "{ts} [{}/{}] Building CXX object src/CMakeFiles/core.dir/error_handler_{}.cc.o\n",
                n % 400,
                400,
                n % 17
            ),
            11 => {
                // A progress bar redrawn with carriage returns.
                let mut s = String::from(&ts);
                for p in (0..=100).step_by(20) {
                    s.push_str(&format!(" Resolving deltas: {p}% ({}/{})\r", p * 3, 300));
                }
                s.push('\n');
                s
            }
            12 => format!("{ts} warning: unused variable `x{}` (0 errors, 1 warning)\n", n % 50),
            13 => format!("{ts} {}\n", "=".repeat((n % 80) as usize)),
            _ => format!("{ts} INFO request id={:016x} handled in {}ms status=200\n", n, n % 300),
        };
        out.write_all(line.as_bytes()).unwrap_or_else(|_| std::process::exit(1));
        written += line.len() as u64;
        i += 1;
        if failing && !middle && written > total / 2 {
            middle = true;
            let text = format!(
                "{ts} test suite::flaky::reconnects ... FAILED\n{ts} thread 'suite::flaky::reconnects' panicked at tests/net.rs:88:9:\n{ts} assertion `left == right` failed\n{ts}   left: 3\n{ts}  right: 4\n"
            );
            written += text.len() as u64;
            out.write_all(text.as_bytes()).unwrap_or_else(|_| std::process::exit(1));
        }
        if failing && !end && written > total / 100 * 97 {
            end = true;
            let text = format!(
                "{ts} error[E0308]: mismatched types\n{ts}  --> src/lib.rs:42:5\n{ts}   |\n{ts} 42 |     count\n{ts}   |     ^^^^^ expected `u32`, found `usize`\n{ts} error: could not compile `app` (lib) due to 1 previous error\n"
            );
            written += text.len() as u64;
            out.write_all(text.as_bytes()).unwrap_or_else(|_| std::process::exit(1));
        }
    }
    out.flush().unwrap_or_else(|_| std::process::exit(1));
}

fn files() -> (PathBuf, Vec<PathBuf>, u64) {
    let mb = std::env::var("SALVE_BENCH_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(200u64);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-logs");
    let _ = std::fs::create_dir_all(&dir);
    let log = dir.join(format!("failed-{mb}.log"));
    if !log.exists() {
        generate(&log, mb, 7, true);
    }
    let baselines: Vec<PathBuf> = (1..=5)
        .map(|k| {
            let p = dir.join(format!("passed-{mb}-{k}.log"));
            if !p.exists() {
                generate(&p, mb, 100 + k, false);
            }
            p
        })
        .collect();
    let size = std::fs::metadata(&log).map_or(0, |m| m.len());
    (log, baselines, size)
}

fn open(p: &Path) -> File {
    File::open(p).unwrap_or_else(|_| std::process::exit(1))
}

fn bench(c: &mut Criterion) {
    let (log, baselines, size) = files();
    // The reference: grep counting matching lines of the same file, best of three.
    let grep = (0..3)
        .map(|_| {
            let t = Instant::now();
            let _ = std::process::Command::new("grep").args(["-c", "error"]).arg(&log).output();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    println!("reference: grep -c error on the same {} MB file: {:.0} MB/s", size >> 20, size as f64 / 1e6 / grep);

    let mut g = c.benchmark_group("failure analysis");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(size));
    let empty = Baseline::default();
    g.bench_function("zero-shot", |b| {
        b.iter(|| black_box(extract_reader(open(&log), &empty, &[], 4096).map(|e| e.lines.len())))
    });
    let mut five = Baseline::default();
    let t = Instant::now();
    for p in &baselines {
        let _ = five.add_reader(open(p));
    }
    let loading = t.elapsed().as_secs_f64();
    println!(
        "five {} MB baselines loaded in {loading:.2} s ({:.0} MB/s), {} distinct line shapes",
        size >> 20,
        5.0 * size as f64 / 1e6 / loading,
        five.len()
    );
    g.bench_function("with five baselines loaded", |b| {
        b.iter(|| black_box(extract_reader(open(&log), &five, &[], 4096).map(|e| e.lines.len())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
