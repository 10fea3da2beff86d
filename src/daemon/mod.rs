//! `portgate run`: the daemon's wiring.
//!
//! Threads: one worker per queue (the hot path, see [`worker`]), one
//! reporter (logs and the blocked-sources record, see [`report`]), the
//! control socket (see [`crate::control`]), the metrics writer (see
//! [`metrics`]), one signal thread, and the main thread, which waits for
//! signals and for any worker to stop. The active rules live in one
//! `ArcSwap`: a reload builds a complete new table off to the side and
//! publishes it with a single store, so no packet ever waits on a reload,
//! and a reload that fails leaves the running table untouched.
//!
//! A worker that stops, for any reason, stops the daemon with an error: a
//! queue nobody serves would hold (or, with --queue-bypass, wave through)
//! every packet sent to it, and a supervisor restarting the whole process
//! is the one recovery that is certain to work.

pub mod blocked;
pub mod kernel;
pub mod metrics;
pub mod notify;
pub mod privs;
pub mod report;
pub mod stats;
pub mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use thiserror::Error;

use crate::control;
use crate::queue::{Queue, QueueConfig, QueueError};
use crate::rules::{self, LoadError, Proto, Ruleset};
use crate::table::Table;
use blocked::BlockedTable;
use stats::{MAX_PORT_IDS, QueueStats};

/// The rules in force, as the workers see them.
pub struct Active {
    /// Counts successful loads since start, from 1.
    pub generation: u64,
    pub ruleset: Ruleset,
    pub table: Table,
    pub loaded_at: SystemTime,
    /// For each judged port's slot in `table`, the index of its per-port
    /// counters, stable across reloads (`None` past [`MAX_PORT_IDS`]).
    pub port_ids: Vec<Option<u16>>,
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
    /// The control socket, if any.
    pub control: Option<PathBuf>,
    /// The Prometheus textfile to keep up to date, if any.
    pub metrics_file: Option<PathBuf>,
    pub metrics_interval: Duration,
    /// Skip the StrictModes-like check of the rules file's permissions.
    pub insecure_rules: bool,
    /// For fault-injection tests only: a worker panics after judging this
    /// many packets.
    pub test_panic_after: Option<u64>,
}

