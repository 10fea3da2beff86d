//! What the daemon may do on the box, and what may be done to it.
//!
//! * [`keep_only_net_admin`]: once the queues and the control socket are
//!   bound, a daemon started as root keeps CAP_NET_ADMIN (the kernel checks
//!   it on every nfnetlink message, verdicts included) and nothing else:
//!   not in its effective, permitted, inheritable or ambient sets, nor in
//!   its bounding set, with no-new-privileges set.
//! * [`check_rules_file`]: like sshd's StrictModes, the rules file and its
//!   directory must not be writable by anyone but root and the daemon's own
//!   user, because whoever can write the file decides who may send mail.

use std::collections::VecDeque;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::thread::{CapabilitySet, CapabilitySets};

/// What [`keep_only_net_admin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapsOutcome {
    /// The process held more; now it holds CAP_NET_ADMIN only.
    Dropped { before: u32 },
    /// It already held nothing beyond CAP_NET_ADMIN (e.g. started by
    /// systemd with `CapabilityBoundingSet=CAP_NET_ADMIN`).
    AlreadyMinimal,
}

/// Reduces the calling thread, and every thread it starts afterwards, to
/// CAP_NET_ADMIN. Call it before starting threads: capabilities are per
/// thread.
pub fn keep_only_net_admin() -> std::io::Result<CapsOutcome> {
    let cur = rustix::thread::capabilities(None).map_err(os)?;
    let keep = CapabilitySet::NET_ADMIN & cur.permitted;
    let extra =
        (cur.permitted | cur.effective | cur.inheritable).difference(CapabilitySet::NET_ADMIN);
    // The bounding set goes first, while CAP_SETPCAP is still effective.
    let mut bounding_left = false;
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1u64 << bit);
        if cap == CapabilitySet::NET_ADMIN {
            continue;
        }
        if rustix::thread::capability_is_in_bounding_set(cap).unwrap_or(false) {
            bounding_left |= rustix::thread::remove_capability_from_bounding_set(cap).is_err();
        }
    }
    let _ = rustix::thread::clear_ambient_capability_set();
    // Already minimal (as systemd starts it): no capset call at all, so a
    // seccomp filter may forbid it.
    if !extra.is_empty() || cur.effective != keep {
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: keep,
                permitted: keep,
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(os)?;
    }
    rustix::thread::set_no_new_privs(true).map_err(os)?;
    let _ = bounding_left; // Without CAP_SETPCAP the bounding set is the supervisor's.
    Ok(if extra.is_empty() {
        CapsOutcome::AlreadyMinimal
    } else {
        CapsOutcome::Dropped {
            before: (cur.permitted | cur.effective).bits().count_ones(),
        }
    })
}

