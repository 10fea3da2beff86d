//! Generates a permit file, or loads one once and reports what building its
//! table costs: time for the YAML part and the compile part, the table's
//! size, and peak memory. Meant to run under `/usr/bin/time -v`:
//!
//! ```sh
//! cargo run --release --example build_table -- generate v4-realistic 1000000 /tmp/1m.yaml
//! /usr/bin/time -v target/release/examples/build_table load /tmp/1m.yaml
//! ```
//!
//! `build_table ipset FILE SET` prints the same file's port-25/tcp entries
//! as an `ipset restore` script for a `hash:net` set, blocks as `nomatch`
//! entries, so that the kernel's filter in the end-to-end harness
//! (`benches/e2e.sh`) judges by the same table: hash:net matches the most
//! specific entry, and a `nomatch` one takes its prefix out.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use portgate::rules;
use portgate::table::Table;

#[path = "../benches/common/mod.rs"]
mod common;
use common::Mix;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["generate", mix, n, path] => {
            let mix = Mix::parse(mix).expect("mix: v4-realistic, v4-harsh or v6");
            let n: usize = n.parse().expect("a number of permits");
            let seed = n as u64 ^ (mix as u64) << 40;
            let rules = common::ruleset(&mix.prefixes(n, seed), seed + 1);
            std::fs::write(path, common::yaml(&rules)).expect("writable path");
        }
        ["load", path] => load(Path::new(path)),
        ["ipset", path, set] => ipset(Path::new(path), set),
        _ => {
            eprintln!(
                "usage: build_table generate MIX N FILE | build_table load FILE | build_table ipset FILE SET"
            );
            std::process::exit(2);
        }
    }
}

fn load(path: &Path) {
    let rss = || common::peak_rss().map_or("?".into(), mib);
    let t = Instant::now();
    let loaded = rules::load_file(path).unwrap_or_else(|e| panic!("{e}"));
    let yaml = t.elapsed();
    let peak_after_yaml = rss();

    let t = Instant::now();
    let table = Table::compile(&loaded.ruleset);
    let compile = t.elapsed();
    let peak_after_compile = rss();

    // The reload's last step: publish the new table over the old one (a
    // table of the same size, which nothing else holds and so is freed
    // inside the store).
    let current = ArcSwap::from_pointee(Table::compile(&loaded.ruleset));
    let next = Arc::new(table);
    let t = Instant::now();
    current.store(Arc::clone(&next));
    let swap = t.elapsed();

    let permits = loaded.ruleset.entries.len();
    let t = Instant::now();
    drop(loaded);
    let drop_rules = t.elapsed();

    let (v4, v6) = next.lpm();
    println!("file           {}", path.display());
    println!("entries        {permits}");
    println!("yaml (load)    {:.0} ms", yaml.as_secs_f64() * 1e3);
    println!("compile        {:.0} ms", compile.as_secs_f64() * 1e3);
    println!("swap (store)   {:.3} ms", swap.as_secs_f64() * 1e3);
    println!("drop ruleset   {:.0} ms", drop_rules.as_secs_f64() * 1e3);
    println!(
        "table          {} ({:.1} bytes per entry); {} ranges, index 2^{} (v4), 2^{} (v6)",
        mib(next.heap_bytes() as u64),
        next.heap_bytes() as f64 / permits as f64,
        v4.ranges() + v6.ranges(),
        v4.index_bits(),
        v6.index_bits(),
    );
    println!("peak RSS       {peak_after_yaml} after yaml, {peak_after_compile} after compile");
}

fn ipset(path: &Path, set: &str) {
    use std::io::Write as _;
    let loaded = rules::load_file(path).unwrap_or_else(|e| panic!("{e}"));
    let entries: Vec<_> = loaded
        .ruleset
        .entries
        .iter()
        .filter(|e| e.prefix.is_ipv4() && e.lists(25, rules::Proto::Tcp))
        .collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let max = entries.len().max(1024).next_power_of_two();
    writeln!(
        out,
        "create {set} hash:net family inet hashsize {max} maxelem {max}"
    )
    .unwrap();
    for e in entries {
        let nomatch = match e.kind {
            rules::EntryKind::Permit => "",
            rules::EntryKind::Block => " nomatch",
        };
        writeln!(out, "add {set} {}{nomatch}", e.prefix).unwrap();
    }
}
