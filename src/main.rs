//! The `portgate` command: argument parsing, logging, exit codes.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use log::error;

use portgate::cli::{
    BlockedArgs, CheckArgs, Cli, ClientArgs, Command, DEFAULT_RULES, ExplainArgs, Generated,
    RunArgs,
};
use portgate::control::proto::{BlockedReply, ExplainReply, ReloadReply, Request, StatusReply};
use portgate::control::{ControlError, client, render};
use portgate::daemon::{Daemon, Options, RunError};
use portgate::rules;
use portgate::table::Table;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => check(&args),
        Command::Explain(args) => explain(&args),
        Command::Reload(args) => reload(&args),
        Command::Status(args) => status(&args),
        Command::Blocked(args) => blocked(&args),
        Command::Generate(args) => generate(args.what),
    }
}

/// Exit status when the daemon cannot be reached.
const NO_DAEMON: u8 = 2;

fn client_error(e: &ControlError) -> ExitCode {
    err(&format!("portgate: {e}\n"));
    ExitCode::from(NO_DAEMON)
}

/// Writes to stdout. When the reader has gone (`portgate blocked | head`),
/// ends quietly, as other Unix tools do, instead of panicking.
fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(s.as_bytes()).and_then(|()| o.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Writes to stderr, ignoring a stderr that has gone.
fn err(s: &str) {
    let mut o = std::io::stderr().lock();
    let _ = o.write_all(s.as_bytes());
}

fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => out(&format!("{s}\n")),
        Err(e) => err(&format!("portgate: cannot encode the answer: {e}\n")),
    }
}

fn reload(args: &ClientArgs) -> ExitCode {
    let r: ReloadReply = match client::request(&args.control, &Request::Reload {}) {
        Ok(r) => r,
        Err(e) => return client_error(&e),
    };
    if args.json {
        print_json(&r);
    } else if r.ok {
        out(&render::reload(&r));
    } else {
        err(&render::reload(&r));
    }
    if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn status(args: &ClientArgs) -> ExitCode {
    let mut s = match client::request::<StatusReply>(&args.control, &Request::Status {}) {
        Ok(s) => s,
        Err(e) => return client_error(&e),
    };
    // The kernel's queue view (/proc/net/netfilter/nfnetlink_queue) is
    // readable by root only: a daemon running as its own user cannot read
    // it, a client run by root can.
    if s.queues.iter().any(|q| q.kernel.is_none()) {
        let kernel = portgate::daemon::kernel::nfqueues();
        for q in &mut s.queues {
            if q.kernel.is_none() {
                q.kernel = kernel.get(&q.queue).cloned();
            }
        }
    }
    if args.json {
        print_json(&s);
    } else {
        out(&render::status(&s));
    }
    ExitCode::SUCCESS
}

fn blocked(args: &BlockedArgs) -> ExitCode {
    let req = Request::Blocked {
        since_secs: args.since.map(|d| d.as_secs()),
        top: args.top,
    };
    match client::request::<BlockedReply>(&args.client.control, &req) {
        Ok(b) if args.client.json => print_json(&b),
        Ok(b) => {
            let since = args
                .since
                .map(|d| humantime::format_duration(d).to_string());
            out(&render::blocked(&b, since.as_deref()));
        }
        Err(e) => return client_error(&e),
    }
    ExitCode::SUCCESS
}

/// Logs to stderr. Under systemd (stderr is the journal) lines carry a
/// `<N>` priority prefix and no timestamp: journald adds its own.
fn init_logging() {
    let journal = journal_stderr();
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if journal {
        b.format(|buf, rec| {
            let prio = match rec.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            // Every line its priority: journald splits a message at
            // newlines, and a line without one would fall to the default.
            let msg = rec.args().to_string();
            for line in msg.lines() {
                writeln!(buf, "<{prio}>{line}")?;
            }
            Ok(())
        });
    } else {
        b.format_target(false);
    }
    b.init();
}

/// True when stderr is the journal's stream (systemd sets JOURNAL_STREAM to
/// its device and inode).
fn journal_stderr() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(js) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    js == format!("{}:{}", meta.dev(), meta.ino())
}

