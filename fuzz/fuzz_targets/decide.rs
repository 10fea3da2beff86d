//! The packet decision on arbitrary bytes, as the queue hands them over:
//! every copy-range truncation of the input (the kernel copies the first
//! 256 bytes, or fewer when the packet is shorter), against a fixed table
//! compiled from `rules/example.yaml` plus a judged UDP port.
//!
//! Beyond "never panics", two properties:
//! * cutting bytes off the end never changes a verdict into another one: a
//!   prefix gets the whole input's decision, or is dropped as malformed
//!   (what the copy range hides can only make a packet unreadable);
//! * a later fragment is a later fragment, whatever follows its header: an
//!   IPv4 header with a nonzero offset, or an IPv6 header followed directly
//!   by a fragment header with a nonzero offset, is accepted as one (or,
//!   TCP at 8 bytes, dropped as overlapping);
//! * the worker's way, every cut decided together in one batch
//!   (`decide_batch`, from either family's hook), gives each the verdict
//!   `decide_queued` gives it alone.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portgate::decision::{
    Accept, Decision, Drop, Queued, UNDECIDED, decide, decide_batch, decide_queued,
};
use portgate::packet::Malformed;
use portgate::rules::load;
use portgate::table::Table;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let text = include_str!("../../rules/example.yaml").replace(
            "  - port: 587\n",
            "  - port: 53\n    proto: udp\n  - port: 587\n",
        );
        let loaded = load(&text, "example.yaml").expect("rules/example.yaml loads");
        Table::compile(&loaded.ruleset)
    })
}

/// The fragment offset the headers plainly state, where no parsing can
/// disagree: IPv4 with a sane IHL and total length, or IPv6 whose first
/// header is a fragment header inside the payload length.
fn plain_later_fragment(b: &[u8]) -> Option<(u16, u8)> {
    match b.first()? >> 4 {
        4 => {
            let ihl = usize::from(b[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
            if ihl < 20 || b.len() < ihl || total < ihl {
                return None;
            }
            let offset = u16::from_be_bytes([b[6], b[7]]) & 0x1fff;
            (offset != 0).then_some((offset, b[9]))
        }
        6 => {
            let payload = usize::from(u16::from_be_bytes([*b.get(4)?, *b.get(5)?]));
            if *b.get(6)? != 44 || b.len() < 48 || payload < 8 {
                return None;
            }
            let offset = u16::from_be_bytes([b[42], b[43]]) >> 3;
            (offset != 0).then_some((offset, b[40]))
        }
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let t = table();
    let full = decide(t, data).decision;
    if let Some((offset, proto)) = plain_later_fragment(data) {
        let want = if offset == 1 && proto == 6 {
            Decision::Drop(Drop::Malformed(Malformed::OverlappingFragment))
        } else {
            Decision::Accept(Accept::LaterFragment)
        };
        assert_eq!(
            full, want,
            "a later fragment (offset {offset}, protocol {proto})"
        );
    }
    for n in 0..data.len() {
        let cut = decide(t, &data[..n]).decision;
        assert!(
            cut == full || matches!(cut, Decision::Drop(Drop::Malformed(_))),
            "cut to {n} bytes: {cut:?}, whole: {full:?}"
        );
    }
    let queued: Vec<_> = (0..=data.len())
        .map(|n| Queued {
            bytes: &data[..n],
            ethertype: if n % 2 == 0 { 0x0800 } else { 0x86dd },
        })
        .collect();
    let mut out = vec![UNDECIDED; queued.len()];
    decide_batch(t, &queued, &mut out);
    for (q, got) in queued.iter().zip(&out) {
        let want = decide_queued(t, q.bytes, q.ethertype);
        assert_eq!(
            *got,
            want,
            "{} bytes from hook {:#x}",
            q.bytes.len(),
            q.ethertype
        );
    }
});
