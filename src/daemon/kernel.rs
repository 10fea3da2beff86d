//! What the kernel itself reports about us: its view of each netfilter
//! queue (so drops that happen before portgate ever sees a packet are
//! visible), and the capabilities the process holds.

use std::collections::HashMap;

use crate::control::proto::KernelQueue;

pub const NFQUEUE_PROC: &str = "/proc/net/netfilter/nfnetlink_queue";

/// Parses /proc/net/netfilter/nfnetlink_queue: one line per bound queue,
/// `queue portid queued copy_mode copy_range queue_dropped user_dropped
/// id_sequence 1`. Lines that do not parse are skipped.
pub fn parse_nfqueue(text: &str) -> HashMap<u16, KernelQueue> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .map_while(|w| w.parse().ok())
            .collect();
        let (Some(&num), Some(&portid), Some(&queued), Some(&copy_range)) =
            (f.first(), f.get(1), f.get(2), f.get(4))
        else {
            continue;
        };
        let (Some(&dropped), Some(&user_dropped), Some(&id_sequence)) =
            (f.get(5), f.get(6), f.get(7))
        else {
            continue;
        };
        let Ok(num) = u16::try_from(num) else {
            continue;
        };
        out.insert(
            num,
            KernelQueue {
                queued,
                dropped_queue_full: dropped,
                dropped_socket_full: user_dropped,
                id_sequence,
                portid,
                copy_range,
            },
        );
    }
    out
}

/// The kernel's view of every bound queue in our network namespace.
pub fn nfqueues() -> HashMap<u16, KernelQueue> {
    std::fs::read_to_string(NFQUEUE_PROC)
        .map(|t| parse_nfqueue(&t))
        .unwrap_or_default()
}

/// Capability names by bit, as in linux/capability.h.
const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Names of the capabilities in a hexadecimal capability mask.
pub fn cap_names(mask_hex: &str) -> Vec<String> {
    let Ok(mask) = u64::from_str_radix(mask_hex.trim(), 16) else {
        return vec![format!("unreadable ({mask_hex})")];
    };
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| {
            CAP_NAMES
                .get(bit)
                .map_or_else(|| format!("cap_{bit}"), |n| (*n).to_owned())
        })
        .collect()
}

/// The effective capabilities of this process.
pub fn effective_caps() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(cap_names)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines() {
        let text = "    0  12345     3 2   256     7     2      900  1\n    5   4242     0 2   256     0     0        0  1\ngarbage\n";
        let q = parse_nfqueue(text);
        assert_eq!(q.len(), 2);
        assert_eq!(
            q[&0],
            KernelQueue {
                queued: 3,
                dropped_queue_full: 7,
                dropped_socket_full: 2,
                id_sequence: 900,
                portid: 12345,
                copy_range: 256,
            }
        );
        assert_eq!(q[&5].portid, 4242);
    }

    #[test]
    fn capabilities() {
        assert_eq!(cap_names("0000000000001000"), vec!["CAP_NET_ADMIN"]);
        assert_eq!(cap_names("0000000000000000"), Vec::<String>::new());
        assert_eq!(
            cap_names("0000000000003000"),
            vec!["CAP_NET_ADMIN", "CAP_NET_RAW"]
        );
    }
}
