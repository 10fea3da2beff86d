//! Building the permit table and swapping it in, for 100k and 1M permits.
//!
//! * `build/yaml/...`: the permit file's text to a validated ruleset
//!   (`rules::load`: YAML parse and validation), the part that is not the
//!   table's.
//! * `build/compile/...`: ruleset to table (`Table::compile`).
//! * `build/swap/...`: `ArcSwap::store` of a new table over an old one (both
//!   kept alive, so this is the publishing alone; the example times freeing
//!   an old table).
//!
//! Peak memory is not measured here: `examples/build_table.rs` loads a
//! generated file once under `/usr/bin/time -v` (see the README).
//!
//! `cargo bench --bench build`; `PORTGATE_BENCH_SIZES` as for `decision`
//! (default 100k, 1M). Criterion's ten samples of the 1M YAML load take
//! about half a minute.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use portgate::rules;
use portgate::table::Table;

mod common;
use common::Mix;

fn sizes() -> Vec<usize> {
    std::env::var("PORTGATE_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().parse().unwrap()).collect())
        .unwrap_or_else(|| {
            // `cargo test --all-targets` runs each benchmark once, without
            // `--bench` and unoptimised: a small table is enough there.
            if std::env::args().any(|a| a == "--bench") {
                vec![100_000, 1_000_000]
            } else {
                vec![1000]
            }
        })
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("build");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for n in sizes() {
        let mix = Mix::V4Realistic;
        let seed = n as u64 ^ (mix as u64) << 40;
        let prefixes = mix.prefixes(n, seed);
        // The ruleset the loader would return for the generated file (but
        // for positions): the input of the compile step.
        let ruleset = common::ruleset(&prefixes, seed + 1);
        drop(prefixes);
        let id = common::label(n);

        {
            let text = common::yaml(&ruleset);
            let loaded = rules::load(&text, "bench.yaml").expect("the generated file is valid");
            assert_eq!(loaded.ruleset.entries.len(), ruleset.entries.len());
            drop(loaded);
            g.bench_function(BenchmarkId::new("yaml", &id), |b| {
                b.iter(|| black_box(rules::load(black_box(&text), "bench.yaml").is_ok()))
            });
        }
        g.bench_function(BenchmarkId::new("compile", &id), |b| {
            b.iter(|| black_box(Table::compile(black_box(&ruleset))))
        });
        // Two tables stored in turn: the store itself, what a worker can
        // notice. Freeing the old table is the reloading thread's work
        // when no worker still holds it (examples/build_table.rs times it).
        let tables = [
            Arc::new(Table::compile(&ruleset)),
            Arc::new(Table::compile(&ruleset)),
        ];
        let current = ArcSwap::new(Arc::clone(&tables[0]));
        let mut turn = 0;
        g.bench_function(BenchmarkId::new("swap", &id), |b| {
            b.iter(|| {
                turn ^= 1;
                current.store(Arc::clone(&tables[turn]));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
