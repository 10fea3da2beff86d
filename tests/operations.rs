//! Operating the running daemon, end to end in the netns lab: `portgate
//! reload`, `status`, `blocked`, `explain` over the control socket, monitor
//! mode, and the metrics file.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::{Lab, Ns, PORTGATE, example};
use serde_json::Value;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn queue0(status: &Value) -> &Value {
    &status["queues"][0]
}

/// Once `portgate reload` has answered, the very next packet is judged by
/// the new rules, also on a worker that was waiting for packets when the
/// reload came. (Break-it: the rules used to be fetched before the wait, so
/// the first packet after a reload on an idle worker met the old table, up
/// to a quarter of a second late; 4 of 5 such rounds let a SYN through.)
#[test]
fn a_reload_is_in_force_for_the_very_next_packet() {
    let mut lab = Lab::new();
    let with = example();
    // 192.0.2.10 is permitted as a host and inside 192.0.2.0/28: move both.
    let without = with
        .replace("      - ip: 192.0.2.10\n", "      - ip: 192.0.2.11\n")
        .replace("192.0.2.0/28", "192.0.2.16/28");
    assert_ne!(with, without);
    let rules = lab.write_rules(&with);
    lab.queue_smtp(0, &[]);
    lab.count_arrivals(25, &["192.0.2.10"]);
    let pg = lab.portgate(&rules, &[]);
    let mut arrived = 0;
    for round in 1..=5 {
        for (file, permitted) in [(&without, false), (&with, true)] {
            fs::write(&rules, file).unwrap();
            let out = pg.client(&["reload"]);
            assert!(out.status.success(), "{}", text(&out.stderr));
            // Let the worker settle into its wait again before the packet.
            std::thread::sleep(Duration::from_millis(50));
            lab.syns(Ns::Site, "192.0.2.10", "203.0.113.25", 25, 1);
            arrived += u64::from(permitted);
            assert_eq!(
                lab.arrivals("192.0.2.10"),
                arrived,
                "round {round}: the SYN after the reload that {} 192.0.2.10",
                if permitted { "permits" } else { "removes" }
            );
        }
    }
}

