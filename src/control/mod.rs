//! The control socket: how `portgate reload`, `status`, `blocked` and
//! `explain` talk to the running daemon.
//!
//! A Unix stream socket (mode 0600) carrying one JSON request and one JSON
//! answer per connection ([`proto`]). The daemon side ([`server`]) accepts
//! only root and its own user, and no request names a file: the daemon only
//! ever reads its configured rules file and writes its configured metrics
//! file.

pub mod client;
pub mod proto;
pub mod render;
pub mod server;

use std::io;
use std::path::PathBuf;

use thiserror::Error;

pub const DEFAULT_SOCKET: &str = "/run/portgate/control.sock";

#[derive(Debug, Error)]
pub enum ControlError {
    /// Another daemon answers on the socket.
    #[error(
        "another portgate is running: it answers on {0} (stop it, or give this one another --control)"
    )]
    InUse(PathBuf),
    /// Creating or binding the socket failed.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No daemon listens on the socket.
    #[error("the daemon is not running: {reason} (is it up, and is --control the same?)")]
    NotRunning { reason: String },
    /// The socket is there, but this user may not use it.
    #[error("permission denied on {0}: only root and the daemon's user may use the control socket")]
    Denied(PathBuf),
    /// Talking to the daemon failed midway.
    #[error("talking to portgate on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The daemon refused the request.
    #[error("portgate refused the request: {0}")]
    Refused(String),
}
