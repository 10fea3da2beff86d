//! `portgate explain`: how the rules judge an address on a port, and why.
//!
//! The verdict comes from the compiled table — the same answer a worker
//! would give — and the entry named comes from the reference scan over the
//! rules, so an explanation can never disagree with the firewall silently:
//! [`explain`] checks that both name the same answer.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::decision::{self, Accept, Decision, Drop, Unidentified};
use crate::packet::Addr;
use crate::rules::{Entry, EntryKind, Mode, Proto, Ruleset};
use crate::table::{Answer, Table};

/// The explanation of one address/port/protocol.
#[derive(Debug, Clone)]
pub struct Explanation<'r> {
    pub address: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// `None` when the port is not judged.
    pub decision: Option<Decision>,
    pub mode: Option<Mode>,
    /// The deciding entry for the address, if any entry covers it.
    pub entry: Option<&'r Entry>,
}

/// Judges `address` on `port`/`proto` by its own deciding entry.
pub fn explain<'r>(
    rules: &'r Ruleset,
    table: &Table,
    address: IpAddr,
    port: u16,
    proto: Proto,
) -> Explanation<'r> {
    let entry = rules.deciding_entry(address, port, proto);
    let Some(slot) = table.slot(proto, port) else {
        return Explanation {
            address,
            port,
            proto,
            decision: None,
            mode: None,
            entry,
        };
    };
    let addr = Addr::from(address);
    // The rule is symmetric: a permitted address passes as source or as
    // destination. Judged alone, the address passes only on its own entry.
    let table_answer = table.answer(addr, slot);
    let decision = match table_answer {
        Answer::Permit => Decision::Accept(Accept::SourcePermit),
        Answer::Block => decision::unidentified(table.mode(slot), Unidentified::Blocked),
        Answer::None => decision::unidentified(table.mode(slot), Unidentified::NoEntry),
    };
    let model_answer = match entry {
        None => Answer::None,
        Some(e) if e.kind == EntryKind::Permit => Answer::Permit,
        Some(_) => Answer::Block,
    };
    assert_eq!(
        table_answer, model_answer,
        "compiled table and rules disagree on {address} port {port}/{proto}: please report this bug"
    );
    Explanation {
        address,
        port,
        proto,
        decision: Some(decision),
        mode: Some(table.mode(slot)),
        entry,
    }
}

impl Explanation<'_> {
    /// The first word: `ACCEPT` or `DROP`.
    pub fn verdict_word(&self) -> &'static str {
        match self.decision {
            Some(Decision::Drop(_)) => "DROP",
            _ => "ACCEPT",
        }
    }

    /// Human-readable, first word ACCEPT or DROP; `file` names the rules file
    /// in positions.
    pub fn render(&self, rules: &Ruleset, file: &str) -> String {
        let mut s = format!(
            "{} {} port {}/{}",
            self.verdict_word(),
            self.address,
            self.port,
            self.proto
        );
        match (self.decision, self.mode) {
            (None, _) => {
                s.push_str(": not judged (the port is not listed under `ports:`)");
            }
            (Some(Decision::Accept(Accept::SourcePermit)), _) => s.push_str(": identified"),
            (Some(Decision::Accept(Accept::Monitored(_))), _) => {
                s.push_str(": unidentified, let through because the port is in monitor mode")
            }
            (Some(Decision::Drop(Drop::Unidentified(Unidentified::Blocked))), _) => {
                s.push_str(": blocked")
            }
            (Some(_), _) => s.push_str(
                ": unidentified (its connections pass only to or from an identified address)",
            ),
        }
        s.push('\n');
        if let IpAddr::V6(v6) = self.address
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            let _ = writeln!(
                s,
                "  note: an IPv4-mapped IPv6 address is judged as IPv6, never by IPv4 entries; \
                     for the IPv4 host ask about {v4}"
            );
        }
        match self.entry {
            None => {
                let _ = writeln!(
                    s,
                    "  no entry covers {} for port {}/{}",
                    self.address, self.port, self.proto
                );
            }
            Some(e) => {
                let site = &rules.sites[e.site];
                let _ = writeln!(
                    s,
                    "  decided by {} {} (ports {}) at {file}:{}",
                    e.kind.as_str(),
                    e.prefix,
                    e.ports
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    e.pos
                );
                let _ = writeln!(s, "  site: {}", site.name);
                if let Some(d) = &e.device {
                    let _ = writeln!(s, "  device: {d}");
                }
                if let Some(d) = &e.domain {
                    let _ = writeln!(s, "  domain: {d}");
                }
                if let Some(r) = &e.reason {
                    let _ = writeln!(s, "  reason: {r}");
                }
                for (role, c) in [
                    ("site contact", &site.contacts.site),
                    ("technical contact", &site.contacts.technical),
                ] {
                    let _ = writeln!(s, "  {role}: {}, {}, {}", c.name, c.phone, c.email);
                }
            }
        }
        s
    }
}
