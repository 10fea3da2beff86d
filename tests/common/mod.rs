//! The netns lab for integration tests: real namespaces, real iptables, the
//! real `portgate` binary, a real SMTP server (aiosmtpd) and client (swaks).
//!
//! Everything a test creates is torn down in `Drop`, also when the test
//! fails: processes are killed and the namespaces (with their veths and
//! iptables rules) deleted.

#![allow(dead_code)]

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const PORTGATE: &str = env!("CARGO_BIN_EXE_portgate");
/// Debian's python3, which has python3-aiosmtpd.
pub const PYTHON: &str = "/usr/bin/python3";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// rules/example.yaml, the file the README and the demo use.
pub fn example() -> String {
    fs::read_to_string(repo().join("rules/example.yaml")).unwrap()
}

fn must_be_root() {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "the lab tests build network namespaces and need root: run `sudo bash tests/run.sh`"
    );
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A lab: three namespaces (site, gateway, internet) made by tests/lab.sh.
pub struct Lab {
    pub name: String,
    pub dir: tempdir::TempDir,
    children: Vec<Child>,
}

/// Which namespace.
#[derive(Clone, Copy, Debug)]
pub enum Ns {
    Site,
    Gw,
    Net,
}

impl Lab {
    pub fn new() -> Lab {
        must_be_root();
        static N: AtomicU32 = AtomicU32::new(0);
        // Short: veth names are NAME + 2 characters, at most 15.
        let name = format!(
            "pg{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Lab {
            dir: tempdir::TempDir::new(&name),
            name,
            children: Vec::new(),
        };
        run_ok(
            Command::new("bash")
                .arg(repo().join("tests/lab.sh"))
                .args(["up", &lab.name]),
        );
        lab
    }

    /// Writes `text` as the lab's rules file, `rules.yaml` in its directory.
    pub fn write_rules(&self, text: &str) -> PathBuf {
        let rules = self.dir.path().join("rules.yaml");
        fs::write(&rules, text).unwrap();
        rules
    }

    pub fn ns(&self, ns: Ns) -> String {
        match ns {
            Ns::Site => format!("{}-site", self.name),
            Ns::Gw => format!("{}-gw", self.name),
            Ns::Net => format!("{}-net", self.name),
        }
    }