#[test]
fn reload_through_the_client_applies_or_refuses() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let pg = lab.portgate(&rules, &[]);
    let server = lab.smtp_server(Ns::Net, "203.0.113.25");
    assert!(
        !lab.send_mail(Ns::Site, "192.0.2.50", "203.0.113.25", "before")
            .delivered
    );

    // A good edit: the client waits for the answer and reports it.
    let added = example().replace(
        "      - ip: 192.0.2.0/28\n",
        "      - ip: 192.0.2.50\n        ports: [25]\n        device: Copier\n      - ip: 192.0.2.0/28\n",
    );
    fs::write(&rules, &added).unwrap();
    let out = pg.client(&["reload"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("generation 2, 2 sites, 5 permits, 1 block,"),
        "{}",
        text(&out.stdout)
    );
    let d = lab.send_mail(Ns::Site, "192.0.2.50", "203.0.113.25", "after");
    assert!(d.delivered, "{}", d.transcript);

    // A broken edit: exit 1, the same FILE:LINE:COLUMN errors `check`
    // prints, and the old rules keep judging.
    let broken = added.replace("192.0.2.0/28", "192.0.2.5/28");
    fs::write(&rules, &broken).unwrap();
    let out = pg.client(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    let check = Command::new(PORTGATE)
        .arg("check")
        .arg(&rules)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let first_line = text(&check.stderr).lines().next().unwrap().to_owned();
    assert!(
        first_line.starts_with(&format!("{}:", rules.display()))
            && first_line.contains(": error: 192.0.2.5/28 has host bits set"),
        "{first_line}"
    );
    assert!(
        err.contains(&first_line),
        "reload printed:\n{err}\ncheck printed:\n{first_line}"
    );
    assert!(err.contains("generation 2 stays in force"), "{err}");
    let d = lab.send_mail(Ns::Site, "192.0.2.50", "203.0.113.25", "after broken");
    assert!(d.delivered, "{}", d.transcript);
    assert_eq!(server.subjects(), vec!["after", "after broken"]);

    // JSON for scripts, and status remembers the refusal.
    let out = pg.client(&["reload", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["ok"], false);
    assert_eq!(j["generation"], 2);
    assert!(j["diagnostics"][0]["pos"]["line"].as_u64().unwrap() > 0);
    let s = pg.status();
    assert_eq!(s["rules"]["generation"], 2);
    assert_eq!(s["last_reload"]["ok"], false);

    // SIGHUP keeps working next to the socket.
    fs::write(&rules, &added).unwrap();
    pg.signal("HUP");
    pg.wait_status("generation 3", |s| s["rules"]["generation"] == 3);
}

#[test]
fn status_and_blocked_count_exactly_the_traffic_sent() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let pg = lab.portgate(&rules, &[]);

    // 3 SYNs from an identified relay, 5 from an unidentified host, 4 from
    // the blocked carve-out, 2 inbound to the identified relay.
    lab.syns(Ns::Site, "192.0.2.10", "203.0.113.25", 25, 3);
    lab.syns(Ns::Site, "192.0.2.50", "203.0.113.25", 25, 5);
    lab.syns(Ns::Site, "192.0.2.13", "203.0.113.25", 25, 4);
    lab.syns(Ns::Net, "203.0.113.7", "192.0.2.10", 25, 2);

    let s = pg.wait_status("14 packets", |s| queue0(s)["packets"] == 14);
    let q = queue0(&s);
    assert_eq!(q["accepted"], 5, "{s:#}");
    assert_eq!(q["accepted_source_permit"], 3);
    assert_eq!(q["accepted_destination_permit"], 2);
    assert_eq!(q["dropped"], 9);
    assert_eq!(q["dropped_unidentified"], 9);
    assert_eq!(q["unidentified_blocked"], 4);
    assert_eq!(q["malformed"], 0);
    assert_eq!(q["enobufs"], 0);
    // The kernel's own view: every packet it queued got its verdict.
    assert_eq!(q["kernel"]["id_sequence"], 14, "{s:#}");
    assert_eq!(q["kernel"]["queued"], 0);
    assert_eq!(q["kernel"]["dropped_queue_full"], 0);
    assert_eq!(q["kernel"]["dropped_socket_full"], 0);
    assert_eq!(s["rules"]["summary"]["permits"], 4);
    let caps = s["capabilities"].as_array().unwrap();
    assert!(
        caps.iter().any(|c| c == "CAP_NET_ADMIN"),
        "the test runs as root: {caps:?}"
    );

    // Exactly the unidentified sources that tried, with their counts.
    let out = pg.client(&["blocked", "--json"]);
    assert!(out.status.success());
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows: Vec<(String, u64, u64, String)> = b["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_owned(),
                e["port"].as_u64().unwrap(),
                e["count"].as_u64().unwrap(),
                e["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("192.0.2.13".into(), 25, 4, "blocked".into()),
            ("192.0.2.50".into(), 25, 5, "dropped".into()),
        ]
    );
    // Busiest first with --top, and the human table names both.
    let out = pg.client(&["blocked", "--top", "1", "--json"]);
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["entries"][0]["source"], "192.0.2.50");
    assert_eq!(b["matching"], 2);
    let out = pg.client(&["blocked", "--since", "1h"]);
    let t = text(&out.stdout);
    assert!(
        t.contains("192.0.2.50") && t.contains("192.0.2.13") && t.contains("25/tcp"),
        "{t}"
    );
    let out = pg.client(&["status"]);
    let t = text(&out.stdout);
    assert!(t.contains("generation 1") && t.contains("QUEUE"), "{t}");

    // The counters survive a reload, and so does the blocked record.
    pg.client(&["reload"]);
    let s = pg.status();
    assert_eq!(queue0(&s)["packets"], 14);
    let out = pg.client(&["blocked", "--json"]);
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["entries"].as_array().unwrap().len(), 2);
}

