//! `portgate run`: the daemon's wiring.
//!
//! Threads: one worker per queue (the hot path, see [`worker`]), one
//! reporter (logs and the blocked-sources record, see [`report`]), one
//! signal thread, and the main thread, which waits for signals and for any
//! worker to stop. The active rules live in one `ArcSwap`: a reload builds a
//! complete new table off to the side and publishes it with a single store,
//! so no packet ever waits on a reload, and a reload that fails leaves the
//! running table untouched.
//!
//! A worker that stops, for any reason, stops the daemon with an error: a
//! queue nobody serves would hold (or, with --queue-bypass, wave through)
//! every packet sent to it, and a supervisor restarting the whole process
//! is the one recovery that is certain to work.

pub mod blocked;
pub mod notify;
pub mod report;
pub mod stats;
pub mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use thiserror::Error;

use crate::rules::{self, LoadError, Ruleset};
use crate::table::Table;
use blocked::BlockedTable;
use stats::QueueStats;

/// The rules in force, as the workers see them.
pub struct Active {
    /// Counts successful loads since start, from 1.
    pub generation: u64,
    pub ruleset: Ruleset,
    pub table: Table,
    pub file: PathBuf,
    pub loaded_at: SystemTime,
}

pub struct Options {
    pub rules: PathBuf,
    pub queues: Vec<u16>,
    pub fail_open: bool,
    pub queue_maxlen: u32,
    /// How often the reporter summarises unidentified traffic.
    pub summary_interval: Duration,
    /// Capacity of the blocked-sources record.
    pub blocked_capacity: usize,
}

