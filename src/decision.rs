//! The packet decision: bytes in, [`Decision`] out.
//!
//! Contract: [`decide`] is a pure function of the compiled table and the
//! queued bytes. No I/O, no allocation, no locks, no logging; every input,
//! however broken, ends in a decision. The rule it implements:
//!
//! * for an address A, the deciding entry is the most specific entry covering
//!   A that lists the packet's destination port/protocol;
//! * accept when the deciding entry of the source or of the destination is a
//!   permit (an identified host sending, or mail to an identified server);
//! * otherwise the packet is unidentified: drop on an `enforce` port, accept
//!   (and report) on a `monitor` port.
//!
//! Packets outside that rule get these policies (the README explains why):
//! * a port or protocol not listed under `ports:` is not ours to judge:
//!   accepted, counted as unjudged;
//! * a fragment other than the first has no ports; the first fragment, which
//!   carries them, was judged: accepted, counted;
//! * bytes we cannot read addresses and ports from: dropped (fail closed),
//!   counted as malformed.

use crate::packet::{self, Addr, Malformed, Packet};
use crate::rules::{Mode, Proto};
use crate::table::{Answer, Slot, Table};

/// Why an unidentified packet was unidentified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unidentified {
    /// No entry covering source or destination lists the port.
    NoEntry,
    /// The deciding entry of the source or the destination is a block
    /// (a carve-out).
    Blocked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Accept {
    /// The source's deciding entry is a permit.
    SourcePermit,
    /// The destination's deciding entry is a permit.
    DestinationPermit,
    /// Unidentified, on a port in `monitor` mode: let through, reported.
    Monitored(Unidentified),
    /// The port/protocol is not listed under `ports:`.
    Unjudged,
    /// A fragment other than the first.
    LaterFragment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Drop {
    /// Unidentified, on a port in `enforce` mode.
    Unidentified(Unidentified),
    /// The bytes could not be read as a packet we can judge.
    Malformed(Malformed),
}

#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    Accept(Accept),
    Drop(Drop),
}

impl Decision {
    pub fn is_accept(self) -> bool {
        matches!(self, Decision::Accept(_))
    }

    /// The packet is unidentified traffic on a judged port: dropped, or let
    /// through in monitor mode. This is what the operator's reports count.
    pub fn unidentified(self) -> Option<Unidentified> {
        match self {
            Decision::Accept(Accept::Monitored(u)) | Decision::Drop(Drop::Unidentified(u)) => {
                Some(u)
            }
            _ => None,
        }
    }
}

/// The decision and what it was made about, for counters and reports.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    /// The parsed packet; `None` when it was malformed.
    pub packet: Option<Packet>,
    /// The judged port's slot; `None` when no judged port was involved.
    pub slot: Option<Slot>,
}

/// Decides one queued packet.
pub fn decide(table: &Table, bytes: &[u8]) -> Verdict {
    let packet = match packet::parse(bytes) {
        Ok(p) => p,
        Err(m) => {
            return Verdict {
                decision: Decision::Drop(Drop::Malformed(m)),
                packet: None,
                slot: None,
            };
        }
    };
    let (decision, slot) = judge_packet(table, &packet);
    Verdict {
        decision,
        packet: Some(packet),
        slot,
    }
}

fn judge_packet(table: &Table, p: &Packet) -> (Decision, Option<Slot>) {
    if p.later_fragment {
        return (Decision::Accept(Accept::LaterFragment), None);
    }
    let judged = p
        .ports
        .zip(Proto::from_number(p.proto))
        .and_then(|(ports, proto)| table.slot(proto, ports.dst));
    match judged {
        None => (Decision::Accept(Accept::Unjudged), None),
        Some(slot) => (judge(table, slot, p.src, p.dst), Some(slot)),
    }
}

/// The decision for a flow on a judged port: the rule itself.
pub fn judge(table: &Table, slot: Slot, src: Addr, dst: Addr) -> Decision {
    let src_answer = table.answer(src, slot);
    if src_answer == Answer::Permit {
        return Decision::Accept(Accept::SourcePermit);
    }
    let dst_answer = table.answer(dst, slot);
    if dst_answer == Answer::Permit {
        return Decision::Accept(Accept::DestinationPermit);
    }
    let why = if src_answer == Answer::Block || dst_answer == Answer::Block {
        Unidentified::Blocked
    } else {
        Unidentified::NoEntry
    };
    unidentified(table.mode(slot), why)
}

/// What a port's mode does with unidentified traffic.
pub fn unidentified(mode: Mode, why: Unidentified) -> Decision {
    match mode {
        Mode::Enforce => Decision::Drop(Drop::Unidentified(why)),
        Mode::Monitor => Decision::Accept(Accept::Monitored(why)),
    }
}