#[test]
fn monitor_mode_lets_mail_through_and_reports_it() {
    let mut lab = Lab::new();
    // rules/example.yaml judges 587/tcp in monitor mode.
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    lab.queue_port(587, 0, &[]);
    let pg = lab.portgate(&rules, &[]);
    let submission = lab.smtp_server_on(Ns::Net, "203.0.113.25", 587);
    let smtp = lab.smtp_server(Ns::Net, "203.0.113.25");

    let d = lab.send_mail_on(Ns::Site, "192.0.2.50", "203.0.113.25", 587, "monitored");
    assert!(d.delivered, "{}\n{}", d.transcript, pg.log_text());
    // The same host on the enforced port is still dropped.
    assert!(
        !lab.send_mail(Ns::Site, "192.0.2.50", "203.0.113.25", "enforced")
            .delivered
    );
    assert_eq!(submission.subjects(), vec!["monitored"]);
    assert!(smtp.subjects().is_empty());

    let s = pg.status();
    assert_eq!(queue0(&s)["monitored"], 1, "{s:#}");
    let out = pg.client(&["blocked", "--json"]);
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<(u64, String)> = b["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "192.0.2.50")
        .map(|e| {
            (
                e["port"].as_u64().unwrap(),
                e["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(states.contains(&(587, "monitored".into())), "{b:#}");
    assert!(states.contains(&(25, "dropped".into())), "{b:#}");
    assert!(
        pg.log_text()
            .contains("monitor: let through unidentified 192.0.2.50 -> 203.0.113.25 port 587/tcp")
    );
}

#[test]
fn metrics_file_is_valid_prometheus_text_and_matches_status() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let pg = lab.portgate(&rules, &[]);
    lab.syns(Ns::Site, "192.0.2.10", "203.0.113.25", 25, 2);
    lab.syns(Ns::Site, "192.0.2.50", "203.0.113.25", 25, 3);
    pg.wait_status("5 packets", |s| queue0(s)["packets"] == 5);
    // Wait for a rewrite after the traffic (every 200 ms in the lab).
    let want = "portgate_packets_total{queue=\"0\",decision=\"drop\",reason=\"unidentified\"} 3";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = fs::read_to_string(&pg.metrics).unwrap_or_default();
        if m.contains(want) {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never showed {want}:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // A real parser: promtool from Debian's prometheus package.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", pg.metrics.display()))
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(
        out.status.success(),
        "promtool rejected the metrics:\n{}{}\n{metrics}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for line in [
        "portgate_packets_total{queue=\"0\",decision=\"accept\",reason=\"source_permit\"} 2",
        "portgate_port_packets_total{port=\"25\",proto=\"tcp\",outcome=\"identified\"} 2",
        "portgate_port_packets_total{port=\"25\",proto=\"tcp\",outcome=\"dropped\"} 3",
        "portgate_rules_generation 1",
        "portgate_rules_permits 4",
        "portgate_rules_last_reload_success 1",
        "portgate_kernel_queue_length{queue=\"0\"} 0",
        "portgate_blocked_sources 1",
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
    // A refused reload shows.
    fs::write(&rules, "ports: [\n").unwrap();
    assert_eq!(pg.client(&["reload"]).status.code(), Some(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&pg.metrics)
        .unwrap_or_default()
        .contains("portgate_rules_last_reload_success 0")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never showed the refused reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn explain_asks_the_running_daemon() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let pg = lab.portgate(&rules, &[]);
    // Edit the file without reloading: the daemon still judges by the old
    // rules, and explain says what the daemon does.
    fs::write(
        &rules,
        example().replace("      - ip: 192.0.2.13\n", "      - ip: 192.0.2.14\n"),
    )
    .unwrap();
    let out = pg.client(&["explain", "192.0.2.13", "25"]);
    let t = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(t.starts_with("DROP 192.0.2.13 port 25/tcp: blocked"), "{t}");
    assert!(
        t.contains("technical contact: Courthouse Network Admin, +1 303 555 0101, noc@example.org")
    );
    assert!(t.contains("generation 1"), "{t}");
    // --json: the same answer, structured.
    let out = pg.client(&["explain", "--json", "192.0.2.13", "25"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["generation"], 1, "{j}");
    assert_eq!(j["answer"], "blocked", "{j}");
    assert_eq!(j["entry"]["kind"], "block", "{j}");
    assert_eq!(j["entry"]["file"], rules.to_str().unwrap(), "{j}");
    assert_eq!(j["entry"]["line"], 46, "{j}");
    // --rules reads the file as it is now.
    let out = pg.client(&[
        "explain",
        "--rules",
        rules.to_str().unwrap(),
        "192.0.2.13",
        "25",
    ]);
    assert!(
        text(&out.stdout).starts_with("ACCEPT 192.0.2.13 port 25/tcp"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn the_control_socket_belongs_to_one_daemon() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let first = lab.portgate(&rules, &[]);
    let mode = fs::metadata(&first.control).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // A second daemon on the same socket refuses to start, and leaves the
    // first one serving.
    let second = lab.spawn_portgate(&rules, &["--queues", "1"]);
    let status = lab.wait_exit(&second, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1));
    assert!(
        second.log_text().contains("another portgate is running"),
        "{}",
        second.log_text()
    );
    assert!(first.client(&["status"]).status.success());

    // A second daemon on another socket but the same queue: a clear error
    // naming the queue.
    let other = lab.dir.path().join("other.sock");
    let third = lab.spawn_portgate(&rules, &["--control", other.to_str().unwrap()]);
    assert_eq!(
        lab.wait_exit(&third, Duration::from_secs(10)).code(),
        Some(1)
    );
    assert!(
        !other.exists(),
        "a daemon that failed to start left its socket behind"
    );
    assert!(
        third
            .log_text()
            .contains("cannot bind netfilter queue 0: Operation not permitted (os error 1) (another process already serves this queue"),
        "{}",
        third.log_text()
    );

    // Stopped, the socket is gone; the clients say so and exit 2.
    assert_eq!(lab.stop_portgate(&first, "TERM").code(), Some(0));
    assert!(!first.control.exists());
    let out = first.client(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("the daemon is not running: no control socket at"),
        "{}",
        text(&out.stderr)
    );

    // A stale socket (left by a daemon that died) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&first.control).unwrap();
    drop(stale);
    assert!(first.control.exists());
    let fourth = lab.portgate(&rules, &[]);
    assert!(fourth.log_text().contains("removed stale control socket"));
    assert!(fourth.client(&["status"]).status.success());
}
