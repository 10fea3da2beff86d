//! `portgate explain`: how the rules judge an address on a port, and why.
//!
//! The verdict comes from the compiled table — the same answer a worker
//! would give — and the entry named comes from the reference scan over the
//! rules, so an explanation can never disagree with the firewall silently:
//! [`explain`] checks that both name the same answer.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::control::proto::{ExplainAnswer, ExplainContacts, ExplainEntry, ExplainReply};
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
    /// The deciding entry for the address: `None` when no entry covers it,
    /// and when the port is not judged (entries decide judged ports only,
    /// even one that lists the port).
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
    let Some(slot) = table.slot(proto, port) else {
        return Explanation {
            address,
            port,
            proto,
            decision: None,
            mode: None,
            entry: None,
        };
    };
    let entry = rules.deciding_entry(address, port, proto);
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

    /// What the rules say of the address, before the port's mode.
    pub fn answer(&self) -> ExplainAnswer {
        match self.decision.map(Decision::unidentified) {
            None => ExplainAnswer::NotJudged,
            Some(None) => ExplainAnswer::Identified,
            Some(Some(Unidentified::Blocked)) => ExplainAnswer::Blocked,
            Some(Some(Unidentified::NoEntry)) => ExplainAnswer::Unidentified,
        }
    }

    /// The answer for `explain --json` and the control socket: the text as
    /// [`Self::render`] gives it, and the same facts as fields.
    pub fn reply(&self, rules: &Ruleset, file: &str, generation: u64) -> ExplainReply {
        ExplainReply {
            verdict: self.verdict_word().into(),
            text: self.render(rules, file),
            generation,
            address: self.address,
            port: self.port,
            proto: self.proto,
            judged: self.decision.is_some(),
            mode: self.mode,
            answer: self.answer(),
            entry: self.entry.map(|e| {
                let site = &rules.sites[e.site];
                ExplainEntry {
                    kind: e.kind,
                    site: site.name.clone(),
                    prefix: e.prefix.to_string(),
                    ports: e.ports.iter().map(ToString::to_string).collect(),
                    file: file.to_owned(),
                    line: e.pos.line,
                    column: e.pos.column,
                    device: e.device.clone(),
                    domain: e.domain.clone(),
                    reason: e.reason.clone(),
                    contacts: ExplainContacts {
                        site: site.contacts.site.clone(),
                        technical: site.contacts.technical.clone(),
                    },
                }
            }),
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
            // Nothing decides a port that is not judged.
            None if self.decision.is_none() => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Port 25/tcp judged; the entries also list 25 for udp (a bare `25`)
    /// and 80/tcp, neither of which is judged.
    const RULES: &str = "\
ports:
  - port: 25
sites:
  - site: S
    contacts:
      site: {name: A, phone: '1', email: a@example.org}
      technical: {name: B, phone: '2', email: b@example.org}
      billing: {name: C, phone: '3', email: c@example.org}
    permits:
      - {ip: 192.0.2.0/24, ports: [25, 80/tcp], device: D}
    blocks:
      - {ip: 192.0.2.13, ports: [25], reason: R}
";

    fn explained(address: &str, port: u16, proto: Proto) -> (Option<Decision>, bool, String) {
        let loaded = crate::rules::load(RULES, "r.yaml").unwrap();
        let table = Table::compile(&loaded.ruleset);
        let ex = explain(
            &loaded.ruleset,
            &table,
            address.parse().unwrap(),
            port,
            proto,
        );
        let text = ex.render(&loaded.ruleset, "r.yaml");
        (ex.decision, ex.entry.is_some(), text)
    }

    #[test]
    fn a_port_not_judged_is_decided_by_no_entry() {
        // 25/udp: the block and the permit list a bare 25, but the gate
        // does not judge udp on 25, so neither decides anything.
        for (address, port, proto) in [
            ("192.0.2.13", 25, Proto::Udp),
            ("192.0.2.10", 25, Proto::Udp),
            ("192.0.2.10", 80, Proto::Tcp),
            ("198.51.100.1", 80, Proto::Tcp),
        ] {
            let (decision, entry, text) = explained(address, port, proto);
            assert_eq!(decision, None, "{text}");
            assert!(!entry, "{text}");
            assert_eq!(
                text,
                format!(
                    "ACCEPT {address} port {port}/{proto}: not judged (the port is not listed under `ports:`)\n"
                )
            );
        }
    }

    #[test]
    fn a_judged_port_names_its_deciding_entry() {
        let (decision, entry, text) = explained("192.0.2.13", 25, Proto::Tcp);
        assert!(decision.is_some() && entry, "{text}");
        assert!(
            text.starts_with("DROP 192.0.2.13 port 25/tcp: blocked\n"),
            "{text}"
        );
        assert!(
            text.contains("  decided by block 192.0.2.13/32 (ports 25) at r.yaml:12:9\n"),
            "{text}"
        );
        let (_, entry, text) = explained("198.51.100.1", 25, Proto::Tcp);
        assert!(!entry, "{text}");
        assert!(
            text.contains("  no entry covers 198.51.100.1 for port 25/tcp\n"),
            "{text}"
        );
    }
}