    /// A command run inside a namespace.
    pub fn cmd(&self, ns: Ns, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(ns), program]);
        c
    }

    /// Queues new port-25 connections on the gateway's FORWARD chain to
    /// `queue`, for IPv4 and IPv6.
    pub fn queue_smtp(&self, queue: u16, extra: &[&str]) {
        self.queue_port(25, queue, extra);
    }

    /// Queues new TCP connections to `port` on the gateway's FORWARD chain
    /// to `queue`, for IPv4 and IPv6.
    pub fn queue_port(&self, port: u16, queue: u16, extra: &[&str]) {
        let (p, q) = (port.to_string(), queue.to_string());
        for tool in ["iptables", "ip6tables"] {
            let mut args = vec![
                "-A",
                "FORWARD",
                "-p",
                "tcp",
                "--dport",
                &p,
                "--syn",
                "-j",
                "NFQUEUE",
                "--queue-num",
                &q,
            ];
            args.extend_from_slice(extra);
            run_ok(self.cmd(Ns::Gw, tool).args(&args));
        }
    }

    /// Starts portgate in the gateway namespace with `rules`, its control
    /// socket and metrics file in the lab's directory, and waits until it
    /// serves its queues.
    pub fn portgate(&mut self, rules: &Path, extra: &[&str]) -> Portgate {
        let pg = self.spawn_portgate(rules, extra);
        pg.wait_log("serving netfilter queue", Duration::from_secs(10));
        pg
    }

    /// Starts portgate without waiting for it.
    pub fn spawn_portgate(&mut self, rules: &Path, extra: &[&str]) -> Portgate {
        let n = self.children.len();
        let log = self.dir.path().join(format!("portgate-{n}.log"));
        let control = self.dir.path().join("control.sock");
        let metrics = self.dir.path().join("portgate.prom");
        let child = self
            .cmd(Ns::Gw, PORTGATE)
            .arg("run")
            .arg("--rules")
            .arg(rules)
            .arg("--control")
            .arg(&control)
            .arg("--metrics-file")
            .arg(&metrics)
            .args(["--metrics-interval", "200ms"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start portgate");
        let pg = Portgate {
            pid: child.id(),
            log,
            control,
            metrics,
        };
        self.children.push(child);
        pg
    }

    /// Waits for a portgate this lab started to exit.
    pub fn wait_exit(&mut self, pg: &Portgate, timeout: Duration) -> std::process::ExitStatus {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() == pg.pid)
            .expect("a portgate this lab started");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "portgate did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Counts, at "the internet" (the net namespace's INPUT chain), the
    /// TCP SYNs to `port` that arrive from each of `sources`: what the
    /// gateway let through, measured at the far side.
    pub fn count_arrivals(&self, port: u16, sources: &[&str]) {
        for src in sources {
            let tool = if src.contains(':') {
                "ip6tables"
            } else {
                "iptables"
            };
            run_ok(self.cmd(Ns::Net, tool).args([
                "-A",
                "INPUT",
                "-s",
                src,
                "-p",
                "tcp",
                "--dport",
                &port.to_string(),
                "--syn",
            ]));
        }
    }

    /// How many SYNs from `src` arrived at the net namespace (see
    /// [`Lab::count_arrivals`]).
    pub fn arrivals(&self, src: &str) -> u64 {
        let tool = if src.contains(':') {
            "ip6tables"
        } else {
            "iptables"
        };
        let out = run_ok(
            self.cmd(Ns::Net, tool)
                .args(["-L", "INPUT", "-n", "-v", "-x"]),
        );
        let want = if src.contains(':') {
            src.to_owned()
        } else {
            format!("{src} ")
        };
        out.lines()
            .filter(|l| l.contains(&want) || l.split_whitespace().any(|w| w == src))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Sends `count` TCP SYNs with hping3 from `from` (in `ns`) to `to`:`port`.
    pub fn syns(&self, ns: Ns, from: &str, to: &str, port: u16, count: u32) {
        let out = run(self.cmd(ns, "hping3").args([
            "-S",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "u20000",
            "-p",
            &port.to_string(),
            "-a",
            from,
            to,
        ]));
        // hping3 exits 1 when no reply came back, which is what a dropped
        // SYN looks like; only a failure to run is an error here.
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "hping3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends `sig` to portgate and waits for it to exit.
    pub fn stop_portgate(&mut self, pg: &Portgate, sig: &str) -> std::process::ExitStatus {
        pg.signal(sig);
        self.wait_exit(pg, Duration::from_secs(10))
    }

    /// Starts an SMTP server (aiosmtpd) on `addr` port 25 in `ns`, storing
    /// what it receives in a maildir, and waits until it listens.
    pub fn smtp_server(&mut self, ns: Ns, addr: &str) -> Maildir {
        self.smtp_server_on(ns, addr, 25)
    }

    /// An SMTP server on `addr`:`port`.
    pub fn smtp_server_on(&mut self, ns: Ns, addr: &str, port: u16) -> Maildir {
        let dir = self
            .dir
            .path()
            .join(format!("mail-{}-{port}", addr.replace([':', '.'], "_")));
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // aiosmtpd splits host and port at the last colon, unbracketed.
        let listen = format!("{addr}:{port}");
        let child = self
            .cmd(ns, PYTHON)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &listen,
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (python3-aiosmtpd)");
        self.children.push(child);
        // Wait until it listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = run(self
                .cmd(ns, "ss")
                .args(["-Hltn", "sport", &format!("= :{port}")]));
            let shown = if addr.contains(':') {
                format!("[{addr}]:{port}")
            } else {
                listen.clone()
            };
            if String::from_utf8_lossy(&out.stdout).contains(&shown) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on {listen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Maildir { dir }
    }

    /// Sends one mail with swaks from `from` (a local address in `ns`) to the
    /// SMTP server at `to`. Returns whether swaks delivered it.
    pub fn send_mail(&self, ns: Ns, from: &str, to: &str, subject: &str) -> Delivery {
        self.send_mail_on(ns, from, to, 25, subject)
    }

    /// Sends one mail to `to`:`port`.
    pub fn send_mail_on(&self, ns: Ns, from: &str, to: &str, port: u16, subject: &str) -> Delivery {
        let port = port.to_string();
        let out = run(self.cmd(ns, "swaks").args([
            "--server",
            to,
            "--port",
            &port,
            "--local-interface",
            from,
            "--from",
            "sender@example.org",
            "--to",
            "rcpt@example.com",
            "--header",
            &format!("Subject: {subject}"),
            "--timeout",
            "3",
        ]));
        Delivery {
            delivered: out.status.success(),
            transcript: String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("bash")
            .arg(repo().join("tests/lab.sh"))
            .args(["down", &self.name])
            .status();
    }
}

pub struct Delivery {
    pub delivered: bool,
    pub transcript: String,
}

pub struct Maildir {
    pub dir: PathBuf,
}

impl Maildir {
    /// Subjects of the mails received.
    pub fn subjects(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(rd) = fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for e in rd.flatten() {
                let mut s = String::new();
                if fs::File::open(e.path())
                    .and_then(|mut f| f.read_to_string(&mut s))
                    .is_ok()
                    && let Some(l) = s.lines().find(|l| l.starts_with("Subject: "))
                {
                    out.push(l.trim_start_matches("Subject: ").to_owned());
                }
            }
        }
        out.sort();
        out
    }

    pub fn has(&self, subject: &str) -> bool {
        self.subjects().iter().any(|s| s == subject)
    }
}

pub struct Portgate {
    pub pid: u32,
    pub log: PathBuf,
    pub control: PathBuf,
    pub metrics: PathBuf,
}

impl Portgate {
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (counting from the start).
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        self.wait_log_count(needle, 1, timeout);
    }

    /// Waits until `needle` occurs at least `n` times in the log.
    pub fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_text();
            if text.matches(needle).count() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "portgate log never showed {needle:?} {n} time(s); log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Runs a client command (`reload`, `status --json`, ...) against this
    /// daemon's control socket.
    pub fn client(&self, args: &[&str]) -> Output {
        let mut c = Command::new(PORTGATE);
        c.args(args).arg("--control").arg(&self.control);
        run(&mut c)
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.client(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// Polls `status --json` until `pred` holds.
    pub fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "status never showed {what}: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: &str) {
        run_ok(Command::new("kill").args([&format!("-{sig}"), &self.pid.to_string()]));
    }
}

/// A temporary directory removed on drop (a few lines, not a dependency).
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("portgate-test-{prefix}"));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
