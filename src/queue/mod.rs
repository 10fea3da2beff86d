//! The netfilter queue: the only code that talks to the kernel's
//! nfnetlink_queue.
//!
//! Contract: [`Queue::open`] binds and configures one queue in a single
//! acknowledged request. [`Queue::serve_batch`] waits (bounded) for packets,
//! receives up to a batch of them without blocking, each into its own part of
//! one buffer, hands all their payloads to the caller's decision at once, and
//! sends every verdict of the batch in one `send`: a run of equal verdicts is
//! one NFQNL_MSG_VERDICT_BATCH. Every
//! packet received gets a verdict, also when its message cannot be read
//! past its id (it is dropped). ENOBUFS (the socket buffer overflowed, so
//! the kernel dropped or, fail-open, accepted packets we never saw) is
//! counted and never stops the queue.
//!
//! Built on rustix's safe socket calls, so the crate stays free of `unsafe`.
//! Written in place of the `nfq` crate, which offers neither batched
//! verdicts nor access to its socket (no poll, no receive timeout, no
//! receive-buffer size); the README's performance section has the numbers.

pub mod wire;

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
use thiserror::Error;

use wire::{Message, Verdicts};

use crate::decision::Queued;

/// Bytes of each packet we ask the kernel for: the largest IPv4 header (60)
/// or an IPv6 header with a generous extension-header chain, plus the four
/// port bytes of the transport header. A packet whose ports lie beyond this
/// is judged malformed and dropped (RFC 7112 asks for the whole header chain
/// in the first fragment; we ask for it in the first 256 bytes).
pub const COPY_RANGE: u32 = 256;

/// A message of a batch, as received.
#[derive(Clone, Copy, Debug)]
enum Item {
    /// A packet: its id, and where its payload lies in the batch's buffer.
    Packet {
        id: u32,
        start: usize,
        len: usize,
        ethertype: u16,
    },
    /// A packet message we could not read past its id.
    Unreadable { id: u32 },
}

/// One received message: netlink and nfqueue headers, the kernel's
/// attributes (interfaces, hardware address, timestamp, ...) and the copied
/// bytes. Generous, so a message is never cut; MSG_TRUNC tells if it was.
const RECV_BUF: usize = 8192;

/// Packets one batch holds at most: they are received, then decided
/// together, then given their verdicts in one send.
pub const MAX_BATCH: usize = 64;

/// Bytes the messages of one batch are received into, one after another:
/// [`MAX_BATCH`] messages of the usual size (some 400 bytes with a
/// [`COPY_RANGE`] copy) with room to spare. A batch ends early when less
/// than [`RECV_BUF`] is left.
const BATCH_BUF: usize = MAX_BATCH * 512 + RECV_BUF;

/// Socket receive buffer: room for a full kernel queue's worth of messages
/// (about 1 KiB of kernel memory each at the default 4096 queue length), so
/// a burst fills the queue, where fail-open applies, before the socket.
const SO_RCVBUF: usize = 8 << 20;

