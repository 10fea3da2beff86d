//! The command line without a lab: check, explain from a file, the exit
//! codes, and log lines fit for the journal.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};

const PORTGATE: &str = env!("CARGO_BIN_EXE_portgate");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn portgate(args: &[&str]) -> Output {
    Command::new(PORTGATE).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("portgate-cli-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn check_summarises_or_lists_every_problem() {
    // A copy: `check`, like `run`, refuses a file someone other than root
    // and the user running it could write, and the checkout may be another
    // user's (`sudo bash tests/run.sh`).
    let dir = scratch("check");
    let example = dir.join("example.yaml");
    fs::copy(repo().join("rules/example.yaml"), &example).unwrap();
    for (path, mode) in [(&dir, 0o755), (&example, 0o644)] {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = portgate(&["check", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: ok: 2 sites, 4 permits, 1 block, 2 judged ports\n",
            example.display()
        )
    );

    let bad = dir.join("bad.yaml");
    fs::write(
        &bad,
        fs::read_to_string(&example)
            .unwrap()
            .replace("192.0.2.0/28", "192.0.2.5/28")
            .replace("    blocks:", "    blokcs:"),
    )
    .unwrap();
    let out = portgate(&["check", example.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // The good file still gets its summary; the bad one every problem.
    assert!(text(&out.stdout).contains("example.yaml: ok"));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "{}:37:13: error: 192.0.2.5/28 has host bits set",
            bad.display()
        )),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}:43:5: error: unknown key `blokcs` in a site",
            bad.display()
        )),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `blocks`?"));
    // `check` changes nothing, and says only what it found.
    assert!(
        err.ends_with(&format!("\n{}: rejected: 2 errors\n", bad.display())),
        "{err}"
    );

    let out = portgate(&["check", dir.join("missing.yaml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.yaml: error: cannot read:"));
    let _ = fs::remove_dir_all(dir);
}

