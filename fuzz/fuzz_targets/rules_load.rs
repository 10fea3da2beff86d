//! The rules loader on arbitrary text: `portgate::rules::load` must answer
//! (a ruleset, or diagnostics with positions) and never panic; whatever
//! loads must compile, and the compiled table must decide every entry's own
//! addresses exactly as the reference model (`Ruleset::deciding_entry`, a
//! scan of every entry) on every judged port.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portgate::decision::{Accept, Decision, Unidentified, judge, unidentified};
use portgate::packet::Addr;
use portgate::rules::{EntryKind, IpNetwork, load};
use portgate::table::Table;

/// The first and last address of a prefix.
fn ends(p: &IpNetwork) -> [std::net::IpAddr; 2] {
    match p {
        IpNetwork::V4(n) => {
            let first = u32::from(n.network_address());
            let last = first | (u32::MAX.checked_shr(u32::from(n.netmask())).unwrap_or(0));
            [
                std::net::Ipv4Addr::from(first).into(),
                std::net::Ipv4Addr::from(last).into(),
            ]
        }
        IpNetwork::V6(n) => {
            let first = u128::from(n.network_address());
            let last = first | (u128::MAX.checked_shr(u32::from(n.netmask())).unwrap_or(0));
            [
                std::net::Ipv6Addr::from(first).into(),
                std::net::Ipv6Addr::from(last).into(),
            ]
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = match load(text, "fuzz.yaml") {
        Ok(l) => l,
        Err(e) => {
            assert!(e.errors().next().is_some(), "refused without an error");
            for d in &e.diagnostics {
                let _ = d.render("fuzz.yaml");
            }
            return;
        }
    };
    let rules = &loaded.ruleset;
    let table = Table::compile(rules);
    for policy in &rules.ports {
        let slot = table
            .slot(policy.proto, policy.port)
            .expect("a judged port has a slot");
        for entry in &rules.entries {
            for addr in ends(&entry.prefix) {
                let a = Addr::from(addr);
                let want = match rules
                    .deciding_entry(addr, policy.port, policy.proto)
                    .map(|e| e.kind)
                {
                    Some(EntryKind::Permit) => Decision::Accept(Accept::SourcePermit),
                    Some(EntryKind::Block) => unidentified(policy.mode, Unidentified::Blocked),
                    None => unidentified(policy.mode, Unidentified::NoEntry),
                };
                assert_eq!(
                    judge(&table, slot, a, a),
                    want,
                    "{addr} port {}/{}",
                    policy.port,
                    policy.proto.as_str()
                );
            }
        }
    }
});
