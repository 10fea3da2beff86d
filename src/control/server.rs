//! The daemon's side of the control socket.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};

use super::ControlError;
use super::proto::{
    BlockedEntry, BlockedInfo, BlockedReply, LastReload, PortInfo, QueueInfo, ReloadReply, Request,
    Response, RulesInfo, StatusReply,
};
use crate::daemon::{Refused, Reloaded, Shared, kernel};
use crate::explain;

/// Longest request line we read; requests are a few dozen bytes.
const MAX_REQUEST: u64 = 4096;

/// Claims the socket: refuses when a live daemon answers on it, replaces a
/// stale one, creates the directory if needed, and leaves the socket mode
/// 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let err = |source| ControlError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Only ever remove a socket: a path given by mistake that names a
        // file (or a link to one) is an error, not something to delete.
        if !meta.file_type().is_socket() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists and is not a socket",
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(err)?;
        info!("removed stale control socket {}", path.display());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // No window in which the socket is open to others: create it with
    // umask 077, then make the mode explicit.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let listener = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = listener.map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    // Accept only after poll says a connection waits, so the thread also
    // sees the daemon stopping.
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

/// Removes the socket when the daemon stops.
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// Answers requests until `stop`.
/// Requests answered at once; more wait for a free handler briefly, then are
/// told the daemon is busy. A reload holds one handler for as long as it
/// takes; status, blocked and explain take milliseconds.
const MAX_HANDLERS: usize = 8;

/// Answers requests until `stop`, each connection on its own thread, so
/// that a slow or silent client holds up nobody else.
pub fn serve(listener: &UnixListener, shared: &Arc<Shared>, stop: &AtomicBool) {
    let me = rustix::process::geteuid();
    let busy = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        // Wait for a connection, waking now and then to see the stop flag.
        let mut fds = [rustix::event::PollFd::new(
            listener,
            rustix::event::PollFlags::IN,
        )];
        let tick = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 250_000_000,
        };
        if !matches!(rustix::event::poll(&mut fds, Some(&tick)), Ok(n) if n > 0) {
            shared.sweep_retired();
            continue;
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                warn!("control socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        // Only root and the daemon's own user may steer it. The request is
        // still read before the refusal is sent, so the client, which
        // writes first, is not cut off mid-write and sees the refusal.
        let allowed = match rustix::net::sockopt::socket_peercred(&stream) {
            Ok(cred) if cred.uid.is_root() || cred.uid == me => true,
            Ok(cred) => {
                warn!(
                    "control socket: refused a request from uid {} (pid {})",
                    cred.uid.as_raw(),
                    cred.pid.as_raw_nonzero()
                );
                false
            }
            Err(e) => {
                warn!("control socket: cannot read peer credentials: {e}");
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(REQUEST_TIME));
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_HANDLERS {
            busy.fetch_sub(1, Ordering::AcqRel);
            reply(
                stream,
                &Response::Error {
                    error: format!("busy: {MAX_HANDLERS} requests are being answered; try again"),
                },
            );
            continue;
        }
        let (sh, busy) = (Arc::clone(shared), Arc::clone(&busy));
        let spawned = std::thread::Builder::new()
            .name("control-request".into())
            .spawn(move || {
                handle(stream, &sh, allowed);
                busy.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            warn!("control socket: cannot start a handler: {e}");
        }
    }
}

/// A client has this long to send its whole request, however it dribbles.
const REQUEST_TIME: Duration = Duration::from_secs(2);

/// Reads one request line: at most [`MAX_REQUEST`] bytes, within
/// [`REQUEST_TIME`] in all.
fn read_request(stream: &UnixStream) -> Result<String, String> {
    let deadline = Instant::now() + REQUEST_TIME;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("the request did not arrive in time".into());
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = match (&*stream).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read the request: {e}")),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            break;
        }
        if buf.len() as u64 > MAX_REQUEST {
            return Err("the request is too long".into());
        }
    }
    String::from_utf8(buf).map_err(|_| "the request is not UTF-8".into())
}

fn handle(stream: UnixStream, shared: &Shared, allowed: bool) {
    let response = match read_request(&stream) {
        Err(error) => Response::Error { error },
        Ok(_) if !allowed => Response::Error {
            error: "permission denied: only root and the portgate user may use the control socket"
                .into(),
        },
        Ok(line) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => answer(req, shared),
            Err(e) => Response::Error {
                error: format!("not a request: {e}"),
            },
        },
    };
    reply(stream, &response);
}