/// Newcomer trial: `check` passed (exit 0, a warning) a group-writable file
/// that `run` and `reload` refuse, so it did not predict what they do.
#[test]
fn check_refuses_a_rules_file_run_would_refuse() {
    let dir = scratch("insecure");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let rules = dir.join("rules.yaml");
    fs::copy(repo().join("rules/example.yaml"), &rules).unwrap();
    fs::set_permissions(&rules, fs::Permissions::from_mode(0o664)).unwrap();
    let path = rules.to_str().unwrap();

    let out = portgate(&["check", path]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    let refusal = err
        .lines()
        .find(|l| l.contains("refusing to read it"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        refusal.starts_with(&format!("{path}: error: refusing to read it: "))
            && refusal.ends_with("is writable by its group (mode 0664): only its owner may be able to change the rules (chmod go-w)"),
        "{err}"
    );
    assert!(
        err.contains("\n    hint: --insecure-rules overrides this check\n"),
        "{err}"
    );
    assert!(
        err.ends_with(&format!("\n{path}: rejected: 1 error\n")),
        "{err}"
    );

    // The same words as `run` refusing it.
    let run = portgate(&[
        "run",
        "--rules",
        path,
        "--control",
        dir.join("control.sock").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(text(&run.stderr).contains(refusal), "{}", text(&run.stderr));

    // --insecure-rules: check reads it, as run would.
    let out = portgate(&["check", "--insecure-rules", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{path}: ok: 2 sites, 4 permits, 1 block, 2 judged ports\n")
    );
    assert_eq!(text(&out.stderr), "");

    // A file nobody else can write passes without the flag.
    fs::set_permissions(&rules, fs::Permissions::from_mode(0o640)).unwrap();
    let out = portgate(&["check", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn explain_from_a_file() {
    let example = repo().join("rules/example.yaml");
    let ex = example.to_str().unwrap();
    let out = portgate(&["explain", "--rules", ex, "192.0.2.10", "25"]);
    assert!(out.status.success());
    let t = text(&out.stdout);
    assert!(
        t.starts_with("ACCEPT 192.0.2.10 port 25/tcp: identified\n"),
        "{t}"
    );
    assert!(t.contains("decided by permit 192.0.2.10/32 (ports 25)"));
    assert!(t.contains("device: Mail relay (Postfix)"));

    let out = portgate(&["explain", "--rules", ex, "2001:db8:10::99", "587"]);
    assert!(text(&out.stdout).starts_with("ACCEPT 2001:db8:10::99 port 587/tcp: identified"));
    let out = portgate(&["explain", "--rules", ex, "198.51.100.99", "25"]);
    let t = text(&out.stdout);
    assert!(
        t.starts_with("DROP 198.51.100.99 port 25/tcp: unidentified"),
        "{t}"
    );
    assert!(t.contains("no entry covers 198.51.100.99 for port 25/tcp"));
    let out = portgate(&["explain", "--rules", ex, "198.51.100.99", "80"]);
    assert!(text(&out.stdout).starts_with("ACCEPT 198.51.100.99 port 80/tcp: not judged"));
    let out = portgate(&[
        "explain",
        "--rules",
        ex,
        "192.0.2.13",
        "25",
        "--proto",
        "udp",
    ]);
    let t = text(&out.stdout);
    assert!(
        t.starts_with("ACCEPT 192.0.2.13 port 25/udp: not judged"),
        "{t}"
    );
    // The block lists a bare 25, but no entry decides a port not judged.
    assert_eq!(t.lines().count(), 1, "{t}");

    let out = portgate(&["explain", "--rules", ex, "not-an-address", "25"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid value 'not-an-address'"));
}

#[test]
fn explain_json_carries_the_answer_and_the_deciding_entry() {
    let example = repo().join("rules/example.yaml");
    let ex = example.to_str().unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = portgate(&[&["explain", "--rules", ex, "--json"], args].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let j = json(&["192.0.2.13", "25"]);
    // The fields scripts already read stay.
    assert_eq!(j["verdict"], "DROP");
    assert_eq!(j["generation"], 0);
    assert!(
        j["text"]
            .as_str()
            .unwrap()
            .starts_with("DROP 192.0.2.13 port 25/tcp: blocked\n"),
        "{j}"
    );
    assert_eq!(j["address"], "192.0.2.13");
    assert_eq!(j["port"], 25);
    assert_eq!(j["proto"], "tcp");
    assert_eq!(j["judged"], true);
    assert_eq!(j["mode"], "enforce");
    assert_eq!(j["answer"], "blocked");
    assert_eq!(
        j["entry"],
        serde_json::json!({
            "kind": "block",
            "site": "Example County Courthouse",
            "prefix": "192.0.2.13/32",
            "ports": ["25"],
            "file": ex,
            "line": 46,
            "column": 9,
            "device": null,
            "domain": null,
            "reason": "infected workstation, ticket 4711",
            "contacts": {
                "site": {"name": "Courthouse IT Manager", "position": "IT manager",
                         "phone": "+1 303 555 0100", "email": "it@example.org"},
                "technical": {"name": "Courthouse Network Admin", "position": "Network admin",
                              "phone": "+1 303 555 0101", "email": "noc@example.org"},
            },
        }),
        "{j}"
    );

    let j = json(&["2001:db8:10::99", "587"]);
    assert_eq!(j["verdict"], "ACCEPT");
    assert_eq!(j["address"], "2001:db8:10::99");
    assert_eq!(j["mode"], "monitor");
    assert_eq!(j["answer"], "identified");
    assert_eq!(j["entry"]["kind"], "permit");
    assert_eq!(j["entry"]["prefix"], "2001:db8:10::/48");
    assert_eq!(j["entry"]["ports"], serde_json::json!(["25", "587"]));
    assert_eq!(j["entry"]["device"], "Exchange servers");
    assert_eq!(j["entry"]["line"], 40);

    // Unidentified on a monitor port: let through, and no entry.
    let j = json(&["198.51.100.99", "587"]);
    assert_eq!(j["verdict"], "ACCEPT");
    assert_eq!(j["judged"], true);
    assert_eq!(j["mode"], "monitor");
    assert_eq!(j["answer"], "unidentified");
    assert_eq!(j["entry"], serde_json::Value::Null);

    // Not judged: no mode, no answer of the rules, no entry.
    let j = json(&["192.0.2.13", "25", "--proto", "udp"]);
    assert_eq!(j["verdict"], "ACCEPT");
    assert_eq!(j["proto"], "udp");
    assert_eq!(j["judged"], false);
    assert_eq!(j["mode"], serde_json::Value::Null);
    assert_eq!(j["answer"], "not_judged");
    assert_eq!(j["entry"], serde_json::Value::Null);
}

#[test]
fn clients_without_a_daemon_exit_2() {
    let dir = scratch("nodaemon");
    let sock = dir.join("control.sock");
    for cmd in ["reload", "status", "blocked"] {
        let out = portgate(&[cmd, "--control", sock.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(
            text(&out.stderr).contains("the daemon is not running: no control socket at"),
            "{cmd}: {}",
            text(&out.stderr)
        );
    }
    // A path that is there but is no socket (the rules file, say) is named
    // for what it is, not taken for a stale socket.
    let file = dir.join("rules.yaml");
    fs::write(&file, "x").unwrap();
    let out = portgate(&["reload", "--control", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("rules.yaml is not a socket"), "{err}");
    assert!(!err.contains("stale"), "{err}");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn under_systemd_log_lines_carry_a_priority_and_no_timestamp() {
    let dir = scratch("journal");
    let rules = dir.join("rules.yaml");
    fs::write(&rules, "ports: [\n").unwrap();
    let log = dir.join("stderr");
    let stderr = fs::File::create(&log).unwrap();
    let meta = stderr.metadata().unwrap();
    // systemd sets JOURNAL_STREAM to the device and inode of stderr.
    let status = Command::new(PORTGATE)
        .args(["run", "--rules", rules.to_str().unwrap(), "--control"])
        .arg(dir.join("control.sock"))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(stderr)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let t = fs::read_to_string(&log).unwrap();
    let first = t.lines().next().unwrap();
    assert!(first.starts_with("<3>not starting: "), "{t}");
    assert!(
        !first.contains("Z ") && !first.contains('['),
        "no timestamp of our own: {first}"
    );

    // Not the journal: a timestamp and a level word.
    let out = portgate(&[
        "run",
        "--rules",
        rules.to_str().unwrap(),
        "--control",
        dir.join("c2").to_str().unwrap(),
    ]);
    let t = text(&out.stderr);
    assert!(t.starts_with('[') && t.contains("ERROR"), "{t}");
    let _ = fs::remove_dir_all(dir);
}

/// A FIFO in place of the rules file is refused at once, by `check` and by
/// `run`, with or without the ownership checks: opening it for reading used
/// to wait for a writer that never came.
#[test]
fn a_fifo_for_rules_is_refused_not_waited_on() {
    let dir = scratch("fifo");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = dir.join("rules.yaml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    fs::set_permissions(&fifo, fs::Permissions::from_mode(0o600)).unwrap();
    let path = fifo.to_str().unwrap();
    for args in [
        vec!["check", path],
        vec!["check", "--insecure-rules", path],
        vec!["run", "--rules", path, "--queues", "0"],
    ] {
        let mut child = Command::new(PORTGATE)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let status = status.unwrap_or_else(|| panic!("portgate {args:?} hung on a FIFO"));
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(!status.success(), "{args:?}: {err}");
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
    let _ = fs::remove_dir_all(dir);
}
