//! Reading a rules file: what may be read, how much, and as what.
//!
//! Contract: [`read`] accepts a regular file of at most [`MAX_BYTES`] that is
//! UTF-8, and says where it is not (line and column of the first bad byte),
//! so a FIFO, a device or a runaway file never hangs or exhausts the
//! daemon. Who may have written the file is the daemon's question
//! (`daemon::privs`); what the text says is [`super::load()`]'s.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt;

use super::{Diagnostic, LoadError, Pos};

/// Far above any real permit file (a million permits take about 100 MB).
pub const MAX_BYTES: u64 = 512 << 20;

fn refuse(name: &str, pos: Pos, message: String) -> LoadError {
    LoadError::one(
        name,
        Diagnostic {
            severity: super::Severity::Error,
            pos,
            message,
            hint: None,
        },
    )
}

/// Reads an open rules file; `name` names it in messages.
pub fn read(file: File, name: &str) -> Result<String, LoadError> {
    let meta = file
        .metadata()
        .map_err(|e| refuse(name, Pos::default(), format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(refuse(
            name,
            Pos::default(),
            "not a regular file".to_owned(),
        ));
    }
    if meta.len() > MAX_BYTES {
        return Err(refuse(
            name,
            Pos::default(),
            format!(
                "{} bytes: larger than the {MAX_BYTES} a rules file may have",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(name, Pos::default(), format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(refuse(
            name,
            Pos::default(),
            format!("larger than the {MAX_BYTES} bytes a rules file may have"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // Valid up to here, so counting characters is safe.
        let text = std::str::from_utf8(good).unwrap_or_default();
        let line = text.matches('\n').count() + 1;
        let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        refuse(
            name,
            Pos {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
            },
            "not UTF-8: the rules file must be UTF-8 text (save it as UTF-8)".to_owned(),
        )
    })
}

/// Opens and reads a rules file by name.
pub fn read_path(path: &std::path::Path) -> Result<String, LoadError> {
    let name = path.display().to_string();
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer; this way it opens at once and `read` refuses it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refuse(&name, Pos::default(), format!("cannot read: {e}")))?;
    read(file, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("portgate-file-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn utf8_errors_say_where() {
        let p = scratch(
            "latin1",
            b"ports:\n  - port: 25\nsites:\n  - site: Caf\xe9\n",
        );
        let e = read_path(&p).unwrap_err();
        assert_eq!(
            e.diagnostics[0].pos,
            Pos {
                line: 4,
                column: 14
            }
        );
        assert!(e.to_string().contains(":4:14: error: not UTF-8"), "{e}");
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn only_regular_files() {
        let e = read_path(std::path::Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_path(std::path::Path::new("/")).unwrap_err();
        assert!(
            e.to_string().contains("not a regular file") || e.to_string().contains("cannot read"),
            "{e}"
        );
        // A FIFO with no writer: refused at once, never waited on.
        let fifo = std::env::temp_dir().join(format!("portgate-file-{}-fifo", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let f = fifo.clone();
        std::thread::spawn(move || tx.send(read_path(&f).map_err(|e| e.to_string())));
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        let _ = std::fs::remove_file(&fifo);
        let e = got.expect("reading a FIFO hung").unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let p = scratch("ok", b"ports: []\n");
        assert_eq!(read_path(&p).unwrap(), "ports: []\n");
        let _ = std::fs::remove_file(p);
    }
}