#[derive(Debug, Error)]
pub enum QueueError {
    /// Opening or setting up the netlink socket failed.
    #[error("cannot open a netfilter queue socket: {0} (portgate needs CAP_NET_ADMIN)")]
    Open(#[source] io::Error),
    /// The kernel refused to bind the queue.
    #[error("cannot bind netfilter queue {queue}: {source}{hint}")]
    Bind {
        queue: u16,
        #[source]
        source: io::Error,
        hint: &'static str,
    },
    /// Waiting for or receiving from the queue failed.
    #[error("netfilter queue {queue}: {source}")]
    Io {
        queue: u16,
        #[source]
        source: io::Error,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    pub queue: u16,
    pub fail_open: bool,
    pub max_len: u32,
}

/// What one batch did, for the caller's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub packets: u64,
    pub enobufs: u64,
    /// Messages the kernel sent that we could not read (dropped when they
    /// carried an id), and errors the kernel returned for our verdicts.
    pub protocol_errors: u64,
    /// Sends of verdicts the kernel refused.
    pub verdict_send_errors: u64,
}

pub struct Queue {
    fd: OwnedFd,
    num: u16,
    seq: u32,
    buf: Vec<u8>,
    verdicts: Verdicts,
    unsent: Unsent,
    /// The receive timeout set on the socket (SO_RCVTIMEO), if any.
    rcvtimeo: Option<Duration>,
}

fn os(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

impl Queue {
    /// Opens a socket, binds `cfg.queue` and configures it.
    pub fn open(cfg: &QueueConfig) -> Result<Queue, QueueError> {
        let fd = rustix::net::socket(
            AddressFamily::NETLINK,
            SocketType::RAW,
            Some(netlink::NETFILTER),
        )
        .map_err(|e| QueueError::Open(os(e)))?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))
            .map_err(|e| QueueError::Open(os(e)))?;
        // Needs CAP_NET_ADMIN, which binding a queue needs anyway; fall back
        // to the ordinary limit when it is refused.
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, SO_RCVBUF).is_err() {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, SO_RCVBUF);
        }
        let mut q = Queue {
            fd,
            num: cfg.queue,
            seq: 0,
            buf: vec![0; BATCH_BUF],
            verdicts: Verdicts::new(cfg.queue),
            unsent: Unsent::default(),
            rcvtimeo: None,
        };
        let fail_open = if cfg.fail_open {
            wire::FLAG_FAIL_OPEN
        } else {
            0
        };
        q.request(&wire::Config {
            command: Some(wire::CMD_BIND),
            copy_range: Some(COPY_RANGE),
            max_len: Some(cfg.max_len),
            flags: Some((fail_open, wire::FLAG_FAIL_OPEN)),
        })
        .map_err(|source| {
            // The kernel answers EPERM, not EBUSY, when another socket holds
            // the queue: tell the two cases apart by its own list of bound
            // queues.
            let held = held_by_another(cfg.queue);
            let hint = match source.raw_os_error() {
                Some(libc::EBUSY | libc::EPERM) if held => {
                    " (another process already serves this queue: another portgate, or an IDS such as suricata?)"
                }
                Some(libc::EPERM) => " (portgate needs CAP_NET_ADMIN)",
                _ => "",
            };
            QueueError::Bind {
                queue: cfg.queue,
                source,
                hint,
            }
        })?;
        Ok(q)
    }

    pub fn number(&self) -> u16 {
        self.num
    }

    /// Sends a config request and waits for its acknowledgement. Packets
    /// that arrive meanwhile (the queue is live from the moment it is bound)
    /// are dropped with a verdict rather than left queued: this happens only
    /// while starting or stopping.
    fn request(&mut self, c: &wire::Config) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(64);
        wire::put_config(&mut msg, seq, self.num, c);
        rustix::net::send(&self.fd, &msg, SendFlags::empty()).map_err(os)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if !self.wait(deadline.saturating_duration_since(Instant::now()))? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the kernel did not answer the queue configuration",
                ));
            }
            let n =
                match rustix::net::recv(&self.fd, &mut self.buf[..RECV_BUF], RecvFlags::DONTWAIT) {
                    Ok((_, n)) => n.min(RECV_BUF),
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                    Err(rustix::io::Errno::NOBUFS) => continue,
                    Err(e) => return Err(os(e)),
                };
            let mut answer = None;
            for m in wire::messages(&self.buf[..n]) {
                match m {
                    Ok(Message::Ack { seq: s, errno }) if s == seq => answer = Some(errno),
                    Ok(Message::Packet { id, .. }) => self.verdicts.push(id, wire::NF_DROP),
                    _ => {}
                }
            }
            self.flush();
            if let Some(errno) = answer {
                return if errno == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(errno))
                };
            }
        }
    }

    /// Waits up to `timeout` for the socket to become readable.
    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(os(e)),
        }
    }

    /// Waits up to `timeout` for a packet, then receives up to `max` in all
    /// (at most [`MAX_BATCH`]) without blocking again, calls `decide` on
    /// them together (setting `accept[i]` for `packets[i]`), and sends the
    /// verdicts. Returns what it did; an idle timeout returns zeros.
    pub fn serve_batch(
        &mut self,
        timeout: Duration,
        max: usize,
        mut decide: impl FnMut(&[Queued<'_>], &mut [bool]),
    ) -> Result<BatchStats, QueueError> {
        let mut st = BatchStats::default();
        let queue = self.num;
        let max = max.min(MAX_BATCH);
        // The first receive blocks, up to the timeout (SO_RCVTIMEO), the
        // rest of the batch does not: a packet that arrives alone costs a
        // receive, one more that finds nothing, and the verdict, with no
        // poll before them. In benches/e2e.sh, A/B against a poll first:
        // daemon CPU per verdict level with the nfq crate's in two runs
        // (poll: 0.90x and 1.18x of it), connect p50 67 µs against 83.
        // (A zero SO_RCVTIMEO would mean "forever".)
        let timeout = timeout.max(Duration::from_micros(1));
        if self.rcvtimeo != Some(timeout) {
            rustix::net::sockopt::set_socket_timeout(
                &self.fd,
                rustix::net::sockopt::Timeout::Recv,
                Some(timeout),
            )
            .map_err(|e| QueueError::Io {
                queue,
                source: os(e),
            })?;
            self.rcvtimeo = Some(timeout);
        }
        // What was received, in order: each packet's id and where its
        // payload lies in `buf`, or the id of a message we could not read.
        let mut items = [Item::Unreadable { id: 0 }; MAX_BATCH];
        let mut n = 0;
        let mut used = 0;
        let mut flags = RecvFlags::TRUNC;
        while n < max && BATCH_BUF - used >= RECV_BUF {
            let window = &mut self.buf[used..used + RECV_BUF];
            let got = rustix::net::recv(&self.fd, window, flags);
            flags = RecvFlags::DONTWAIT | RecvFlags::TRUNC;
            let len = match got {
                Ok((_, len)) => len,
                // Nothing more now, or nothing within the timeout.
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::NOBUFS) => {
                    st.enobufs += 1;
                    continue;
                }
                Err(e) => {
                    // What was received gets its verdict first.
                    answer(&self.buf, &mut self.verdicts, &items[..n], &mut decide);
                    self.flush();
                    return Err(QueueError::Io {
                        queue,
                        source: os(e),
                    });
                }
            };
            // A message larger than our window arrives cut; its id and
            // headers come first, so it is still judged, on what we hold.
            let held = len.min(RECV_BUF);
            let base = self.buf.as_ptr() as usize;
            for m in wire::messages(&self.buf[used..used + held]) {
                let item = match m {
                    Ok(Message::Packet {
                        id,
                        payload,
                        hw_protocol,
                        ..
                    }) => {
                        st.packets += 1;
                        Item::Packet {
                            id,
                            start: payload.as_ptr() as usize - base,
                            len: payload.len(),
                            ethertype: hw_protocol,
                        }
                    }
                    // A packet we cannot read past its id: dropped, never
                    // left queued (a later batch verdict would sweep it up).
                    Err(wire::WireError::BadPacket { id }) => {
                        st.protocol_errors += 1;
                        Item::Unreadable { id }
                    }
                    // An error for one of our verdicts (a packet that was
                    // already gone), or an unreadable message.
                    Ok(Message::Ack { errno, .. }) if errno != 0 => {
                        st.protocol_errors += 1;
                        continue;
                    }
                    Ok(Message::Overrun) | Err(_) => {
                        st.protocol_errors += 1;
                        continue;
                    }
                    Ok(_) => continue,
                };
                if n == MAX_BATCH {
                    // More packets in one receive than a batch holds (the
                    // kernel sends one per message): decide what we have,
                    // and go on.
                    answer(&self.buf, &mut self.verdicts, &items[..n], &mut decide);
                    n = 0;
                }
                items[n] = item;
                n += 1;
            }
            used += held;
        }
        answer(&self.buf, &mut self.verdicts, &items[..n], &mut decide);
        if !self.flush() {
            st.verdict_send_errors += 1;
            // Verdicts for more packets than the kernel queues (some 20
            // bytes each) kept and refused: the queue is not being served.
            if self.unsent.0.len() > UNSENT_MAX {
                return Err(QueueError::Io {
                    queue,
                    source: io::Error::other(format!(
                        "the kernel refused {} bytes of verdicts, sent again and again",
                        self.unsent.0.len()
                    )),
                });
            }
        }
        Ok(st)
    }

    /// Sends the pending verdicts. False when the kernel refused the send.
    fn flush(&mut self) -> bool {
        let fd = &self.fd;
        let ok = self
            .unsent
            .send(self.verdicts.finish(), |out| send_all(fd, out));
        self.verdicts.clear();
        ok
    }

    /// Unbinds the queue, so the kernel stops queueing to us (and, per the
    /// iptables rule, drops or bypasses) before the socket closes.
    pub fn unbind(&mut self) -> io::Result<()> {
        self.request(&wire::Config {
            command: Some(wire::CMD_UNBIND),
            ..wire::Config::default()
        })
    }
}

