//! Telling systemd how the daemon is doing: the sd_notify(3) protocol.
//!
//! The unit is `Type=notify`: systemd counts portgate as started when it
//! says READY (after every queue is bound, so `systemctl start` returning
//! means packets are being judged), as reloading between RELOADING and the
//! next READY, and as hung when the watchdog pings stop for `WatchdogSec=`.
//!
//! Outside systemd (no `NOTIFY_SOCKET` in the environment) every function
//! here does nothing. A notification that cannot be sent is logged and
//! otherwise ignored: it must never stop the filter. None of this is for
//! the hot path: each message is one datagram on a fresh socket.

use std::time::{Duration, Instant};

use log::{debug, warn};
use sd_notify::NotifyState;

/// Started (or reloaded): serving the queues with the rules described by
/// `status`, which `systemctl status` shows.
pub fn ready(status: &str) {
    send(
        &[NotifyState::Ready, NotifyState::Status(status)],
        "READY=1",
    );
}

/// A reload begins; systemd shows the unit as reloading until [`ready`].
pub fn reloading() {
    // systemd (since 253) wants the time of the request with RELOADING=1,
    // to tell this reload from an older one.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now], "RELOADING=1"),
        Err(_) => send(&[NotifyState::Reloading], "RELOADING=1"),
    }
}

/// Shutting down: systemd stops expecting watchdog pings.
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

/// The watchdog timeout systemd set (`WatchdogSec=`), if it set one for
/// this process.
pub fn watchdog_timeout() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|t| !t.is_zero())
}

/// Tells systemd the daemon is alive. Sent at least every
/// [`Watchdog::every`]; a process that stops sending is killed with
/// SIGABRT and, with `Restart=on-failure`, started again.
pub fn ping() {
    if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
        debug!("cannot send the watchdog ping to systemd: {e}");
    }
}

fn send(state: &[NotifyState], what: &str) {
    if let Err(e) = sd_notify::notify(state) {
        warn!("cannot tell systemd {what}: {e}");
    }
}

/// Paces watchdog pings for a thread that otherwise blocks: it asks how
/// long it may block ([`Watchdog::wait`]) and calls [`Watchdog::tick`]
/// each time it wakes.
#[derive(Debug)]
pub struct Watchdog {
    every: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    /// Pings at half systemd's timeout, as sd_watchdog_enabled(3)
    /// recommends; never, when systemd set no watchdog.
    pub fn from_env() -> Watchdog {
        Watchdog {
            every: watchdog_timeout().map(|t| t / 2),
            last: Instant::now(),
        }
    }

    /// How often pings are sent, if at all.
    pub fn every(&self) -> Option<Duration> {
        self.every
    }

    /// How long the caller may block before the next ping is due
    /// (`Duration::MAX` without a watchdog).
    pub fn wait(&self) -> Duration {
        self.every
            .map_or(Duration::MAX, |e| e.saturating_sub(self.last.elapsed()))
    }

    /// Pings if a ping is due.
    pub fn tick(&mut self) {
        if self.every.is_some_and(|e| self.last.elapsed() >= e) {
            ping();
            self.last = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_watchdog_the_caller_blocks_forever() {
        let w = Watchdog {
            every: None,
            last: Instant::now(),
        };
        assert_eq!(w.wait(), Duration::MAX);
    }

    #[test]
    fn a_ping_is_due_once_the_interval_has_passed() {
        let mut w = Watchdog {
            every: Some(Duration::from_secs(10)),
            last: Instant::now() - Duration::from_secs(11),
        };
        assert_eq!(w.wait(), Duration::ZERO);
        w.tick(); // no NOTIFY_SOCKET in tests: ping() does nothing
        assert!(w.wait() > Duration::from_secs(9));
    }
}