#[derive(Debug, Error)]
pub enum RunError {
    /// The rules file did not load at start.
    #[error("{0}")]
    Rules(#[source] LoadError),
    #[error(transparent)]
    Queue(#[from] worker::QueueError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A worker stopped; the daemon must be restarted.
    #[error("worker for queue {queue} stopped: {reason}")]
    WorkerStopped { queue: u16, reason: String },
}

/// What the main thread waits for.
enum Control {
    Signal(i32),
    WorkerStopped { queue: u16, reason: String },
}

/// Tells the main thread when a worker thread ends, however it ends
/// (returning an error, or unwinding from a panic).
struct Tombstone {
    queue: u16,
    reason: Option<String>,
    tx: Sender<Control>,
}

impl Drop for Tombstone {
    fn drop(&mut self) {
        let reason = self
            .reason
            .take()
            .unwrap_or_else(|| "the worker thread panicked".to_owned());
        let _ = self.tx.send(Control::WorkerStopped {
            queue: self.queue,
            reason,
        });
    }
}

pub struct Daemon {
    opts: Options,
    active: Arc<ArcSwap<Active>>,
    /// Serialises reloads (never taken on the hot path).
    reload_lock: Mutex<()>,
    pub stats: Vec<(u16, Arc<QueueStats>)>,
    pub blocked: Arc<Mutex<BlockedTable>>,
}

impl Daemon {
    /// Loads the rules; fails with every problem in the file when they are bad.
    pub fn new(opts: Options) -> Result<Daemon, RunError> {
        let started = Instant::now();
        let loaded = rules::load_file(&opts.rules).map_err(RunError::Rules)?;
        for w in &loaded.warnings {
            warn!("{}", w.render(&opts.rules.display().to_string()));
        }
        let table = Table::compile(&loaded.ruleset);
        info!(
            "loaded {}: generation 1, {} (in {} ms)",
            opts.rules.display(),
            loaded.ruleset.summary(),
            started.elapsed().as_millis()
        );
        let active = Arc::new(ArcSwap::from_pointee(Active {
            generation: 1,
            ruleset: loaded.ruleset,
            table,
            file: opts.rules.clone(),
            loaded_at: SystemTime::now(),
        }));
        let stats = opts
            .queues
            .iter()
            .map(|&q| (q, Arc::new(QueueStats::default())))
            .collect();
        let blocked = Arc::new(Mutex::new(BlockedTable::new(opts.blocked_capacity)));
        Ok(Daemon {
            opts,
            active,
            reload_lock: Mutex::new(()),
            stats,
            blocked,
        })
    }

    pub fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    /// Re-reads the rules file and swaps the new table in. On error the
    /// running table stays and the error (every problem, with positions) is
    /// returned.
    pub fn reload(&self) -> Result<Arc<Active>, LoadError> {
        let _serial = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        notify::reloading();
        let started = Instant::now();
        let file = self.opts.rules.display().to_string();
        let current = self.active.load();
        let loaded = match rules::load_file(&self.opts.rules) {
            Ok(l) => l,
            Err(e) => {
                error!(
                    "reload of {file} failed; generation {} stays in force:\n{e}",
                    current.generation
                );
                notify::ready(&status(&current));
                return Err(e);
            }
        };
        for w in &loaded.warnings {
            warn!("{}", w.render(&file));
        }
        let table = Table::compile(&loaded.ruleset);
        let next = Arc::new(Active {
            generation: current.generation + 1,
            ruleset: loaded.ruleset,
            table,
            file: self.opts.rules.clone(),
            loaded_at: SystemTime::now(),
        });
        self.active.store(Arc::clone(&next));
        info!(
            "reloaded {file}: generation {}, {} (in {} ms)",
            next.generation,
            next.ruleset.summary(),
            started.elapsed().as_millis()
        );
        notify::ready(&status(&next));
        Ok(next)
    }

    /// Serves the queues until SIGTERM or SIGINT (Ok) or until a worker
    /// stops (Err).
    pub fn run(self) -> Result<(), RunError> {
        // Bind every queue before starting anything, so a queue held by
        // another process fails the start, naming the queue.
        let mut queues = Vec::new();
        for &queue in &self.opts.queues {
            let q = worker::open(&worker::QueueConfig {
                queue,
                fail_open: self.opts.fail_open,
                maxlen: self.opts.queue_maxlen,
            })?;
            queues.push((queue, q));
        }

        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Control>();
        let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
            .map_err(RunError::Signals)?;
        let sig_tx = ctl_tx.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for s in signals.forever() {
                    if sig_tx.send(Control::Signal(s)).is_err() {
                        return;
                    }
                }
            })
            .map_err(RunError::Thread)?;

        let (ev_tx, ev_rx) = crossbeam_channel::bounded(8192);
        let reporter = report::Reporter {
            blocked: Arc::clone(&self.blocked),
            interval: self.opts.summary_interval,
        };
        let reporter_thread = std::thread::Builder::new()
            .name("reporter".into())
            .spawn(move || reporter.run(ev_rx))
            .map_err(RunError::Thread)?;

        for (queue, q) in queues {
            let stats = self
                .stats
                .iter()
                .find(|(n, _)| *n == queue)
                .map(|(_, s)| Arc::clone(s))
                .expect("stats exist for every queue");
            let active = Arc::clone(&self.active);
            let events = ev_tx.clone();
            let tx = ctl_tx.clone();
            std::thread::Builder::new()
                .name(format!("queue-{queue}"))
                .spawn(move || {
                    let mut tomb = Tombstone {
                        queue,
                        reason: None,
                        tx,
                    };
                    let res = worker::serve(queue, q, &active, &stats, &events);
                    tomb.reason = Some(match res {
                        Ok(()) => "the worker returned".to_owned(),
                        Err(e) => e.to_string(),
                    });
                })
                .map_err(RunError::Thread)?;
        }
        info!(
            "serving netfilter queue{} {} (fail-{})",
            if self.opts.queues.len() == 1 { "" } else { "s" },
            self.opts
                .queues
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
            if self.opts.fail_open {
                "open"
            } else {
                "closed"
            }
        );

        notify::ready(&status(&self.active()));
        let res = self.wait(&ctl_rx);
        // Workers block in the kernel and end with the process; let the
        // reporter write its last summary first.
        let _ = ev_tx.send(report::Event::Shutdown);
        let _ = reporter_thread.join();
        res
    }

    fn wait(&self, ctl: &Receiver<Control>) -> Result<(), RunError> {
        let mut watchdog = notify::Watchdog::from_env();
        loop {
            let got = ctl.recv_timeout(watchdog.wait());
            watchdog.tick();
            match got {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(Control::Signal(SIGHUP)) => {
                    info!("SIGHUP: reloading {}", self.opts.rules.display());
                    let _ = self.reload();
                }
                Ok(Control::Signal(s)) => {
                    let name = if s == SIGINT { "SIGINT" } else { "SIGTERM" };
                    info!("{name}: stopping");
                    notify::stopping();
                    return Ok(());
                }
                Ok(Control::WorkerStopped { queue, reason }) => {
                    return Err(RunError::WorkerStopped { queue, reason });
                }
                Err(_) => {
                    return Err(RunError::WorkerStopped {
                        queue: 0,
                        reason: "control channel closed".into(),
                    });
                }
            }
        }
    }
}

/// The one line `systemctl status` shows for the rules in force.
fn status(active: &Active) -> String {
    format!(
        "generation {} of {}: {}",
        active.generation,
        active.file.display(),
        active.ruleset.summary()
    )
}