/// Decides the received packets in `items` together and queues their
/// verdicts, in order; a message we could not read is dropped.
fn answer(
    buf: &[u8],
    verdicts: &mut Verdicts,
    items: &[Item],
    decide: &mut impl FnMut(&[Queued<'_>], &mut [bool]),
) {
    let mut packets = [Queued {
        bytes: &[],
        ethertype: 0,
    }; MAX_BATCH];
    let mut k = 0;
    for item in items {
        if let &Item::Packet {
            start,
            len,
            ethertype,
            ..
        } = item
        {
            packets[k] = Queued {
                bytes: &buf[start..start + len],
                ethertype,
            };
            k += 1;
        }
    }
    let mut accept = [false; MAX_BATCH];
    if k > 0 {
        decide(&packets[..k], &mut accept[..k]);
    }
    let mut accept = accept.iter();
    for item in items {
        let (id, verdict) = match *item {
            Item::Packet { id, .. } => match accept.next() {
                Some(true) => (id, wire::NF_ACCEPT),
                _ => (id, wire::NF_DROP),
            },
            Item::Unreadable { id } => (id, wire::NF_DROP),
        };
        verdicts.push(id, verdict);
    }
}

/// Bytes of refused verdicts kept at most before the worker gives up (and
/// the daemon ends with an error, for systemd to restart it).
const UNSENT_MAX: usize = 4 << 20;

/// Verdicts whose send the kernel refused, kept to go out again first.
///
/// A batch verdict decides every packet still waiting up to its id, so
/// verdicts lost in a failed send would let the next batch verdict decide
/// their packets, an accept for a packet that was to be dropped or the other
/// way round. Sending them again before the next ones gives every packet its
/// own verdict first (one for a packet that is already gone costs an error
/// message, counted).
#[derive(Debug, Default)]
struct Unsent(Vec<u8>);

impl Unsent {
    /// Sends what is kept and then `fresh`, with `send`; keeps both when it
    /// fails. False when it failed.
    fn send(&mut self, fresh: &[u8], mut send: impl FnMut(&[u8]) -> bool) -> bool {
        if self.0.is_empty() {
            if fresh.is_empty() || send(fresh) {
                return true;
            }
            self.0.extend_from_slice(fresh);
            return false;
        }
        self.0.extend_from_slice(fresh);
        if send(&self.0) {
            self.0.clear();
            return true;
        }
        false
    }
}

/// True when the kernel lists `queue` as bound (by someone: we only ask
/// after our own bind failed).
fn held_by_another(queue: u16) -> bool {
    std::fs::read_to_string("/proc/net/netfilter/nfnetlink_queue")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().next()?.parse::<u16>().ok())
                .any(|q| q == queue)
        })
        .unwrap_or(false)
}

