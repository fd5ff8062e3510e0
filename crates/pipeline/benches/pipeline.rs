//! Throughput of the front end: lint + compile of a 300-block pipeline (the schema maximum), and
//! `when` evaluation of the conditions pipelines actually use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use salve_pipeline::{Mode, NoFiles, analyze, when};

/// 300 blocks in a dependency chain with fan-in, each with matrix and parallelism jobs,
/// priorities, skip conditions and env vars.
fn big_pipeline() -> String {
    let mut y = String::from(
        "version: v1.0\nname: Big\nagent:\n  machine:\n    type: e1-standard-2\nglobal_job_config:\n  env_vars:\n    - name: GLOBAL\n      value: \"1\"\n  prologue:\n    commands: [checkout]\n  priority:\n    - value: 70\n      when: \"branch = 'main'\"\nfail_fast:\n  stop:\n    when: \"branch =~ '^release-'\"\npromotions:\n  - name: Heal\n    pipeline_file: selfheal.yml\n    auto_promote:\n      when: \"result = 'failed' AND branch !~ '^selfheal-.*'\"\nblocks:\n",
    );
    for i in 0..300 {
        let deps = match i {
            0 => "[]".to_owned(),
            1 => "[\"B0\"]".to_owned(),
            _ => format!("[\"B{}\", \"B{}\"]", i - 1, i - 2),
        };
        y.push_str(&format!(
            "  - name: B{i}\n    dependencies: {deps}\n    skip:\n      when: \"branch = 'docs-{i}' or tag =~ '^v{i}\\\\.'\"\n    task:\n      env_vars:\n        - name: BLOCK\n          value: \"{i}\"\n      jobs:\n        - name: unit\n          matrix:\n            - env_var: RUBY\n              values: [\"3.1\", \"3.2\", \"3.3\"]\n          commands:\n            - bundle exec rspec\n            - echo done\n        - name: lint\n          parallelism: 2\n          commands:\n            - make lint\n"
        ));
    }
    y
}

fn bench_pipeline(c: &mut Criterion) {
    let text = big_pipeline();
    let params = BTreeMap::new();
    let a = analyze(".semaphore/semaphore.yml", text.as_bytes(), &NoFiles, &params, Mode::Compile);
    assert!(!a.has_errors(), "{:?}", a.diagnostics.iter().find(|d| d.is_error()));
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("lint_300_blocks", |b| {
        b.iter(|| analyze(".semaphore/semaphore.yml", black_box(text.as_bytes()), &NoFiles, &params, Mode::Lint))
    });
    g.bench_function("compile_300_blocks", |b| {
        b.iter(|| analyze(".semaphore/semaphore.yml", black_box(text.as_bytes()), &NoFiles, &params, Mode::Compile))
    });
    g.finish();
}

fn bench_when(c: &mut Criterion) {
    let mut params = when::Params::new();
    for (k, v) in
        [("branch", "main"), ("tag", ""), ("pull_request", ""), ("result", "failed"), ("result_reason", "test")]
    {
        params.insert(k.into(), v.into());
    }
    let exprs = [
        "result = 'failed' AND branch !~ '^selfheal-.*'",
        "branch = 'master' AND (tag =~ 'v1.*' OR result_reason != 'stopped')",
        "(branch = 'main' or branch =~ '^release-') and result = 'passed' and pull_request !~ '.'",
    ];
    let mut g = c.benchmark_group("when");
    g.throughput(Throughput::Elements(exprs.len() as u64));
    g.bench_function("evaluate", |b| {
        b.iter(|| {
            for e in exprs {
                black_box(when::evaluate(black_box(e), &params, &when::NoFunctions, false).unwrap());
            }
        })
    });
    let parsed: Vec<_> = exprs.iter().map(|e| when::parse(e).unwrap()).collect();
    g.bench_function("evaluate_parsed", |b| {
        b.iter(|| {
            for ast in &parsed {
                black_box(when::evaluate_ast(ast, &params, &when::NoFunctions, false).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_pipeline, bench_when);
criterion_main!(benches);
