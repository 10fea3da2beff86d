//! The box's security, end to end: capabilities after start, the rules
//! file's permissions, who may use the control socket and what a request
//! can ask for, and a worker that dies.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::{Lab, Ns, PORTGATE, example};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A capability line of /proc/PID/status, as a mask.
fn cap_mask(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

const CAP_NET_ADMIN: u64 = 1 << 12;

#[test]
fn started_as_root_it_keeps_only_cap_net_admin() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let pg = lab.portgate(&rules, &[]);
    assert!(
        pg.log_text().contains("kept only CAP_NET_ADMIN"),
        "{}",
        pg.log_text()
    );
    // Every thread, not just the main one.
    for task in fs::read_dir(format!("/proc/{}/task", pg.pid)).unwrap() {
        let tid: u32 = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
        for field in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(cap_mask(tid, field), CAP_NET_ADMIN, "thread {tid} {field}");
        }
        assert_eq!(cap_mask(tid, "CapInh"), 0);
        assert_eq!(cap_mask(tid, "CapAmb"), 0);
    }
    let status = fs::read_to_string(format!("/proc/{}/status", pg.pid)).unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert_eq!(
        pg.status()["capabilities"],
        serde_json::json!(["CAP_NET_ADMIN"])
    );
    // And with that alone it still judges packets and reloads.
    lab.syns(Ns::Site, "192.0.2.10", "203.0.113.25", 25, 2);
    lab.syns(Ns::Site, "192.0.2.50", "203.0.113.25", 25, 2);
    pg.wait_status("4 packets, 2 dropped", |s| {
        s["queues"][0]["packets"] == 4 && s["queues"][0]["dropped"] == 2
    });
    assert!(pg.client(&["reload"]).status.success());
}

#[test]
fn a_rules_file_others_can_write_is_refused() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);

    fs::set_permissions(&rules, fs::Permissions::from_mode(0o664)).unwrap();
    let refused = lab.spawn_portgate(&rules, &[]);
    assert_eq!(
        lab.wait_exit(&refused, Duration::from_secs(10)).code(),
        Some(1)
    );
    assert!(
        refused.log_text().contains("refusing to read it: ")
            && refused
                .log_text()
                .contains("is writable by its group (mode 0664)"),
        "{}",
        refused.log_text()
    );

    // Someone else's file is refused too.
    fs::set_permissions(&rules, fs::Permissions::from_mode(0o644)).unwrap();
    chown(&rules, 65534);
    let refused = lab.spawn_portgate(&rules, &[]);
    assert_eq!(
        lab.wait_exit(&refused, Duration::from_secs(10)).code(),
        Some(1)
    );
    assert!(
        refused.log_text().contains("is owned by uid 65534"),
        "{}",
        refused.log_text()
    );

    // --insecure-rules overrides.
    let pg = lab.portgate(&rules, &["--insecure-rules"]);
    assert!(pg.client(&["status"]).status.success());
    assert_eq!(lab.stop_portgate(&pg, "TERM").code(), Some(0));

    // A file that becomes writable while the daemon runs is refused at
    // reload, and the rules in force stay.
    chown(&rules, 0);
    let pg = lab.portgate(&rules, &[]);
    fs::set_permissions(&rules, fs::Permissions::from_mode(0o666)).unwrap();
    let out = pg.client(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("refusing to read it"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("writable by everyone"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(pg.status()["rules"]["generation"], 1);
}

fn chown(path: &std::path::Path, uid: u32) {
    let out = Command::new("chown")
        .arg(uid.to_string())
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "chown: {}", text(&out.stderr));
}

#[test]
fn the_control_socket_serves_only_root_and_its_user_and_names_no_files() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let pg = lab.portgate(&rules, &[]);

    // Open the socket's mode (and its directory's) so that another user
    // can connect at all: the daemon must still refuse them.
    fs::set_permissions(&pg.control, fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(lab.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            PORTGATE,
            "status",
            "--control",
        ])
        .arg(&pg.control)
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        pg.log_text().contains("refused a request from uid 65534"),
        "{}",
        pg.log_text()
    );

    // A request naming a file is refused, not half-obeyed.
    for bad in [
        r#"{"cmd":"reload","file":"/etc/shadow"}"#,
        r#"{"cmd":"status","metrics_file":"/etc/passwd"}"#,
        r#"{"cmd":"read","path":"/etc/shadow"}"#,
        "not json at all",
    ] {
        let mut s = UnixStream::connect(&pg.control).unwrap();
        writeln!(s, "{bad}").unwrap();
        let mut answer = String::new();
        BufReader::new(&s).read_line(&mut answer).unwrap();
        assert!(
            answer.starts_with(r#"{"error":"not a request"#),
            "{bad} -> {answer}"
        );
    }
    assert_eq!(pg.status()["rules"]["generation"], 1);
    assert!(pg.status()["last_reload"].is_null());
}

#[test]
fn a_worker_that_dies_ends_the_process_with_an_error() {
    let mut lab = Lab::new();
    let rules = lab.write_rules(&example());
    lab.queue_smtp(0, &[]);
    let pg = lab.portgate(&rules, &["--test-panic-after", "3"]);
    // Unidentified, 20 ms apart: the worker still holds their reports
    // (it sends them every 100 ms) when it dies after the third.
    lab.syns(Ns::Site, "192.0.2.50", "203.0.113.25", 25, 5);
    let status = lab.wait_exit(&pg, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", pg.log_text());
    let log = pg.log_text();
    assert!(
        log.contains("worker for queue 0 stopped: the thread panicked; exiting so that the supervisor restarts portgate"),
        "{log}"
    );
    assert!(log.contains("injected fault"), "{log}");
    // What it judged before it died is reported, not lost with it.
    assert!(
        log.contains("dropped unidentified 192.0.2.50 -> 203.0.113.25 port 25/tcp"),
        "{log}"
    );
    assert!(log.contains("3 unidentified packets dropped"), "{log}");
}