fn reply(mut stream: UnixStream, r: &Response) {
    let mut text = serde_json::to_string(r)
        .unwrap_or_else(|e| format!(r#"{{"error":"cannot encode the answer: {e}"}}"#));
    text.push('\n');
    let _ = stream.write_all(text.as_bytes());
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn answer(req: Request, shared: &Shared) -> Response {
    let file = shared.opts.rules.display().to_string();
    match req {
        Request::Reload {} => {
            info!("reload requested on the control socket");
            match shared.reload() {
                Ok(Reloaded {
                    active,
                    warnings,
                    more_warnings,
                }) => Response::Reload(ReloadReply {
                    ok: true,
                    file,
                    generation: active.generation,
                    summary: active.ruleset.summary(),
                    diagnostics: warnings,
                    omitted: crate::rules::Omitted {
                        errors: 0,
                        warnings: more_warnings,
                    },
                }),
                Err(Refused { active, error }) => Response::Reload(ReloadReply {
                    ok: false,
                    file,
                    generation: active.generation,
                    summary: active.ruleset.summary(),
                    diagnostics: error.diagnostics,
                    omitted: error.omitted,
                }),
            }
        }
        Request::Status {} => Response::Status(Box::new(status(shared))),
        Request::Blocked { since_secs, top } => {
            let since = since_secs
                .and_then(|s| SystemTime::now().checked_sub(Duration::from_secs(s)))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let table = shared.blocked();
            let mut rows = match top {
                Some(_) => table.top(since),
                None => table.recent(since),
            };
            let matching = rows.len();
            if let Some(n) = top {
                rows.truncate(n);
            }
            let entries = rows
                .into_iter()
                .map(|(k, r)| BlockedEntry {
                    source: k.src.into(),
                    port: k.port,
                    proto: k.proto,
                    count: r.count,
                    first_seen: unix(r.first),
                    last_seen: unix(r.last),
                    last_destination: r.last_dst.into(),
                    state: if r.monitored {
                        "monitored"
                    } else if r.blocked {
                        "blocked"
                    } else {
                        "dropped"
                    }
                    .into(),
                })
                .collect();
            Response::Blocked(BlockedReply {
                entries,
                matching,
                table: BlockedInfo {
                    entries: table.len(),
                    capacity: table.capacity(),
                    evicted: table.evicted(),
                },
            })
        }
        Request::Explain {
            address,
            port,
            proto,
        } => {
            let active = shared.active();
            let ex = explain::explain(&active.ruleset, &active.table, address, port, proto);
            Response::Explain(Box::new(ex.reply(
                &active.ruleset,
                &file,
                active.generation,
            )))
        }
    }
}

fn status(shared: &Shared) -> StatusReply {
    let active = shared.active();
    let kernel = kernel::nfqueues();
    let (v4, v6) = active.table.len();
    let queues = shared
        .stats
        .iter()
        .map(|(queue, s)| QueueInfo {
            queue: *queue,
            packets: s.packets.get(),
            accepted: s.accepted.get(),
            dropped: s.dropped.get(),
            accepted_source_permit: s.accepted_source_permit.get(),
            accepted_destination_permit: s.accepted_destination_permit.get(),
            accepted_unjudged: s.accepted_unjudged.get(),
            accepted_later_fragment: s.accepted_later_fragment.get(),
            monitored: s.monitored.get(),
            dropped_unidentified: s.dropped_unidentified.get(),
            unidentified_blocked: s.unidentified_blocked.get(),
            malformed: s.malformed_total(),
            enobufs: s.enobufs.get(),
            channel_full: s.channel_full.get(),
            verdict_errors: s.verdict_errors.get() + s.protocol_errors.get(),
            since_heartbeat_ms: s.since_beat_ms(),
            kernel: kernel.get(queue).cloned(),
        })
        .collect();
    let blocked = shared.blocked();
    StatusReply {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started_at: unix(shared.started),
        uptime_secs: shared.started.elapsed().map_or(0, |d| d.as_secs()),
        fail_open: shared.opts.fail_open,
        rules: RulesInfo {
            file: shared.opts.rules.display().to_string(),
            generation: active.generation,
            loaded_at: unix(active.loaded_at),
            summary: active.ruleset.summary(),
            ports: active
                .ruleset
                .ports
                .iter()
                .map(|p| PortInfo {
                    port: p.port,
                    proto: p.proto,
                    mode: p.mode,
                })
                .collect(),
            prefixes_ipv4: v4,
            prefixes_ipv6: v6,
        },
        last_reload: shared.last_reload().map(|r| LastReload {
            at: unix(r.at),
            ok: r.ok,
            errors: r.errors,
        }),
        queues,
        blocked: BlockedInfo {
            entries: blocked.len(),
            capacity: blocked.capacity(),
            evicted: blocked.evicted(),
        },
        capabilities: kernel::effective_caps(),
    }
}