fn os(e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

/// Why [`open_rules`] did not open the rules file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be found or opened.
    #[error("cannot read: {0}")]
    File(#[source] std::io::Error),
    /// A name on the way to the file could not be followed (missing, not
    /// a directory, too many links): the error names it.
    #[error("cannot read: {path}: {source}")]
    Along {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Someone other than root and the daemon's user could change the file
    /// (the message says who, and what to do).
    #[error("{0}")]
    Untrusted(String),
}

/// Opens the rules file for the daemon. Unless `insecure`, like sshd's
/// StrictModes: the file and every directory above it (after resolving
/// symlinks) must belong to root or the daemon's user and be writable by
/// nobody else (a sticky directory such as /tmp is fine), and the checks
/// are made on the file actually opened, not on its name, so it cannot be
/// swapped between check and read.
pub fn open_rules(path: &Path, insecure: bool) -> Result<std::fs::File, OpenError> {
    let canonical = if insecure {
        std::fs::canonicalize(path).map_err(OpenError::File)?
    } else {
        resolve_trusted(path)?
    };
    // O_NONBLOCK: a FIFO opens at once (and is then refused as not a
    // regular file) instead of waiting for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&canonical)
        .map_err(OpenError::File)?;
    if !insecure {
        let meta = file.metadata().map_err(OpenError::File)?;
        trusted_file(&canonical, &meta).map_err(OpenError::Untrusted)?;
    }
    Ok(file)
}

/// Most symlinks followed on the way to the rules file (the kernel's own
/// limit, ELOOP).
const MAX_LINKS: usize = 40;

/// `path` with every symlink resolved, as `canonicalize` would, walking it
/// from the root one name at a time and checking what the walk goes
/// through: every directory (with [`trusted_dir`]) and every symlink,
/// which must belong to root or the daemon's user. A link that belongs to
/// someone else can be re-pointed by them whenever its directory lets them
/// replace their own entries (a sticky directory such as /tmp), so the
/// file it names is not the operator's to vouch for.
fn resolve_trusted(path: &Path) -> Result<PathBuf, OpenError> {
    use std::path::Component;
    let along = |path: &Path, source| OpenError::Along {
        path: path.to_owned(),
        source,
    };
    let errno = std::io::Error::from_raw_os_error;
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().map_err(OpenError::File)?.join(path)
    };
    let root = Path::new("/");
    let meta = std::fs::metadata(root).map_err(|e| along(root, e))?;
    trusted_dir(root, &meta).map_err(OpenError::Untrusted)?;
    let mut left = VecDeque::new();
    push_names(&mut left, &absolute);
    let mut resolved = root.to_owned();
    let mut links = 0;
    while let Some(name) = left.pop_front() {
        match Path::new(&name).components().next() {
            Some(Component::RootDir) => resolved = root.to_owned(),
            // Back up into a directory the walk has checked.
            Some(Component::ParentDir) => {
                resolved.pop();
            }
            Some(Component::Normal(n)) => {
                let next = resolved.join(n);
                let meta = std::fs::symlink_metadata(&next).map_err(|e| along(&next, e))?;
                if meta.file_type().is_symlink() {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(along(&next, errno(libc::ELOOP)));
                    }
                    trusted_link(&next, &meta).map_err(OpenError::Untrusted)?;
                    let target = std::fs::read_link(&next).map_err(|e| along(&next, e))?;
                    push_names(&mut left, &target);
                } else if left.is_empty() {
                    resolved = next;
                } else if meta.is_dir() {
                    trusted_dir(&next, &meta).map_err(OpenError::Untrusted)?;
                    resolved = next;
                } else {
                    // As the kernel answers `file/..` or `file/`.
                    return Err(along(&next, errno(libc::ENOTDIR)));
                }
            }
            // `.`, which `push_names` leaves only at the end of a path
            // that ends in a slash, to ask for a directory there.
            _ => {}
        }
    }
    Ok(resolved)
}

/// Puts the names of `p` in front of those the walk has left, and a `.`
/// after them when `p` ends in `/` or `/.` (which `components` drops), so
/// that its last name must be a directory, as the kernel would have it.
fn push_names(left: &mut VecDeque<PathBuf>, p: &Path) {
    let bytes = p.as_os_str().as_bytes();
    if bytes.len() > 1 && (bytes.ends_with(b"/") || bytes.ends_with(b"/.")) {
        left.push_front(".".into());
    }
    for c in p.components().rev() {
        left.push_front(c.as_os_str().into());
    }
}

fn trusted_link(link: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    if let Some((uid, me)) = foreign_owner(meta) {
        return Err(format!(
            "{} (on the way to the rules file) is a symlink owned by uid {uid}: only root or the daemon's user (uid {me}) may own a link to the rules",
            link.display(),
        ));
    }
    Ok(())
}

fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The owner and the daemon's uid, when the owner is neither root nor the
/// daemon's user.
fn foreign_owner(meta: &std::fs::Metadata) -> Option<(u32, u32)> {
    let me = my_uid();
    (meta.uid() != 0 && meta.uid() != me).then_some((meta.uid(), me))
}

