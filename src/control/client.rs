//! The client side: one request, one answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::ControlError;
use super::proto::Request;

/// How long to wait for an answer. A reload of a very large rules file
/// takes seconds; nothing else takes more than milliseconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Sends `req` to the daemon listening on `path` and reads its answer as `T`.
pub fn request<T: DeserializeOwned>(path: &Path, req: &Request) -> Result<T, ControlError> {
    let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => ControlError::Denied(path.to_owned()),
        std::io::ErrorKind::NotFound => ControlError::NotRunning {
            reason: format!("no control socket at {}", path.display()),
        },
        std::io::ErrorKind::ConnectionRefused => ControlError::NotRunning {
            reason: if is_socket(path) {
                format!(
                    "nothing listens on {} (a stale socket from a daemon that stopped)",
                    path.display()
                )
            } else {
                format!(
                    "{} is not a socket: give --control the daemon's control socket",
                    path.display()
                )
            },
        },
        _ => ControlError::NotRunning {
            reason: format!("cannot connect to {}: {e}", path.display()),
        },
    })?;
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_string(req).map_err(|e| io(e.into()))?;
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        )));
    }
    #[derive(serde::Deserialize)]
    struct Refusal {
        error: String,
    }
    if let Ok(Refusal { error }) = serde_json::from_str::<Refusal>(&answer) {
        return Err(ControlError::Refused(error));
    }
    serde_json::from_str(&answer).map_err(|e| io(e.into()))
}

/// Whether `path` is a socket (connecting to anything else is refused too).
fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
