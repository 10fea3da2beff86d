//! Man pages and shell completions, generated from the sources they
//! describe.
//!
//! `portgate generate WHAT` writes one of them to stdout;
//! `packaging/build.sh` runs it before `cargo deb` (the way ripgrep builds
//! its man page), so the options in portgate(8) and in the completions are
//! the clap definitions the binary parses ([`crate::cli`]), and the format
//! in portgate-rules(5) is the reference kept next to the loader's shapes
//! (`rules_page`). Prose is written in a small markup (see `Block`) and
//! rendered with the `roff` crate, which clap_mangen also uses.

mod rules_page;

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use roff::{Inline, Roff, bold, italic, roman};

use crate::cli::{Cli, Generated};

/// Writes `what` to `out`.
pub fn generate(what: Generated, out: &mut dyn Write) -> io::Result<()> {
    match what {
        Generated::Man => portgate_8(out),
        Generated::RulesMan => rules_page::portgate_rules_5(out),
        Generated::CompleteBash => complete(Shell::Bash, out),
        Generated::CompleteZsh => complete(Shell::Zsh, out),
    }
}

fn complete(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    // Not every shell's generator skips hidden subcommands: leave them out.
    let full = Cli::command();
    let mut cmd = clap::Command::new("portgate")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    clap_complete::generate(shell, &mut cmd, "portgate", out);
    Ok(())
}

/// The `.TH` line's last fields: where the page comes from, and which
/// manual it belongs to. No date, so that a rebuild is byte-identical.
fn title(name: &str, section: &str) -> Roff {
    let source = format!("portgate {}", env!("CARGO_PKG_VERSION"));
    let manual = if section == "8" {
        "System Administration"
    } else {
        "File Formats"
    };
    let mut r = Roff::new();
    r.control("TH", [name, section, "", source.as_str(), manual]);
    r
}

/// portgate(8): the command, its subcommands and options (from clap), and
/// how it runs on a gateway.
fn portgate_8(out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .cloned()
        .collect();

    let mut head = title("PORTGATE", "8");
    head.control("SH", ["NAME"]);
    head.text([roman(
        "portgate - userspace packet filter for Linux gateways: \
         permits identified addresses on judged ports, fed by iptables NFQUEUE",
    )]);
    head.control("SH", ["SYNOPSIS"]);
    let mut page = Page::new(&head);
    for (i, sub) in subcommands.iter().enumerate() {
        if i > 0 {
            page.push(Roff::new().control("br", []));
        }
        page.section_body(|w| Man::new(sub.clone()).render_synopsis_section(w))?;
    }

    page.push(&blocks(DESCRIPTION_8));

    page.push(Roff::new().control("SH", ["COMMANDS"]));
    for sub in &subcommands {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        page.push(Roff::new().control("SS", [name]));
        page.section_body(|w| Man::new(sub.clone()).render_description_section(w))?;
        page.section_body(|w| Man::new(sub.clone()).render_options_section(w))?;
    }

    page.push(&blocks(JSON_8));
    page.push(&blocks(GATEWAY_8));
    out.write_all(page.0.as_bytes())
}

/// A man page's roff source, put together from pieces that each render
/// with the roff crate's preamble: the page keeps the first one only.
struct Page(String);

impl Page {
    fn new(head: &Roff) -> Page {
        Page(head.render())
    }

    fn push(&mut self, part: &Roff) {
        let text = part.render();
        self.0.push_str(strip_preamble(&text));
    }

    /// Appends a section as clap_mangen renders it, without its `.SH`
    /// heading (the page has its own headings).
    fn section_body(
        &mut self,
        render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        render(&mut buf)?;
        let text = String::from_utf8(buf).map_err(io::Error::other)?;
        for line in strip_preamble(&text).lines() {
            if !line.starts_with(".SH ") {
                self.0.push_str(&bold_backticks(line));
                self.0.push('\n');
            }
        }
        Ok(())
    }
}