fn send_all(fd: &OwnedFd, out: &[u8]) -> bool {
    loop {
        match rustix::net::send(fd, out, SendFlags::empty()) {
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused send loses nothing: its verdicts go out again, ahead of
    /// the next ones, until a send succeeds.
    #[test]
    fn refused_verdicts_go_out_again_first() {
        let mut u = Unsent::default();
        let mut sent: Vec<Vec<u8>> = Vec::new();
        assert!(u.send(b"a", |b| {
            sent.push(b.to_vec());
            true
        }));
        assert!(!u.send(b"b", |_| false));
        assert!(!u.send(b"c", |_| false));
        assert!(u.send(b"", |b| {
            sent.push(b.to_vec());
            true
        }));
        assert!(u.send(b"d", |b| {
            sent.push(b.to_vec());
            true
        }));
        assert_eq!(sent, [b"a".to_vec(), b"bc".to_vec(), b"d".to_vec()]);
        // Nothing to send, nothing kept: no send at all.
        assert!(u.send(b"", |_| panic!("sent nothing")));
    }

    /// Packets and unreadable messages interleaved: every id gets its
    /// verdict, in order, packets as decided (together, in one call) and
    /// unreadable ones dropped.
    #[test]
    fn a_batch_answers_every_message_in_order() {
        let mut buf = vec![0u8; 64];
        buf[10] = 1; // packet 3 says accept
        buf[30] = 1; // packet 6 says accept
        let items = [
            Item::Packet {
                id: 3,
                start: 10,
                len: 4,
                ethertype: 0x0800,
            },
            Item::Unreadable { id: 4 },
            Item::Packet {
                id: 5,
                start: 20,
                len: 4,
                ethertype: 0x0800,
            },
            Item::Packet {
                id: 6,
                start: 30,
                len: 4,
                ethertype: 0x86dd,
            },
            Item::Packet {
                id: 7,
                start: 40,
                len: 0,
                ethertype: 0x0800,
            },
        ];
        let mut verdicts = Verdicts::new(0);
        let mut calls = Vec::new();
        answer(&buf, &mut verdicts, &items, &mut |packets, accept| {
            calls.push(
                packets
                    .iter()
                    .map(|p| (p.bytes.to_vec(), p.ethertype))
                    .collect::<Vec<_>>(),
            );
            for (p, a) in packets.iter().zip(accept) {
                *a = p.bytes.first() == Some(&1);
            }
        });
        assert_eq!(
            calls,
            vec![vec![
                (vec![1, 0, 0, 0], 0x0800),
                (vec![0, 0, 0, 0], 0x0800),
                (vec![1, 0, 0, 0], 0x86dd),
                (vec![], 0x0800),
            ]]
        );
        let (one, batch) = (wire::MSG_VERDICT, wire::MSG_VERDICT_BATCH);
        assert_eq!(
            wire::decode_verdicts(verdicts.finish()),
            vec![
                (one, 3, wire::NF_ACCEPT),
                (batch, 5, wire::NF_DROP),
                (one, 6, wire::NF_ACCEPT),
                (one, 7, wire::NF_DROP),
            ]
        );
    }
}