fn run(args: RunArgs) -> ExitCode {
    init_logging();
    let opts = Options {
        rules: args.rules,
        queues: args.queues.0,
        fail_open: args.fail_open,
        queue_maxlen: args.queue_maxlen,
        summary_interval: args.summary_interval,
        blocked_capacity: usize::try_from(args.blocked_capacity).unwrap_or(usize::MAX),
        control: Some(args.control),
        metrics_file: args.metrics_file,
        metrics_interval: args.metrics_interval,
        insecure_rules: args.insecure_rules,
        test_panic_after: args.test_panic_after,
    };
    let daemon = match Daemon::new(opts) {
        Ok(d) => d,
        Err(e) => {
            error!("not starting: {e}");
            return ExitCode::FAILURE;
        }
    };
    match daemon.run() {
        Ok(()) => {
            // Workers are blocked in the kernel; exiting closes their
            // sockets, which unbinds the queues.
            std::process::exit(0);
        }
        Err(e @ RunError::ThreadStopped { .. }) => {
            error!("{e}; exiting so that the supervisor restarts portgate");
            std::process::exit(1);
        }
        Err(e) => {
            error!("{e}");
            std::process::exit(1);
        }
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    let mut ok = true;
    for path in &args.files {
        let file = path.display().to_string();
        // Read as `run` reads it (as this user), so that a file it would
        // refuse, for its contents or for who could write it, fails here.
        match portgate::daemon::load_rules(path, args.insecure_rules) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    err(&format!("{}\n", w.render(&file)));
                }
                if let Some(line) = (rules::Omitted {
                    errors: 0,
                    warnings: loaded.more_warnings,
                })
                .line()
                {
                    err(&format!("{line}\n"));
                }
                out(&format!("{file}: ok: {}\n", loaded.ruleset.summary()));
            }
            Err(e) => {
                err(&format!("{e}\n"));
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn explain(args: &ExplainArgs) -> ExitCode {
    // The running daemon's rules are the ones that judge traffic: ask it,
    // unless a file was named.
    if args.rules.is_none() {
        let req = Request::Explain {
            address: args.address,
            port: args.port,
            proto: args.proto,
        };
        match client::request::<ExplainReply>(&args.client.control, &req) {
            Ok(r) if args.client.json => {
                print_json(&r);
                return ExitCode::SUCCESS;
            }
            Ok(r) => {
                out(&r.text);
                out(&format!(
                    "  (rules in force in the running daemon, generation {})\n",
                    r.generation
                ));
                return ExitCode::SUCCESS;
            }
            Err(ControlError::NotRunning { .. }) => {}
            Err(e) => return client_error(&e),
        }
    }
    let path = args
        .rules
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(DEFAULT_RULES));
    let file = path.display().to_string();
    let loaded = match rules::load_file(&path) {
        Ok(l) => l,
        Err(e) => {
            err(&format!("{e}\n"));
            if args.rules.is_none() {
                err(&format!(
                    "portgate explain: no daemon answers on {}, and its rules file could not be read (--rules names another)\n",
                    args.client.control.display()
                ));
            }
            return ExitCode::from(NO_DAEMON);
        }
    };
    let table = Table::compile(&loaded.ruleset);
    let ex =
        portgate::explain::explain(&loaded.ruleset, &table, args.address, args.port, args.proto);
    if args.client.json {
        print_json(&ex.reply(&loaded.ruleset, &file, 0));
    } else {
        out(&ex.render(&loaded.ruleset, &file));
        if args.rules.is_none() {
            out(&format!("  (no daemon answers: rules read from {file})\n"));
        }
    }
    ExitCode::SUCCESS
}

fn generate(what: Generated) -> ExitCode {
    match portgate::docs::generate(what, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            err(&format!("portgate generate: {e}\n"));
            ExitCode::FAILURE
        }
    }
}
