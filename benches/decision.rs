//! The decision path on the pure core: queued bytes in, a decision out.
//!
//! For each table (mix and size), in one run:
//! * `decision/...`: parse a queued TCP SYN, look up source and
//!   destination, decide. `portgate` is [`decision::decide`], one packet
//!   at a time; `portgate-batch` is [`decision::decide_batch`] on batches
//!   of 64, as the worker decides what one receive batch gathered (time
//!   per packet); `ip_network_table` and `dir-24-8` are the one-at-a-time
//!   path with the rows looked up in those structures instead
//!   (`common::decide_with`).
//! * `lookup/...`: one longest-prefix lookup of an address inside the
//!   table, per structure.
//!
//! One iteration is one packet (or one lookup), taken in turn from a set of
//! 16384 made in advance, so criterion's time per iteration is the time per
//! packet. Consecutive packets are independent, so the processor overlaps
//! them as it would a batch of queued packets.
//!
//! `cargo bench --bench decision`; `PORTGATE_BENCH_SIZES=1000,100000`
//! narrows the sizes (default 1k, 100k, 1M).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use portgate::decision;
use portgate::packet::Addr;
use portgate::table::Table;

mod common;
use common::{Dir248, Mix};

const PACKETS: usize = 16384;
/// Packets the worker takes from its queue at most per receive batch
/// (`daemon::worker`'s `BATCH`).
const BATCH: usize = 64;

fn sizes() -> Vec<usize> {
    std::env::var("PORTGATE_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().parse().unwrap()).collect())
        .unwrap_or_else(|| {
            // `cargo test --all-targets` runs each benchmark once, without
            // `--bench` and unoptimised: a small table is enough there.
            if std::env::args().any(|a| a == "--bench") {
                vec![1000, 100_000, 1_000_000]
            } else {
                vec![1000]
            }
        })
}

/// Runs `f` on item `i` of `items`, `i` stepping through them in turn.
fn cycle<T>(items: &[T], mut f: impl FnMut(&T)) -> impl FnMut() {
    let mut i = 0;
    move || {
        i = (i + 1) & (items.len() - 1);
        f(&items[i]);
    }
}

fn bench_mix(c: &mut Criterion, mix: Mix, sizes: &[usize]) {
    for &n in sizes {
        let seed = n as u64 ^ (mix as u64) << 40;
        let prefixes = mix.prefixes(n, seed);
        let rules = common::ruleset(&prefixes, seed + 1);
        let (table, rows) = Table::compile_with_prefix_rows(&rules);
        drop(rules);
        let trie = common::trie(&rows);
        let dir = (mix != Mix::V6).then(|| Dir248::build(&rows));
        drop(rows);

        let packets = common::packets(&prefixes, PACKETS, seed + 2);
        let addrs = common::addresses(&prefixes, PACKETS, seed + 3);
        drop(prefixes);
        // The harness is only worth its numbers if every structure decides
        // alike.
        let mut both = 0;
        for p in &packets {
            let want = decision::decide(&table, p).decision;
            assert_eq!(
                common::decide_with(&table, p, |a| common::trie_row(&trie, a)),
                want
            );
            if let Some(dir) = &dir {
                assert_eq!(common::decide_with(&table, p, |a| dir.row(a)), want);
            }
            both += usize::from(want != decision::Decision::Accept(decision::Accept::SourcePermit));
        }
        let queued: Vec<_> = packets
            .iter()
            .map(|p| decision::Queued {
                bytes: p,
                ethertype: if mix == Mix::V6 { 0x86dd } else { 0x0800 },
            })
            .collect();
        let mut all = vec![decision::UNDECIDED; queued.len()];
        decision::decide_batch(&table, &queued, &mut all);
        for (p, v) in packets.iter().zip(&all) {
            assert_eq!(*v, decision::decide(&table, p));
        }
        drop(all);
        let (v4, v6) = table.lpm();
        eprintln!(
            "{} {}: {} distinct prefixes, {} ranges, index 2^{}, table {} bytes ({:.1} per prefix), \
             dir-24-8 {} bytes; {:.1}% of packets look up both addresses",
            mix.name(),
            common::label(n),
            v4.prefixes() + v6.prefixes(),
            v4.ranges() + v6.ranges(),
            v4.index_bits().max(v6.index_bits()),
            table.heap_bytes(),
            table.heap_bytes() as f64 / n as f64,
            dir.as_ref().map_or(0, Dir248::heap_bytes),
            100.0 * both as f64 / packets.len() as f64,
        );

        let id = |s: &str| BenchmarkId::new(s, common::label(n));
        let mut g = c.benchmark_group(format!("decision/{}", mix.name()));
        g.bench_function(id("parse-only"), |b| {
            b.iter(cycle(&packets, |p| {
                let _ = black_box(portgate::packet::parse(black_box(p)));
            }))
        });
        g.bench_function(id("portgate"), |b| {
            b.iter(cycle(&packets, |p| {
                let _ = black_box(decision::decide(&table, black_box(p)));
            }))
        });
        // The worker's way: a batch as one receive gathers it, decided
        // together. Time per packet, over whole batches.
        g.bench_function(id("portgate-batch"), |b| {
            let mut out = [decision::UNDECIDED; BATCH];
            let mut next = 0;
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut left = iters as usize;
                while left > 0 {
                    let n = left.min(BATCH);
                    let batch = &queued[next..next + n];
                    decision::decide_batch(&table, black_box(batch), &mut out[..n]);
                    black_box(&out);
                    next = (next + BATCH) & (PACKETS - 1);
                    left -= n;
                }
                start.elapsed()
            })
        });
        g.bench_function(id("ip_network_table"), |b| {
            b.iter(cycle(&packets, |p| {
                let _ = black_box(common::decide_with(&table, black_box(p), |a| {
                    common::trie_row(&trie, a)
                }));
            }))
        });
        if let Some(dir) = &dir {
            g.bench_function(id("dir-24-8"), |b| {
                b.iter(cycle(&packets, |p| {
                    let _ = black_box(common::decide_with(&table, black_box(p), |a| dir.row(a)));
                }))
            });
        }
        g.finish();

        let mut g = c.benchmark_group(format!("lookup/{}", mix.name()));
        g.bench_function(id("portgate"), |b| {
            b.iter(cycle(&addrs, |&a| {
                black_box(table.row_of(black_box(a)));
            }))
        });
        g.bench_function(id("ip_network_table"), |b| {
            b.iter(cycle(&addrs, |&a| {
                black_box(common::trie_row(&trie, black_box(a)));
            }))
        });
        if let Some(dir) = &dir {
            g.bench_function(id("dir-24-8"), |b| {
                b.iter(cycle(&addrs, |&a| {
                    let Addr::V4(a) = black_box(a) else {
                        unreachable!()
                    };
                    black_box(dir.lookup(a));
                }))
            });
        }
        g.finish();
    }
}

fn decision_path(c: &mut Criterion) {
    let sizes = sizes();
    bench_mix(c, Mix::V4Realistic, &sizes);
    bench_mix(c, Mix::V4Harsh, &sizes);
    // IPv6 at one size: the largest asked for up to 100k (100k by default).
    let v6 = sizes.iter().copied().filter(|&n| n <= 100_000).max();
    bench_mix(c, Mix::V6, v6.as_slice());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = decision_path
}
criterion_main!(benches);