fn trusted_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    if let Some((uid, me)) = foreign_owner(meta) {
        return Err(format!(
            "{} is owned by uid {uid}: only root or the daemon's user (uid {me}) may own the rules file",
            path.display(),
        ));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by {} (mode {:04o}): only its owner may be able to change the rules (chmod go-w)",
            path.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            mode & 0o7777
        ));
    }
    Ok(())
}

fn trusted_dir(dir: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    if let Some((uid, _)) = foreign_owner(meta) {
        return Err(format!(
            "{} (on the way to the rules file) is owned by uid {uid}: someone else could replace the file",
            dir.display(),
        ));
    }
    let mode = meta.mode();
    // A sticky directory (like /tmp) lets nobody replace a file they do
    // not own.
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "{} (on the way to the rules file) is writable by others (mode {:04o}): someone else could replace the file (chmod go-w)",
            dir.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Why the daemon would refuse a rules file, or `Ok` when it would read it.
pub fn check_rules_file(path: &Path) -> Result<(), String> {
    open_rules(path, false).map(drop).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn strict_modes() {
        let dir = std::env::temp_dir().join(format!("portgate-privs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = dir.join("rules.yaml");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(check_rules_file(&f), Ok(()));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = check_rules_file(&f).unwrap_err();
        assert!(e.contains("writable by its group (mode 0664)"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o646)).unwrap();
        assert!(
            check_rules_file(&f)
                .unwrap_err()
                .contains("writable by everyone")
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            check_rules_file(&f)
                .unwrap_err()
                .contains("(on the way to the rules file) is writable by others")
        );
        // Through a symlink: the target's directories count, not the link's.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let open = dir.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let inner = open.join("rules.yaml");
        std::fs::write(&inner, "x").unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.join("link.yaml");
        std::os::unix::fs::symlink(&inner, &link).unwrap();
        assert!(
            check_rules_file(&link)
                .unwrap_err()
                .contains("writable by others")
        );
        // And every directory above, not just the parent.
        let deep = open.join("deep");
        std::fs::create_dir(&deep).unwrap();
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o755)).unwrap();
        let deeper = deep.join("rules.yaml");
        std::fs::write(&deeper, "x").unwrap();
        std::fs::set_permissions(&deeper, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            check_rules_file(&deeper)
                .unwrap_err()
                .contains("writable by others")
        );
        // A link someone else owns, in a sticky directory where they may
        // re-point it at any file whenever they like, is refused; the same
        // link owned by root is not.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let theirs = open.join("theirs.yaml");
        std::os::unix::fs::symlink(&f, &theirs).unwrap();
        assert_eq!(check_rules_file(&theirs), Ok(()));
        if my_uid() == 0 {
            std::os::unix::fs::lchown(&theirs, Some(65534), None).unwrap();
            let e = check_rules_file(&theirs).unwrap_err();
            assert!(e.contains("is a symlink owned by uid 65534"), "{e}");
            // Also on the way to the file, not only as its last name.
            let via = dir.join("via");
            std::os::unix::fs::symlink(&open, &via).unwrap();
            let e = check_rules_file(&via.join("theirs.yaml")).unwrap_err();
            assert!(e.contains("is a symlink owned by uid 65534"), "{e}");
        }
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        // Names the kernel would refuse are refused: a file taken for a
        // directory.
        for bad in [format!("{}/", f.display()), format!("{}/..", f.display())] {
            let e = check_rules_file(Path::new(&bad)).unwrap_err();
            assert!(e.contains("rules.yaml: Not a directory"), "{bad}: {e}");
        }
        // A dangling link names what is missing.
        let dangling = dir.join("dangling.yaml");
        std::os::unix::fs::symlink(dir.join("gone.yaml"), &dangling).unwrap();
        let e = check_rules_file(&dangling).unwrap_err();
        assert!(e.contains("gone.yaml: No such file"), "{e}");
        // --insecure-rules opens it all the same.
        assert!(open_rules(&deeper, true).is_ok());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check_rules_file(&f), Ok(()));
        assert!(
            check_rules_file(&dir.join("missing"))
                .unwrap_err()
                .contains("cannot read")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
