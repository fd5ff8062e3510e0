//! Log ingestion: job output through the marker splitter, the masker and the log writer to
//! disk, as the runner's reader thread does it. Throughput in bytes of job output.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use salve_runner::log::LogWriter;
use salve_runner::mask::Masker;
use salve_runner::script::{MarkerSplitter, Piece};

/// 32 MiB of build-log-like lines (varied lengths, ANSI colour, a secret now and then).
fn sample() -> Vec<u8> {
    let mut out = Vec::with_capacity(32 << 20);
    let mut i = 0u64;
    while out.len() < 32 << 20 {
        let line = match i % 5 {
            0 => format!("   Compiling crate-{i} v0.{}.{} (/home/semaphore/app/crates/c{i})\n", i % 9, i % 13),
            1 => format!("test tests::case_{i} ... \x1b[32mok\x1b[0m\n"),
            2 => format!("[{:>6}ms] GET /api/v1/items/{i} 200 token=tok-0123456789abcdef\n", i % 1000),
            3 => "warning: unused variable: `x`\n  --> src/lib.rs:10:9\n".to_owned(),
            _ => format!("{}\n", "x".repeat((i % 120) as usize)),
        };
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

fn ingest(data: &[u8], secrets: &[&str]) -> u64 {
    let dir = tempfile::tempdir().unwrap_or_else(|_| std::process::exit(1));
    let Ok(mut log) = LogWriter::create(dir.path(), Masker::new(secrets)) else { std::process::exit(1) };
    let mut splitter = MarkerSplitter::new("0123456789abcdef0123456789abcdef");
    for chunk in data.chunks(64 * 1024) {
        splitter.feed(chunk, &mut |piece| {
            if let Piece::Output(bytes) = piece {
                let _ = log.write(bytes);
            }
        });
    }
    log.finish().map_or(0, |(lines, _)| lines)
}

fn bench(c: &mut Criterion) {
    let data = sample();
    let mut g = c.benchmark_group("log ingestion");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("no secrets", |b| b.iter(|| black_box(ingest(&data, &[]))));
    g.bench_function("3 secrets masked", |b| {
        b.iter(|| black_box(ingest(&data, &["tok-0123456789abcdef", "hunter2-password", "AKIAXXXXXXXXXXXXXXXX"])))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
