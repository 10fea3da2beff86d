//! The command line, as clap definitions.
//!
//! Kept in the library so the man page and shell completions are generated
//! from the same definitions the binary parses (see `packaging/`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::control::DEFAULT_SOCKET;
use crate::rules::Proto;

pub const DEFAULT_RULES: &str = "/etc/portgate/rules.yaml";

/// portgate: a userspace packet filter that permits identified addresses on
/// judged ports (SMTP first) and drops the rest, fed by iptables NFQUEUE.
#[derive(Debug, Parser)]
#[command(
    name = "portgate",
    version,
    about,
    long_about = None,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the filter in the foreground, judging packets from the netfilter
    /// queues. SIGHUP reloads the rules file; SIGTERM and SIGINT stop.
    Run(RunArgs),
    /// Validate rules files as `run` and `reload` read them (who could
    /// write the file included): print a summary and exit 0, or every
    /// problem as FILE:LINE:COLUMN and exit 1.
    Check(CheckArgs),
    /// Ask the running daemon to re-read its rules file; wait for the answer.
    /// Exit 0 with the new generation, or 1 with every problem (the old
    /// rules stay in force); 2 when no daemon answers.
    Reload(ClientArgs),
    /// Show the running daemon's state: rules, generation, per-queue counters
    /// and the kernel's own view of each queue.
    Status(ClientArgs),
    /// List the unidentified sources the daemon has seen: port, count, first
    /// and last seen. Most recent first, or the busiest with --top.
    Blocked(BlockedArgs),
    /// Show how the rules judge an address on a port, which entry decides,
    /// and whom to call. Asks the running daemon; with --rules, or when no
    /// daemon runs, reads the rules file.
    Explain(ExplainArgs),
    /// Write a man page or a shell completion script to stdout (used when
    /// building the package).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The daemon's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub control: PathBuf,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BlockedArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only sources seen within this long: `90s`, `15m`, `2h`, `1d`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// The N sources with the most packets, instead of the most recent.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The permit file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_RULES)]
    pub rules: PathBuf,
    /// Netfilter queues to serve, one worker thread each: `0`, `0-3` or
    /// `0,2,5` (match iptables' --queue-num or --queue-balance).
    #[arg(long, value_name = "SPEC", default_value = "0", value_parser = parse_queues)]
    pub queues: QueueSpec,
    /// When a queue is full, let the excess packets through instead of
    /// dropping them (the kernel's NFQA_CFG_F_FAIL_OPEN).
    #[arg(long)]
    pub fail_open: bool,
    /// Packets the kernel may hold per queue, waiting for a verdict (8 to
    /// 1048576).
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(8..=1_048_576))]
    pub queue_maxlen: u32,
    /// The control socket for `portgate reload`, `status`, `blocked` and
    /// `explain`.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub control: PathBuf,
    /// Keep Prometheus metrics in this file (node_exporter's textfile
    /// collector reads `*.prom`), rewritten atomically every few seconds.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// How often to rewrite the metrics file (100ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "5s",
          value_parser = duration_in(Duration::from_millis(100), Duration::from_secs(3600)))]
    pub metrics_interval: Duration,
    /// How often to log a summary of unidentified traffic (1s to 1d).
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = duration_in(Duration::from_secs(1), Duration::from_secs(86_400)))]
    pub summary_interval: Duration,
    /// Unidentified source/port pairs remembered for `portgate blocked`
    /// (8 to 4194304; about 128 bytes each, allocated at start); when full,
    /// the least recently seen go first.
    #[arg(long, value_name = "N", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(8..=4_194_304))]
    pub blocked_capacity: u64,
    /// Read the rules file even when someone other than root and the
    /// daemon's user could write it (or its directory).
    #[arg(long)]
    pub insecure_rules: bool,
    /// Fault injection for tests: a worker panics after this many packets.
    #[arg(long, value_name = "N", hide = true)]
    pub test_panic_after: Option<u64>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rules files to validate.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Accept a file that someone other than root and this user could
    /// write (or replace), as `run --insecure-rules` does; without it,
    /// such a file fails the check as it fails `run` and `reload`.
    #[arg(long)]
    pub insecure_rules: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Read this permit file instead of asking the running daemon [default
    /// when no daemon runs: /etc/portgate/rules.yaml].
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// The address to judge (as the source of a connection).
    pub address: IpAddr,
    /// The destination port.
    pub port: u16,
    /// The transport protocol.
    #[arg(long, default_value = "tcp", value_parser = parse_proto)]
    pub proto: Proto,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub what: Generated,
}

/// What `portgate generate` writes (see [`crate::docs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    /// The man page portgate(8).
    Man,
    /// The man page portgate-rules(5), the permit file's format.
    RulesMan,
    /// bash completion.
    CompleteBash,
    /// zsh completion.
    CompleteZsh,
}

/// A parser for durations between `min` and `max`.
fn duration_in(min: Duration, max: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |s| {
        let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
        if d < min || d > max {
            return Err(format!(
                "{s} is outside {} to {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(d)
    }
}

fn parse_proto(s: &str) -> Result<Proto, String> {
    s.parse()
}

/// A set of netfilter queue numbers, sorted and without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec(pub Vec<u16>);

/// Queues one daemon serves at most: one worker thread each.
const MAX_QUEUES: usize = 64;

fn too_many(n: usize) -> String {
    format!("{n} queues: one thread each is too many; use at most {MAX_QUEUES}")
}

/// Parses `0`, `0-3`, `0,2,5` and combinations such as `0-3,8`.
pub fn parse_queues(s: &str) -> Result<QueueSpec, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<u16>()
            .map_err(|_| format!("{t:?} is not a queue number (0 to 65535)"))
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range {part:?} runs backwards"));
                }
                if usize::from(b - a) >= MAX_QUEUES {
                    return Err(too_many(usize::from(b - a) + 1));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
        out.sort_unstable();
        out.dedup();
        if out.len() > MAX_QUEUES {
            return Err(too_many(out.len()));
        }
    }
    Ok(QueueSpec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_specs() {
        assert_eq!(parse_queues("0").unwrap().0, vec![0]);
        assert_eq!(parse_queues("0-3").unwrap().0, vec![0, 1, 2, 3]);
        assert_eq!(parse_queues("0,2,5").unwrap().0, vec![0, 2, 5]);
        assert_eq!(parse_queues("5,0-2,2").unwrap().0, vec![0, 1, 2, 5]);
        assert!(parse_queues("3-1").is_err());
        assert!(parse_queues("").is_err());
        assert!(parse_queues("a").is_err());
        assert!(parse_queues("65536").is_err());
        assert!(parse_queues("0-100").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
