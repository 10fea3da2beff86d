//! The command line, as clap definitions.
//!
//! Kept in the library so the man page and shell completions are generated
//! from the same definitions the binary parses (see `packaging/`).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::rules::Proto;

pub const DEFAULT_RULES: &str = "/etc/portgate/rules.yaml";

/// portgate: a userspace packet filter that permits identified addresses on
/// judged ports (SMTP first) and drops the rest, fed by iptables NFQUEUE.
#[derive(Debug, Parser)]
#[command(name = "portgate", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the filter in the foreground, judging packets from the netfilter
    /// queues. SIGHUP reloads the rules file; SIGTERM and SIGINT stop.
    Run(RunArgs),
    /// Validate rules files: print a summary and exit 0, or every problem
    /// as FILE:LINE:COLUMN and exit 1.
    Check(CheckArgs),
    /// Show how the rules judge an address on a port, and which entry decides.
    Explain(ExplainArgs),
    /// Write a man page or a shell completion script to stdout (used when
    /// building the package).
    #[command(hide = true)]
    Generate(GenerateArgs),
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
    /// Packets the kernel may hold per queue, waiting for a verdict.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub queue_maxlen: u32,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rules files to validate.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The permit file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_RULES)]
    pub rules: PathBuf,
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

fn parse_proto(s: &str) -> Result<Proto, String> {
    s.parse()
}

/// A set of netfilter queue numbers, sorted and without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec(pub Vec<u16>);

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
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.len() > 64 {
        return Err(format!(
            "{} queues: one thread each is too many; use at most 64",
            out.len()
        ));
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