#[derive(Debug, Error)]
pub enum RunError {
    /// The rules file did not load at start.
    #[error("{0}")]
    Rules(#[source] LoadError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// Dropping privileges failed.
    #[error("cannot drop capabilities: {0}")]
    Privileges(#[source] std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A worker, or another of the daemon's threads, stopped; the daemon
    /// must be restarted.
    #[error("{thread} stopped: {reason}")]
    ThreadStopped { thread: String, reason: String },
}

/// What the main thread waits for.
enum Control {
    Signal(i32),
    ThreadStopped { thread: String, reason: String },
}

/// Tells the main thread when one of the daemon's threads ends without
/// being asked to, however it ends (returning an error, or unwinding from a
/// panic): a daemon without its reporter or control socket is as broken as
/// one without a worker, only more quietly.
struct Tombstone {
    thread: String,
    /// Why the thread stopped; `None` while it runs (and when it panics).
    reason: Option<String>,
    /// False when the thread stopped because it was asked to.
    armed: bool,
    tx: Sender<Control>,
}

impl Drop for Tombstone {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let reason = self
            .reason
            .take()
            .unwrap_or_else(|| "the thread panicked".to_owned());
        let _ = self.tx.send(Control::ThreadStopped {
            thread: std::mem::take(&mut self.thread),
            reason,
        });
    }
}

/// Starts a thread whose end, unless `stop` was set, ends the daemon.
fn spawn_guarded(
    name: &str,
    thread: String,
    tx: Sender<Control>,
    stop: Arc<AtomicBool>,
    body: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, RunError> {
    spawn(name, move || {
        let mut tomb = Tombstone {
            thread,
            reason: None,
            armed: true,
            tx,
        };
        match body() {
            Ok(()) if stop.load(Ordering::Relaxed) => tomb.armed = false,
            Ok(()) => tomb.reason = Some("it returned".into()),
            Err(e) => tomb.reason = Some(e),
        }
    })
}

/// The outcome of the last reload attempt.
#[derive(Clone, Copy, Debug)]
pub struct ReloadRecord {
    pub at: SystemTime,
    pub ok: bool,
    pub errors: usize,
}

/// Judged ports, numbered in order of first appearance, so per-port
/// counters keep their meaning across reloads that add or drop ports.
#[derive(Default)]
struct PortRegistry {
    ids: HashMap<(Proto, u16), u16>,
}

impl PortRegistry {
    fn ids_for(&mut self, rules: &Ruleset) -> Vec<Option<u16>> {
        rules
            .ports
            .iter()
            .map(|p| {
                let next = self.ids.len();
                match self.ids.get(&(p.proto, p.port)) {
                    Some(id) => Some(*id),
                    None if next < MAX_PORT_IDS => {
                        let id = u16::try_from(next).ok()?;
                        self.ids.insert((p.proto, p.port), id);
                        Some(id)
                    }
                    None => None,
                }
            })
            .collect()
    }

    fn all(&self) -> Vec<((Proto, u16), u16)> {
        let mut v: Vec<_> = self.ids.iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_unstable();
        v
    }
}

/// A reload that took effect: the rules now in force, and the file's
/// warnings.
pub struct Reloaded {
    pub active: Arc<Active>,
    /// The first [`rules::MAX_SHOWN`] warnings, and how many more there were.
    pub warnings: Vec<rules::Diagnostic>,
    pub more_warnings: usize,
}

/// A reload that was refused: the rules still in force, and why.
pub struct Refused {
    pub active: Arc<Active>,
    pub error: LoadError,
}

/// What every thread of the daemon shares.
pub struct Shared {
    pub opts: Options,
    active: ArcSwap<Active>,
    /// Serialises reloads (never taken on the hot path).
    reload_lock: Mutex<()>,
    pub stats: Vec<(u16, Arc<QueueStats>)>,
    pub blocked: Mutex<BlockedTable>,
    pub started: SystemTime,
    last_reload: Mutex<Option<ReloadRecord>>,
    ports: Mutex<PortRegistry>,
    /// Generations replaced by a reload. A worker's cache may still hold
    /// one; keeping a reference here means the worker never drops the last
    /// one (freeing a large ruleset takes long enough to stall packets).
    /// [`Shared::sweep_retired`] frees them off the packet path.
    retired: Mutex<Vec<Arc<Active>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these records inconsistent in a way
    // that matters more than serving them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    pub fn last_reload(&self) -> Option<ReloadRecord> {
        *lock(&self.last_reload)
    }

    pub fn blocked(&self) -> MutexGuard<'_, BlockedTable> {
        lock(&self.blocked)
    }

    /// Frees retired generations no worker holds any more. Called after
    /// each reload and by the control thread a few times a second.
    pub fn sweep_retired(&self) {
        // Take them out of the lock first: dropping may take a while.
        let free: Vec<Arc<Active>> = {
            let mut retired = lock(&self.retired);
            let (free, keep) = retired.drain(..).partition(|a| Arc::strong_count(a) == 1);
            *retired = keep;
            free
        };
        drop(free);
    }

    /// Judged ports ever seen and their counter ids.
    pub fn port_ids(&self) -> Vec<((Proto, u16), u16)> {
        lock(&self.ports).all()
    }

    fn build(&self, loaded: rules::Loaded, generation: u64) -> Active {
        let table = Table::compile(&loaded.ruleset);
        let port_ids = lock(&self.ports).ids_for(&loaded.ruleset);
        Active {
            generation,
            ruleset: loaded.ruleset,
            table,
            loaded_at: SystemTime::now(),
            port_ids,
        }
    }