/// The help texts in `cli.rs` mark literals with backticks, as `--help`
/// shows them; the man page sets them in bold.
fn bold_backticks(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut parts = line.split('`');
    out.push_str(parts.next().unwrap_or_default());
    let rest: Vec<&str> = parts.collect();
    if rest.len() % 2 == 1 {
        return line.to_owned(); // unpaired: leave the line as it is
    }
    for pair in rest.chunks(2) {
        out.push_str(&format!(r"\fB{}\fR{}", pair[0], pair[1]));
    }
    out
}

fn strip_preamble(text: &str) -> &str {
    let preamble = Roff::new().render();
    text.strip_prefix(preamble.as_str()).unwrap_or(text)
}

/// A block of man page prose. Text uses two inline marks: `` `literal` ``
/// (bold: commands, options, keys, files) and `*placeholder*` (italic).
#[derive(Debug)]
pub(crate) enum Block {
    Section(&'static str),
    Subsection(&'static str),
    Para(&'static str),
    /// A tagged paragraph: the tag, then the text indented under it.
    Item(&'static str, &'static str),
    Bullet(&'static str),
    /// Lines shown as they are, indented.
    Code(&'static str),
}

pub(crate) fn blocks(blocks: &[Block]) -> Roff {
    let mut page = Roff::new();
    for b in blocks {
        match *b {
            Block::Section(s) => {
                page.control("SH", [s]);
            }
            Block::Subsection(s) => {
                page.control("SS", [s]);
            }
            Block::Para(t) => {
                page.control("PP", []).text(inline(t));
            }
            Block::Item(tag, t) => {
                page.control("TP", []).text(inline(tag)).text(inline(t));
            }
            Block::Bullet(t) => {
                page.control("IP", [r"\(bu", "2"]).text(inline(t));
            }
            Block::Code(t) => {
                page.control("PP", [])
                    .control("RS", ["4"])
                    .control("nf", [])
                    .text([roman(t.trim_end_matches('\n'))])
                    .control("fi", [])
                    .control("RE", []);
            }
        }
    }
    page
}

/// Splits text at the inline marks: `` `bold` `` and `*italic*`.
fn inline(text: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['`', '*']) {
        let mark = &rest[at..at + 1];
        let Some(len) = rest[at + 1..].find(mark) else {
            break;
        };
        if at > 0 {
            out.push(roman(&rest[..at]));
        }
        let inner = &rest[at + 1..at + 1 + len];
        out.push(if mark == "`" {
            bold(inner)
        } else {
            italic(inner)
        });
        rest = &rest[at + 2 + len..];
    }
    if !rest.is_empty() {
        out.push(roman(rest));
    }
    out
}

use Block::{Bullet, Code, Item, Para, Section, Subsection};

const DESCRIPTION_8: &[Block] = &[
    Section("DESCRIPTION"),
    Para(
        "`portgate` is a userspace packet filter for Linux gateways. A network operator \
        that blocks outbound SMTP (TCP port 25) for every address its customer sites have \
        not identified puts portgate on the gateway: iptables hands it each new port-25 \
        connection through NFQUEUE, portgate looks the source and destination up in the \
        operator's permit file, and answers *accept* for identified addresses and *drop* \
        for the rest.",
    ),
    Para(
        "The permit file, `/etc/portgate/rules.yaml`, lists the judged ports and, per \
        customer site, its contacts and the addresses it identified; portgate-rules(5) \
        describes it and how a packet is decided. A reload swaps a new table in \
        atomically; a broken edit is refused with `FILE:LINE:COLUMN` errors while the \
        running rules stay in force.",
    ),
    Para(
        "portgate only answers for the packets the kernel queues to it. Which packets \
        those are, and what happens to them while portgate is not running, is decided \
        by the iptables rule that queues them: see `THE IPTABLES RULE` below. Installing \
        portgate does not change the host's firewall.",
    ),
];

const JSON_8: &[Block] = &[
    Section("JSON OUTPUT"),
    Para(
        "With `--json`, `reload`, `status`, `blocked` and `explain` print the daemon's \
        answer as it is sent, one JSON object. `explain --json` (from the daemon, or from \
        the file with `--rules`) has these fields; new ones may be added, none renamed:",
    ),
    Item("`verdict`", "`ACCEPT` or `DROP`."),
    Item("`text`", "the explanation as `explain` prints it."),
    Item(
        "`generation`",
        "the generation of the daemon's rules that answered; 0 when the rules were read \
        from a file.",
    ),
    Item(
        "`address`, `port`, `proto`",
        "what was asked; `proto` is `tcp` or `udp`.",
    ),
    Item(
        "`judged`",
        "whether `ports:` lists the port for the protocol. When false, the packet is \
        accepted unjudged, and `mode` and `entry` are null.",
    ),
    Item(
        "`mode`",
        "`enforce` or `monitor`; null when the port is not judged.",
    ),
    Item(
        "`answer`",
        "what the rules say of the address, before the port's mode: `identified` (a permit \
        decides), `blocked` (a block decides), `unidentified` (no entry covering the \
        address lists the port) or `not_judged`. On a `monitor` port an address that is \
        not identified is accepted all the same.",
    ),
    Item(
        "`entry`",
        "the deciding entry, or null when there is none: `kind` (`permit` or `block`), \
        `site` (the site's name), `prefix`, `ports` (as the file lists them, such as \
        `\"25\"` or `\"53/udp\"`), `file`, `line` and `column` (where the entry starts), \
        `device` and `domain` (permits) and `reason` (blocks), each null when absent, and \
        `contacts`: the site's `site` and `technical` contacts, each with `name`, \
        `position` (or null), `phone` and `email`.",
    ),
];

const GATEWAY_8: &[Block] = &[
    Section("THE IPTABLES RULE"),
    Para(
        "Queue new connections to the judged ports, in both directions, from the \
        `FORWARD` chain (and from `OUTPUT` if the gateway itself sends mail), to the \
        queue `portgate run` serves (`--queues`, default 0):",
    ),
    Code(
        "iptables  -I FORWARD 1 -p tcp --dport 25 -m conntrack --ctstate NEW,INVALID -j NFQUEUE --queue-num 0\n\
         ip6tables -I FORWARD 1 -p tcp --dport 25 -m conntrack --ctstate NEW,INVALID -j NFQUEUE --queue-num 0",
    ),
    Para(
        "`--ctstate NEW,INVALID` queues the first packet of every connection, and \
        conntrack reassembles fragments first (a rule on TCP flags alone lets a SYN \
        whose first fragment is too short to show them pass unjudged): portgate judges \
        connections, and the kernel carries the rest of an accepted connection without \
        involving userspace. A permit removed by a reload therefore stops new \
        connections; established ones run to their end. portgate's *accept* ends the \
        packet's way through the chain like `ACCEPT`; its *drop* is `DROP`. Place the \
        rule where the chain would otherwise accept port-25 traffic.",
    ),
    Para(
        "What happens while portgate is not running (stopped, restarting after a \
        failure, or being upgraded) is the operator's choice, made in the rule:",
    ),
    Item(
        "without `--queue-bypass`",
        "the kernel drops queued packets when no process serves the queue: port 25 is \
        closed while portgate is down (fail closed). Senders retry, so a restart costs \
        a delay, not mail.",
    ),
    Item(
        "with `--queue-bypass`",
        "the rule acts like `ACCEPT` when no process serves the queue: port-25 traffic \
        flows unfiltered while portgate is down (fail open). Pick this when an outage \
        of mail costs more than a window without the filter.",
    ),
    Para(
        "`portgate run --fail-open` is a different, narrower switch: while portgate *is* \
        running but its queue is full, the kernel accepts the excess instead of \
        dropping it.",
    ),
    Para(
        "`/usr/share/doc/portgate/examples/` has both choices as `iptables-restore` \
        fragments, for IPv4 and IPv6. `iptables-restore --noflush` inserts their rule \
        first in FORWARD (after an ACCEPT of established or LAN traffic it would never \
        see a packet) without touching anything else; to keep them across reboots, add \
        their lines to the `*filter` table of `/etc/iptables/rules.v4` and \
        `/etc/iptables/rules.v6` (package iptables-persistent), before any rule that \
        accepts forwarded traffic. portgate's accept ends the packet's way through \
        FORWARD as ACCEPT does:",
    ),
    Code(
        "iptables-restore  --noflush < /usr/share/doc/portgate/examples/rules.v4.fail-closed\n\
         ip6tables-restore --noflush < /usr/share/doc/portgate/examples/rules.v6.fail-closed",
    ),
    Para(
        "Several workers: `--queue-balance 0:1` in the rule and `--queues 0-1` for \
        portgate, one worker thread per queue.",
    ),
    Section("SYSTEMD"),
    Para(
        "The package installs `portgate.service`, enabled, which runs `portgate run` \
        with the default rules file and queue 0 as the unprivileged user `portgate`, \
        with the capability `CAP_NET_ADMIN` and nothing else. It checks the rules file \
        before it starts (`portgate check`), tells systemd it is ready once every queue \
        is bound (`Type=notify`), pings systemd's watchdog, and is restarted when it \
        fails or hangs.",
    ),
    Para(
        "`systemctl reload portgate` runs `portgate reload`, which waits for the running \
        daemon's answer: the reload fails, printing every problem, when the edited file \
        is broken, and the rules in force stay. To serve other queues or pass other \
        options, override `ExecStart=` with `systemctl edit portgate`; with \
        `run --insecure-rules`, override `ExecStartPre=` with \
        `portgate check --insecure-rules` too, since `check` refuses what `run` would.",
    ),
    Para(
        "The service sees the file system read-only (`ProtectSystem=strict`) but for \
        `/run/portgate`. To write `--metrics-file` for node_exporter, allow the \
        directory in the same override, e.g. \
        `ReadWritePaths=/var/lib/prometheus/node-exporter`, and let the user \
        `portgate` write there.",
    ),
    Para(
        "The steps after installing the package: edit `/etc/portgate/rules.yaml` (it \
        permits nothing as shipped), run `systemctl reload portgate`, then load one of \
        the example iptables fragments. In the other order, port 25 is closed to \
        everybody between loading the rule and the reload.",
    ),
    Section("SIGNALS"),
    Item(
        "`SIGHUP`",
        "re-reads the rules file, like `portgate reload`.",
    ),
    Item("`SIGTERM`, `SIGINT`", "stop; the queues are unbound."),
    Section("ENVIRONMENT"),
    Item(
        "`RUST_LOG`",
        "log level: `error`, `warn`, `info` (the default) or `debug`. Logs go to \
        standard error; under systemd each line carries its syslog priority.",
    ),
    Item(
        "`NOTIFY_SOCKET`, `WATCHDOG_USEC`",
        "set by systemd for `Type=notify` and `WatchdogSec=`; see sd_notify(3).",
    ),
    Section("FILES"),
    Item(
        "`/etc/portgate/rules.yaml`",
        "the permit file (portgate-rules(5)); owned by root, readable by the group \
        `portgate`, kept across upgrades.",
    ),
    Item(
        "`/run/portgate/control.sock`",
        "the running daemon's control socket, for `reload`, `status`, `blocked` and \
        `explain` (mode 0600; its directory is the unit's `RuntimeDirectory=`).",
    ),
    Item(
        "`/usr/share/doc/portgate/examples/`",
        "the iptables fragments, and a commented permit file with two sites.",
    ),
    Section("EXIT STATUS"),
    Bullet(
        "`run`: 0 after `SIGTERM` or `SIGINT`; 1 when it cannot start (bad rules file, \
        a queue it cannot bind) or when a worker stops, so that systemd restarts it.",
    ),
    Bullet(
        "`check`: 0 when every file is valid and `run` would read it (as the user \
        running `check`; see `--insecure-rules`), 1 otherwise.",
    ),
    Bullet(
        "`reload`: 0 when the new rules are in force, 1 when they were refused (the \
        old ones stay); `reload`, `status` and `blocked`: 2 when no daemon answers.",
    ),
    Bullet("`explain`: 0, or 2 when no daemon answers and the rules file cannot be loaded."),
    Section("EXAMPLES"),
    Code(
        "$ portgate check /etc/portgate/rules.yaml\n\
         /etc/portgate/rules.yaml: ok: 0 sites, 0 permits, 0 blocks, 1 judged port\n\
         $ cd /usr/share/doc/portgate/examples\n\
         $ portgate explain --rules rules.yaml 192.0.2.13 25\n\
         DROP 192.0.2.13 port 25/tcp: blocked\n\
         \x20 decided by block 192.0.2.13/32 (ports 25) at rules.yaml:46:9\n\
         \x20 site: Example County Courthouse\n\
         \x20 reason: infected workstation, ticket 4711\n\
         \x20 site contact: Courthouse IT Manager, +1 303 555 0100, it@example.org\n\
         \x20 technical contact: Courthouse Network Admin, +1 303 555 0101, noc@example.org",
    ),
    Subsection("Adding a permit"),
    Para(
        "Add the row to the site's `permits:` in `/etc/portgate/rules.yaml`, then run \
        `systemctl reload portgate`: new connections from the address pass at once.",
    ),
    Section("SEE ALSO"),
    Para(
        "portgate-rules(5), iptables-extensions(8) (the `NFQUEUE` target), \
        iptables-restore(8), systemd.service(5), sd_notify(3)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn page(what: Generated) -> String {
        let mut out = Vec::new();
        generate(what, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn inline_marks() {
        assert_eq!(
            inline("run `portgate check` on *FILE* now"),
            vec![
                roman("run "),
                bold("portgate check"),
                roman(" on "),
                italic("FILE"),
                roman(" now")
            ]
        );
        // An unpaired mark is text.
        assert_eq!(inline("a * b"), vec![roman("a * b")]);
    }

    #[test]
    fn the_command_page_lists_every_visible_subcommand_and_option() {
        let man = page(Generated::Man);
        assert!(man.starts_with(".ie"), "one roff preamble, at the top");
        assert_eq!(man.matches(".ie \\n(.g").count(), 1);
        assert!(man.contains(".TH PORTGATE 8"));
        for sub in ["portgate run", "portgate check", "portgate explain"] {
            assert!(man.contains(&format!(".SS \"{sub}\"")), "{sub} missing");
        }
        assert!(man.contains("queue\\-maxlen"));
        assert!(man.contains("queue\\-bypass"));
        assert!(
            !man.contains("generate"),
            "the hidden subcommand stays hidden"
        );
        assert!(!man.contains(".SH OPTIONS"));
        assert!(man.contains(".SH \"JSON OUTPUT\""));
        for field in ["judged", "answer", "not_judged", "entry", "contacts"] {
            assert!(man.contains(&format!("\\fB{field}\\fR")), "{field} missing");
        }
        assert!(!man.contains('`'), "every inline mark was rendered");
        assert!(
            man.contains(r"\fB0\-3\fR"),
            "backticks in clap's help become bold"
        );
    }

    #[test]
    fn completions_name_the_subcommands() {
        let bash = page(Generated::CompleteBash);
        assert!(bash.contains("explain") && bash.contains("--queues"));
        assert!(
            bash.contains("--queue-maxlen"),
            "subcommand options are there"
        );
        assert!(!bash.contains("generate"));
        let zsh = page(Generated::CompleteZsh);
        assert!(zsh.starts_with("#compdef portgate"));
    }
}
