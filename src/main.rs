//! The `portgate` command: argument parsing, logging, exit codes.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use log::error;

use portgate::cli::{CheckArgs, Cli, Command, ExplainArgs, Generated, RunArgs};
use portgate::daemon::{Daemon, Options, RunError};
use portgate::rules;
use portgate::table::Table;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => check(&args),
        Command::Explain(args) => explain(&args),
        Command::Generate(args) => generate(args.what),
    }
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
            writeln!(buf, "<{prio}>{}", rec.args())
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
        summary_interval: Duration::from_secs(60),
        blocked_capacity: 65_536,
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
        Err(e @ RunError::WorkerStopped { .. }) => {
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
        match rules::load_file(path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("{}", w.render(&file));
                }
                println!("{file}: ok: {}", loaded.ruleset.summary());
            }
            Err(e) => {
                eprintln!("{e}");
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
    let file = args.rules.display().to_string();
    let loaded = match rules::load_file(&args.rules) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let table = Table::compile(&loaded.ruleset);
    let ex =
        portgate::explain::explain(&loaded.ruleset, &table, args.address, args.port, args.proto);
    print!("{}", ex.render(&loaded.ruleset, &file));
    ExitCode::SUCCESS
}

fn generate(what: Generated) -> ExitCode {
    match portgate::docs::generate(what, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portgate generate: {e}");
            ExitCode::FAILURE
        }
    }
}