    /// Re-reads the rules file and swaps the new table in. On error the
    /// running table stays and the error (every problem, with positions) is
    /// returned.
    pub fn reload(&self) -> Result<Reloaded, Refused> {
        let _serial = lock(&self.reload_lock);
        notify::reloading();
        let started = Instant::now();
        let file = self.opts.rules.display().to_string();
        let current = self.active.load_full();
        let loaded = match load_rules(&self.opts.rules, self.opts.insecure_rules) {
            Ok(l) => l,
            Err(e) => {
                error!(
                    "reload of {file} failed; generation {} stays in force:\n{}",
                    current.generation,
                    e.refused_reload()
                );
                *lock(&self.last_reload) = Some(ReloadRecord {
                    at: SystemTime::now(),
                    ok: false,
                    errors: e.error_count(),
                });
                notify::ready(&status(&current));
                return Err(Refused {
                    active: current,
                    error: e,
                });
            }
        };
        for w in &loaded.warnings {
            warn!("{}", w.render(&file));
        }
        let more_warnings = loaded.more_warnings;
        if let Some(line) = (rules::Omitted {
            errors: 0,
            warnings: more_warnings,
        })
        .line()
        {
            warn!("{file}: {line}");
        }
        let warnings = loaded.warnings.clone();
        let next = Arc::new(self.build(loaded, current.generation + 1));
        self.active.store(Arc::clone(&next));
        lock(&self.retired).push(current);
        self.sweep_retired();
        *lock(&self.last_reload) = Some(ReloadRecord {
            at: SystemTime::now(),
            ok: true,
            errors: 0,
        });
        info!(
            "reloaded {file}: generation {}, {} (in {} ms)",
            next.generation,
            next.ruleset.summary(),
            started.elapsed().as_millis()
        );
        notify::ready(&status(&next));
        Ok(Reloaded {
            active: next,
            warnings,
            more_warnings,
        })
    }
}

/// Reads and validates the rules file as `run` does at start and at every
/// reload, after checking who could have written it (unless `insecure`).
/// `portgate check` reads files through it too, so that it refuses what
/// the daemon would refuse, with the same words.
pub fn load_rules(path: &Path, insecure: bool) -> Result<rules::Loaded, LoadError> {
    let name = path.display().to_string();
    let file = privs::open_rules(path, insecure).map_err(|e| {
        let (message, hint) = match e {
            privs::OpenError::Untrusted(why) => (
                format!("refusing to read it: {why}"),
                Some("--insecure-rules overrides this check".to_owned()),
            ),
            e => (e.to_string(), None),
        };
        LoadError::one(
            &name,
            rules::Diagnostic {
                severity: rules::Severity::Error,
                pos: rules::Pos::default(),
                message,
                hint,
            },
        )
    })?;
    let text = rules::file::read(file, &name)?;
    rules::load(&text, &name)
}

pub struct Daemon {
    shared: Arc<Shared>,
}

