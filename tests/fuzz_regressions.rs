//! What the fuzz targets (`fuzz/`, `bash fuzz/run.sh`) found, replayed in
//! the normal test suite: one test per finding, named after it, with the
//! input the fuzzer produced. And the seed corpus of the `decide` target
//! through its truncation property, so that property is checked on every
//! `cargo test`, without libFuzzer.

use std::fs;

use portgate::decision::{Accept, Decision, Drop, decide};
use portgate::rules::load;
use portgate::table::Table;

fn example_table() -> Table {
    let text = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/example.yaml"))
        .unwrap()
        .replace(
            "  - port: 587\n",
            "  - port: 53\n    proto: udp\n  - port: 587\n",
        );
    Table::compile(&load(&text, "example.yaml").unwrap().ruleset)
}

/// `decide`, on the code before the fix in packet.rs: an IPv4 later
/// fragment (offset 1024, in 8-byte units) whose protocol is 51 (AH) and
/// whose data is no AH header was dropped as a malformed extension header.
/// etherparse parses an AH header after any IPv4 header, also in a later
/// fragment, where the bytes are the middle of the datagram. (The IPv6 form
/// of the same bug: `packet::tests::later_fragment_of_a_packet_with_
/// extension_headers_is_not_malformed`.)
#[test]
fn decide_ipv4_later_fragment_with_protocol_ah() {
    let input = [
        0x45, 0x00, 0x00, 0x2c, 0x10, 0x0c, 0x04, 0x00, 0x40, 0x33, 0x00, 0x00, 192, 0, 2, 50, 203,
        0, 113, 25, 0x06, 0xc8, 0x00, 0x00, 0x66, 0x72, 0x61, 0x67, 0x6d, 0x65, 0x6e, 0x74, 0x20,
        0x64, 0x61, 0x74, 0x61, 0x2e, 0x2e, 0x2e,
    ];
    assert_eq!(
        decide(&example_table(), &input).decision,
        Decision::Accept(Accept::LaterFragment)
    );
}

#[test]
fn decide_seed_corpus_every_truncation() {
    let t = example_table();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/decide");
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let data = fs::read(&path).unwrap();
        let full = decide(&t, &data).decision;
        for cut in 0..data.len() {
            let d = decide(&t, &data[..cut]).decision;
            assert!(
                d == full || matches!(d, Decision::Drop(Drop::Malformed(_))),
                "{}: cut to {cut} bytes: {d:?}, whole: {full:?}",
                path.display()
            );
        }
        n += 1;
    }
    assert!(n > 50, "only {n} seeds in {dir}");
}

/// `rules_fast_path`'s property on its seed corpus and `rules_load`'s, on
/// every `cargo test`: where the YAML fast path takes a permit file, it
/// reads it as saphyr does, and the loader answers the same without it;
/// also on every line-by-line truncation of each seed, which cuts scalars,
/// flow collections and indentation where mutations rarely do.
#[test]
fn rules_fast_path_seed_corpus_agrees_with_saphyr() {
    let mut n = 0;
    for target in ["rules_fast_path", "rules_load"] {
        let dir = format!("{}/fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let text = fs::read_to_string(&path).unwrap();
            let mut taken = false;
            for (cut, _) in text.match_indices('\n').chain([(text.len(), "")]) {
                for end in [cut, (cut + 3).min(text.len())] {
                    let Some(part) = text.get(..end) else {
                        continue;
                    };
                    match portgate::rules::differential::check(part) {
                        Ok(t) => taken |= t,
                        Err(e) => panic!("{}, first {end} bytes: {e}", path.display()),
                    }
                }
            }
            assert!(
                taken,
                "{}: the fast path took no part of it",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 8, "only {n} seeds");
}

/// `rules_fast_path` and `rules_load`, on the fast path as first written:
/// a flow mapping opening at the very end of the text (`key: {` and
/// nothing after) made the fast path read its first key one byte past the
/// text, and panic. (A `{` at the end of any other line read the line
/// break instead and gave up, as it should.)
#[test]
fn rules_fast_path_flow_mapping_open_at_the_end_of_the_text() {
    for text in [
        "porda:\n      si  site:     {",
        "ports:\n  - {port: 25, proto: tcp}\n  - {port: 53, proto: udp, mode: monitor}\nsites:\n  - site: S\n    contacts:\n      site:      {name: A, phone: \"1\", email: a@example.org}\n      t# portDDDDDDDDDrtechnical: {",
        "ports: {",
        "ports: { ",
        "ports: [",
        "ports: [{",
    ] {
        assert_eq!(
            portgate::rules::differential::check(text),
            Ok(false),
            "{text:?}"
        );
        let e = load(text, "fuzz.yaml").unwrap_err();
        assert!(e.to_string().contains("YAML syntax"), "{e}");
    }
}

/// Break-it, on the fast path as first written: on a line with any
/// non-ASCII character, every node's column was counted from the start of
/// the line, so one long flow line took time quadratic in its length (a
/// 2.5 MB one-line site list: 21 s to load). Columns now count on from the
/// previous node; this holds them, on such a line with many nodes, to
/// saphyr's, and the file to the loader's answer.
#[test]
fn rules_fast_path_columns_on_a_long_non_ascii_line() {
    let contact = "{name: Zoë, phone: \"1\", email: a@example.org}";
    let permits: Vec<String> = (0..3000)
        .map(|i| {
            format!(
                "{{ip: 10.0.{}.{}, ports: [25], device: Café relay {i}}}",
                i / 256,
                i % 256
            )
        })
        .collect();
    let text = format!(
        "ports: [{{port: 25}}]\nsites: [{{site: Café, contacts: {{site: {contact}, technical: {contact}, billing: {contact}}}, permits: [{}]}}]\n",
        permits.join(", ")
    );
    assert_eq!(portgate::rules::differential::check(&text), Ok(true));
    let loaded = load(&text, "long.yaml").expect("a valid file");
    assert_eq!(loaded.ruleset.entries.len(), 3000);
}
