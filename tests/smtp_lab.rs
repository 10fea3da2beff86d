//! End to end: the real portgate on a real gateway namespace, iptables
//! NFQUEUE on FORWARD, real mail with swaks and aiosmtpd.

mod common;

use std::fs;
use std::time::Duration;

use common::{Lab, Ns, example};

#[test]
fn mail_passes_only_from_identified_addresses() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let pg = lab.portgate(&rules, &[]);

    let out4 = lab.smtp_server(Ns::Net, "203.0.113.25");
    let out6 = lab.smtp_server(Ns::Net, "2001:db8:203::25");
    // The site's own mail relay, for inbound mail.
    let relay = lab.smtp_server(Ns::Site, "192.0.2.10");

    let cases = [
        // (namespace, from, to, subject, should pass)
        (
            Ns::Site,
            "192.0.2.10",
            "203.0.113.25",
            "v4 permitted relay",
            true,
        ),
        (
            Ns::Site,
            "192.0.2.5",
            "203.0.113.25",
            "v4 inside permitted /28",
            true,
        ),
        (
            Ns::Site,
            "2001:db8:10::25",
            "2001:db8:203::25",
            "v6 permitted",
            true,
        ),
        (
            Ns::Site,
            "192.0.2.50",
            "203.0.113.25",
            "v4 unidentified",
            false,
        ),
        (
            Ns::Site,
            "2001:db8:99::50",
            "2001:db8:203::25",
            "v6 unidentified",
            false,
        ),
        (
            Ns::Site,
            "192.0.2.13",
            "203.0.113.25",
            "v4 blocked carve-out",
            false,
        ),
        (
            Ns::Net,
            "203.0.113.7",
            "192.0.2.10",
            "inbound to permitted relay",
            true,
        ),
    ];
    for (ns, from, to, subject, pass) in cases {
        let d = lab.send_mail(ns, from, to, subject);
        assert_eq!(
            d.delivered,
            pass,
            "{subject}: from {from} to {to}: delivered={} expected {pass}\n{}\nportgate log:\n{}",
            d.delivered,
            d.transcript,
            pg.log_text()
        );
    }
    // What the servers actually received, not just what swaks said.
    assert_eq!(
        out4.subjects(),
        vec!["v4 inside permitted /28", "v4 permitted relay"]
    );
    assert_eq!(out6.subjects(), vec!["v6 permitted"]);
    assert_eq!(relay.subjects(), vec!["inbound to permitted relay"]);

    // Each refused source is logged once, with source, destination and port.
    let log = pg.log_text();
    for src in ["192.0.2.50", "2001:db8:99::50", "192.0.2.13"] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("{src} -> ")) && l.contains("port 25/tcp"))
            .collect();
        assert_eq!(lines.len(), 1, "{src} should be logged once:\n{log}");
    }
    assert!(log.contains("dropped blocked 192.0.2.13 -> 203.0.113.25 port 25/tcp"));
}

#[test]
fn sighup_applies_a_good_edit_and_survives_a_broken_one() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let pg = lab.portgate(&rules, &[]);
    let server = lab.smtp_server(Ns::Net, "203.0.113.25");

    assert!(
        !lab.send_mail(Ns::Site, "192.0.2.50", "203.0.113.25", "before")
            .delivered
    );

    // The support desk identifies 192.0.2.50.
    let added = example().replace(
        "      - ip: 192.0.2.0/28\n",
        "      - ip: 192.0.2.50\n        ports: [25]\n        device: Copier scan-to-email\n      - ip: 192.0.2.0/28\n",
    );
    assert_ne!(added, example());
    fs::write(&rules, &added).unwrap();
    pg.signal("HUP");
    pg.wait_log("generation 2", Duration::from_secs(10));
    let d = lab.send_mail(Ns::Site, "192.0.2.50", "203.0.113.25", "after permit");
    assert!(d.delivered, "{}\n{}", d.transcript, pg.log_text());

    // A broken edit: a typo'd key and a prefix with host bits.
    let broken = added
        .replace(
            "        ports: [25]\n        device: Copier",
            "        prots: [25]\n        device: Copier",
        )
        .replace("192.0.2.0/28", "192.0.2.5/28");
    fs::write(&rules, &broken).unwrap();
    pg.signal("HUP");
    pg.wait_log("reload of", Duration::from_secs(10));
    let log = pg.log_text();
    assert!(log.contains("generation 2 stays in force"), "{log}");
    assert!(log.contains("unknown key `prots`"), "{log}");
    assert!(log.contains("192.0.2.5/28 has host bits set"), "{log}");
    // The errors carry line and column.
    assert!(
        log.contains(&format!("{}:", rules.display())) && log.contains(": error: "),
        "{log}"
    );

    // The old permits keep working, the new one included.
    for (from, subject) in [
        ("192.0.2.50", "after broken 1"),
        ("192.0.2.10", "after broken 2"),
    ] {
        let d = lab.send_mail(Ns::Site, from, "203.0.113.25", subject);
        assert!(d.delivered, "{}\n{}", d.transcript, pg.log_text());
    }
    assert!(
        !lab.send_mail(Ns::Site, "192.0.2.13", "203.0.113.25", "still blocked")
            .delivered
    );
    assert_eq!(
        server.subjects(),
        vec!["after broken 1", "after broken 2", "after permit"]
    );

    // SIGTERM stops it cleanly.
    let status = lab.stop_portgate(&pg, "TERM");
    assert_eq!(status.code(), Some(0), "{}", pg.log_text());
    assert!(pg.log_text().contains("SIGTERM: stopping"));
}