impl Daemon {
    /// Loads the rules; fails with every problem in the file when they are bad.
    pub fn new(opts: Options) -> Result<Daemon, RunError> {
        let started = Instant::now();
        let loaded = load_rules(&opts.rules, opts.insecure_rules).map_err(RunError::Rules)?;
        let file = opts.rules.display().to_string();
        for w in &loaded.warnings {
            warn!("{}", w.render(&file));
        }
        if let Some(line) = (rules::Omitted {
            errors: 0,
            warnings: loaded.more_warnings,
        })
        .line()
        {
            warn!("{file}: {line}");
        }
        let stats = opts
            .queues
            .iter()
            .map(|&q| (q, Arc::new(QueueStats::default())))
            .collect();
        let blocked = Mutex::new(BlockedTable::new(opts.blocked_capacity));
        let placeholder = Active {
            generation: 0,
            ruleset: Ruleset::default(),
            table: Table::compile(&Ruleset::default()),
            loaded_at: SystemTime::now(),
            port_ids: Vec::new(),
        };
        let shared = Shared {
            opts,
            active: ArcSwap::from_pointee(placeholder),
            reload_lock: Mutex::new(()),
            stats,
            blocked,
            started: SystemTime::now(),
            last_reload: Mutex::new(None),
            ports: Mutex::new(PortRegistry::default()),
            retired: Mutex::new(Vec::new()),
        };
        let first = shared.build(loaded, 1);
        info!(
            "loaded {}: generation 1, {} (in {} ms)",
            shared.opts.rules.display(),
            first.ruleset.summary(),
            started.elapsed().as_millis()
        );
        shared.active.store(Arc::new(first));
        Ok(Daemon {
            shared: Arc::new(shared),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves the queues until SIGTERM or SIGINT (Ok) or until a worker
    /// stops (Err).
    pub fn run(self) -> Result<(), RunError> {
        let shared = &self.shared;
        let opts = &shared.opts;
        // Claim the control socket first: a second daemon must not get as
        // far as touching the queues of the first.
        let listener = match &opts.control {
            Some(path) => Some(control::server::bind(path)?),
            None => None,
        };
        // Bind every queue before starting anything, so a queue held by
        // another process fails the start, naming the queue (and leaves no
        // control socket behind).
        let mut queues = Vec::new();
        for &queue in &opts.queues {
            let q = Queue::open(&QueueConfig {
                queue,
                fail_open: opts.fail_open,
                max_len: opts.queue_maxlen,
            });
            match q {
                Ok(q) => queues.push(q),
                Err(e) => {
                    if let Some(path) = &opts.control {
                        control::server::remove(path);
                    }
                    return Err(e.into());
                }
            }
        }

        // Everything that needed more than CAP_NET_ADMIN is done. Before any
        // thread starts (capabilities are per thread), give the rest up.
        match privs::keep_only_net_admin().map_err(RunError::Privileges)? {
            privs::CapsOutcome::Dropped { before } => {
                info!("kept only CAP_NET_ADMIN (held {before} capabilities)")
            }
            privs::CapsOutcome::AlreadyMinimal => {}
        }

        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Control>();
        let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
            .map_err(RunError::Signals)?;
        let sig_tx = ctl_tx.clone();
        spawn("signals", move || {
            for s in signals.forever() {
                if sig_tx.send(Control::Signal(s)).is_err() {
                    return;
                }
            }
        })?;

        let stop = Arc::new(AtomicBool::new(false));
        // 64 messages of up to 256 events: room for 16384 reports, 0.6 MiB.
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(64);
        let reporter = report::Reporter {
            shared: Arc::clone(shared),
            interval: opts.summary_interval,
        };
        let reporter_thread = spawn_guarded(
            "reporter",
            "the reporter thread".into(),
            ctl_tx.clone(),
            Arc::clone(&stop),
            move || {
                reporter.run(ev_rx);
                Ok(())
            },
        )?;
        if let Some(listener) = listener {
            let sh = Arc::clone(shared);
            let st = Arc::clone(&stop);
            spawn_guarded(
                "control",
                "the control socket thread".into(),
                ctl_tx.clone(),
                Arc::clone(&stop),
                move || {
                    control::server::serve(&listener, &sh, &st);
                    Ok(())
                },
            )?;
        }
        if let Some(path) = opts.metrics_file.clone() {
            let sh = Arc::clone(shared);
            let st = Arc::clone(&stop);
            spawn_guarded(
                "metrics",
                "the metrics thread".into(),
                ctl_tx.clone(),
                Arc::clone(&stop),
                move || {
                    metrics::write_loop(&path, &sh, &st);
                    Ok(())
                },
            )?;
        }

        let mut workers = Vec::new();
        for mut q in queues {
            let queue = q.number();
            let stats = shared
                .stats
                .iter()
                .find(|(n, _)| *n == queue)
                .map(|(_, s)| Arc::clone(s))
                .expect("stats exist for every queue");
            let sh = Arc::clone(shared);
            let events = ev_tx.clone();
            let st = Arc::clone(&stop);
            workers.push(spawn_guarded(
                &format!("queue-{queue}"),
                format!("worker for queue {queue}"),
                ctl_tx.clone(),
                Arc::clone(&stop),
                move || {
                    let fault = worker::Fault {
                        panic_after: sh.opts.test_panic_after,
                    };
                    worker::serve(&mut q, &sh.active, &stats, &events, &st, fault)
                        .map_err(|e| e.to_string())
                },
            )?);
        }
        info!(
            "serving netfilter queue{} {} (fail-{})",
            if opts.queues.len() == 1 { "" } else { "s" },
            opts.queues
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
            if opts.fail_open { "open" } else { "closed" }
        );

        notify::ready(&status(&shared.active()));
        let res = self.wait(&ctl_rx);
        // Workers notice within one idle wake, answer what they hold, and
        // unbind their queues.
        stop.store(true, Ordering::Relaxed);
        if res.is_ok() {
            for w in workers {
                let _ = w.join();
            }
        }
        let _ = ev_tx.send(report::Batch::shutdown());
        let _ = reporter_thread.join();
        if let Some(path) = &opts.metrics_file {
            let _ = metrics::write(path, shared);
        }
        if let Some(path) = &opts.control {
            control::server::remove(path);
        }
        for (queue, st) in &shared.stats {
            info!(
                "queue {queue}: {} packets, {} accepted, {} dropped ({} malformed), {} ENOBUFS, {} reports lost to a full channel, {} verdict errors",
                st.packets.get(),
                st.accepted.get(),
                st.dropped.get(),
                st.malformed_total(),
                st.enobufs.get(),
                st.channel_full.get(),
                st.verdict_errors.get() + st.protocol_errors.get()
            );
        }
        res
    }

    fn wait(&self, ctl: &Receiver<Control>) -> Result<(), RunError> {
        let mut watchdog = notify::Watchdog::from_env();
        let mut stalled_before = false;
        loop {
            let got = ctl.recv_timeout(watchdog.wait());
            // The watchdog vouches for the workers, not for this thread: a
            // worker that has not gone round its loop for STALLED_AFTER
            // withholds the ping, so systemd restarts a daemon whose
            // packets wait forever.
            let stalled = self.stalled_workers();
            if stalled.is_empty() {
                watchdog.tick();
                if stalled_before {
                    info!("all workers running again");
                }
            } else if !stalled_before {
                warn!(
                    "stalled: {}; withholding the watchdog ping",
                    stalled.join(", ")
                );
            }
            stalled_before = !stalled.is_empty();
            match got {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(Control::Signal(SIGHUP)) => {
                    info!("SIGHUP: reloading {}", self.shared.opts.rules.display());
                    let _ = self.shared.reload();
                }
                Ok(Control::Signal(s)) => {
                    let name = if s == SIGINT { "SIGINT" } else { "SIGTERM" };
                    info!("{name}: stopping");
                    notify::stopping();
                    return Ok(());
                }
                Ok(Control::ThreadStopped { thread, reason }) => {
                    return Err(RunError::ThreadStopped { thread, reason });
                }
                Err(_) => {
                    return Err(RunError::ThreadStopped {
                        thread: "the main loop".into(),
                        reason: "its channel closed".into(),
                    });
                }
            }
        }
    }
}

/// A worker whose loop has not run for this long is stalled: it wakes at
/// least every [`worker::IDLE_WAKE`] even with no traffic.
const STALLED_AFTER_MS: u64 = 5_000;

impl Daemon {
    fn stalled_workers(&self) -> Vec<String> {
        self.shared
            .stats
            .iter()
            .filter(|(_, s)| s.since_beat_ms() > STALLED_AFTER_MS)
            .map(|(q, s)| format!("queue {q} worker silent for {} ms", s.since_beat_ms()))
            .collect()
    }
}

fn spawn(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, RunError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(RunError::Thread)
}

/// The one line `systemctl status` shows for the rules in force.
fn status(active: &Active) -> String {
    format!(
        "generation {}: {}",
        active.generation,
        active.ruleset.summary()
    )
}
