//! The netlink side, both ways.
//!
//! Reading: `portgate::queue::wire::messages` on arbitrary bytes, as if
//! received from the socket, must never panic; every packet it yields lies
//! inside the buffer, and is decided (as the worker would).
//!
//! Writing: the same bytes read as a run of (id gap, verdict) pairs are
//! pushed into `Verdicts`, and the messages it encodes are replayed against
//! a model of the kernel's queue (NFQNL_MSG_VERDICT judges one packet;
//! NFQNL_MSG_VERDICT_BATCH every packet still queued up to its id, in queue
//! order). Every pushed packet must end with exactly its own verdict. Ids
//! may skip, as when the kernel failed to deliver a message (ENOBUFS): it
//! assigns the id, fails the send, and never queues that packet
//! (`__nfqnl_enqueue_packet`), so a skipped id is not in the model's queue.

#![no_main]

use std::collections::{BTreeMap, HashMap};

use libfuzzer_sys::fuzz_target;
use portgate::decision::decide;
use portgate::queue::wire::{self, Message, Verdicts};
use portgate::rules::load;
use portgate::table::Table;

const MSG_VERDICT: u16 = 3 << 8 | 1;
const MSG_VERDICT_BATCH: u16 = 3 << 8 | 3;

fn read(data: &[u8]) {
    static T: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    let table = T.get_or_init(|| {
        Table::compile(
            &load(include_str!("../../rules/example.yaml"), "example.yaml")
                .expect("rules/example.yaml loads")
                .ruleset,
        )
    });
    let range = data.as_ptr_range();
    for m in wire::messages(data).take(10_000) {
        if let Ok(Message::Packet { payload, .. }) = m {
            // (A message without a payload attribute yields an empty one,
            // which may point anywhere.)
            let p = payload.as_ptr_range();
            assert!(payload.is_empty() || (range.start <= p.start && p.end <= range.end));
            let _ = decide(table, payload);
        }
    }
}

/// (message type, queue, verdict, id) of each encoded verdict message.
fn decode(mut out: &[u8]) -> Vec<(u16, u16, u32, u32)> {
    let mut msgs = Vec::new();
    while !out.is_empty() {
        let len = u32::from_ne_bytes(out[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(out[4..6].try_into().unwrap());
        let queue = u16::from_be_bytes(out[18..20].try_into().unwrap());
        // One NFQA_VERDICT_HDR attribute: len 12, type 2, verdict, id.
        assert_eq!(len, 32);
        assert_eq!(&out[20..24], &[12, 0, 2, 0]);
        let verdict = u32::from_be_bytes(out[24..28].try_into().unwrap());
        let id = u32::from_be_bytes(out[28..32].try_into().unwrap());
        msgs.push((kind, queue, verdict, id));
        out = &out[len..];
    }
    msgs
}

fn write(data: &[u8]) {
    let Some((&first, pairs)) = data.split_first() else {
        return;
    };
    let queue = u16::from(first) * 257;
    // Start near the top so ids wrap past u32::MAX.
    let mut id = u32::MAX - u32::from(first);
    // The kernel's queue, in order: id -> verdict (None: not yet given).
    let mut kernel: Vec<(u32, Option<u32>)> = Vec::new();
    let mut ours = BTreeMap::new();
    let mut v = Verdicts::new(queue);
    for pair in pairs.chunks(2).take(512) {
        let gap = pair[0] & 3; // mostly consecutive ids
        id = id.wrapping_add(u32::from(gap));
        let verdict = u32::from(pair.get(1).copied().unwrap_or(0) & 1);
        kernel.push((id, None));
        ours.insert(id, verdict);
        v.push(id, verdict);
        id = id.wrapping_add(1);
    }
    let out = v.finish().to_vec();
    let index: HashMap<u32, usize> = kernel.iter().enumerate().map(|(i, e)| (e.0, i)).collect();
    // Everything before `cursor` has its verdict.
    let mut cursor = 0;
    for (kind, q, verdict, upto) in decode(&out) {
        assert_eq!(q, queue);
        match kind {
            MSG_VERDICT => {
                let e = &mut kernel[*index.get(&upto).expect("a verdict for a queued packet")];
                assert_eq!(e.1, None, "a second verdict for packet {upto}");
                e.1 = Some(verdict);
            }
            MSG_VERDICT_BATCH => {
                // The kernel walks its queue in order and stops at the
                // first packet after `upto` (serial-number comparison).
                for e in kernel[cursor..].iter_mut().filter(|e| e.1.is_none()) {
                    if (e.0.wrapping_sub(upto) as i32) > 0 {
                        break;
                    }
                    e.1 = Some(verdict);
                }
            }
            other => panic!("unexpected message type {other:#x}"),
        }
        while kernel.get(cursor).is_some_and(|e| e.1.is_some()) {
            cursor += 1;
        }
    }
    for (id, got) in kernel {
        assert_eq!(got, ours.get(&id).copied(), "packet {id}");
    }
    v.clear();
    assert!(v.is_empty());
}

fuzz_target!(|data: &[u8]| {
    read(data);
    write(data);
});
