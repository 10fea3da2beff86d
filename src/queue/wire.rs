//! The nfnetlink_queue wire format: building the messages we send and
//! reading the ones the kernel sends, as plain byte manipulation.
//!
//! Contract: nothing here does I/O, and nothing panics on any input. The
//! reader treats every byte from the socket as untrusted: each length is
//! checked against what is left before it is used, and a message that does
//! not add up ends the walk with an error instead of being guessed at.
//!
//! Layout (all lengths and netlink header fields in host byte order, the
//! netfilter payloads in network byte order):
//!
//! ```text
//! nlmsghdr   len:u32 type:u16 flags:u16 seq:u32 pid:u32       16 bytes
//! nfgenmsg   family:u8 version:u8 res_id:be16 (the queue)      4 bytes
//! nlattr*    len:u16 type:u16 payload, padded to 4 bytes
//! ```

/// `NFNL_SUBSYS_QUEUE << 8`.
const SUBSYS_QUEUE: u16 = 3 << 8;
pub const MSG_PACKET: u16 = SUBSYS_QUEUE;
pub const MSG_VERDICT: u16 = SUBSYS_QUEUE | 1;
pub const MSG_CONFIG: u16 = SUBSYS_QUEUE | 2;
pub const MSG_VERDICT_BATCH: u16 = SUBSYS_QUEUE | 3;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

const NLMSG_HDRLEN: usize = 16;
const NFGEN_HDRLEN: usize = 4;
const NLA_HDRLEN: usize = 4;
/// Attribute type bits that are flags, not the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

// Packet message attributes.
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CAP_LEN: u16 = 13;

// Config message attributes and values.
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
pub const CMD_BIND: u8 = 1;
pub const CMD_UNBIND: u8 = 2;
const COPY_PACKET: u8 = 2;
pub const FLAG_FAIL_OPEN: u32 = 1;

pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;

#[inline]
const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A message we send, built in place at the end of `out`.
struct Builder<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Builder<'a> {
    fn new(out: &'a mut Vec<u8>, kind: u16, flags: u16, seq: u32, queue: u16) -> Builder<'a> {
        let start = out.len();
        out.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
        out.extend_from_slice(&[0, 0]); // AF_UNSPEC, NFNETLINK_V0
        out.extend_from_slice(&queue.to_be_bytes());
        Builder { out, start }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = u16::try_from(NLA_HDRLEN + payload.len()).unwrap_or(u16::MAX);
        self.out.extend_from_slice(&len.to_ne_bytes());
        self.out.extend_from_slice(&kind.to_ne_bytes());
        self.out.extend_from_slice(payload);
        let pad = align4(payload.len()) - payload.len();
        self.out.extend_from_slice(&[0u8; 3][..pad]);
    }

    fn finish(self) {
        let len = u32::try_from(self.out.len() - self.start).unwrap_or(u32::MAX);
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
    }
}

/// What a config message asks for. All fields are applied in one message,
/// after the command, so binding and configuring is one round trip.
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    pub command: Option<u8>,
    /// Copy this many bytes of each packet.
    pub copy_range: Option<u32>,
    pub max_len: Option<u32>,
    /// `(flags, mask)`: set the masked flags to `flags`.
    pub flags: Option<(u32, u32)>,
}

/// Appends a config message that asks for an acknowledgement.
pub fn put_config(out: &mut Vec<u8>, seq: u32, queue: u16, c: &Config) {
    let mut b = Builder::new(out, MSG_CONFIG, NLM_F_ACK, seq, queue);
    if let Some(cmd) = c.command {
        // command, pad, protocol family (unused since Linux 3.8)
        b.attr(NFQA_CFG_CMD, &[cmd, 0, 0, 0]);
    }
    if let Some(range) = c.copy_range {
        let mut p = [0u8; 5];
        p[..4].copy_from_slice(&range.to_be_bytes());
        p[4] = COPY_PACKET;
        b.attr(NFQA_CFG_PARAMS, &p);
    }
    if let Some(n) = c.max_len {
        b.attr(NFQA_CFG_QUEUE_MAXLEN, &n.to_be_bytes());
    }
    if let Some((flags, mask)) = c.flags {
        b.attr(NFQA_CFG_FLAGS, &flags.to_be_bytes());
        b.attr(NFQA_CFG_MASK, &mask.to_be_bytes());
    }
    b.finish();
}

/// Appends a verdict for packet `id`, or with `batch` for every packet of
/// the queue up to and including `id` that has no verdict yet.
pub fn put_verdict(out: &mut Vec<u8>, queue: u16, id: u32, verdict: u32, batch: bool) {
    let kind = if batch {
        MSG_VERDICT_BATCH
    } else {
        MSG_VERDICT
    };
    let mut b = Builder::new(out, kind, 0, 0, queue);
    let mut hdr = [0u8; 8];
    hdr[..4].copy_from_slice(&verdict.to_be_bytes());
    hdr[4..].copy_from_slice(&id.to_be_bytes());
    b.attr(NFQA_VERDICT_HDR, &hdr);
    b.finish();
}

/// One message from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A queued packet.
    Packet {
        queue: u16,
        id: u32,
        /// The ethertype the kernel queued it as: 0x0800 from an IPv4 hook,
        /// 0x86dd from an IPv6 one.
        hw_protocol: u16,
        /// The packet from its IP header, cut to the copy range.
        payload: &'a [u8],
        /// The packet's length before the copy range cut it, when it did.
        cap_len: Option<u32>,
    },
    /// An acknowledgement (`errno` 0) or an error for a request we sent.
    Ack { seq: u32, errno: i32 },
    /// The kernel dropped messages for us (NLMSG_OVERRUN).
    Overrun,
    /// Anything else (ignored).
    Other,
}

/// The bytes do not form the message they claim to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A length field points past the data we hold.
    Truncated,
    /// A packet message without the packet header that carries its id.
    NoPacketId,
    /// A packet message whose id could be read but not the rest: the packet
    /// must still get a verdict (a drop).
    BadPacket { id: u32 },
}

/// The messages in a buffer received from the socket.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf }
}

pub struct Messages<'a> {
    rest: &'a [u8],
}

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u32_be(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let buf = self.rest;
        let len = match u32_ne(buf, 0).map(|l| l as usize) {
            Some(l) if l >= NLMSG_HDRLEN && l <= buf.len() => l,
            _ => {
                self.rest = &[];
                // A packet message cut short may still show its id.
                if u16_ne(buf, 4) == Some(MSG_PACKET)
                    && let Err(WireError::BadPacket { id }) | Ok(Message::Packet { id, .. }) =
                        packet(buf, true)
                {
                    return Some(Err(WireError::BadPacket { id }));
                }
                return Some(Err(WireError::Truncated));
            }
        };
        self.rest = buf.get(align4(len)..).unwrap_or(&[]);
        let msg = &buf[..len];
        let kind = u16_ne(msg, 4).unwrap_or(0);
        Some(match kind {
            MSG_PACKET => packet(msg, false),
            NLMSG_ERROR => match (u32_ne(msg, NLMSG_HDRLEN), u32_ne(msg, NLMSG_HDRLEN + 12)) {
                // struct nlmsgerr { int error; struct nlmsghdr msg; }: the
                // request's seq is at offset 8 of the embedded header.
                (Some(err), Some(seq)) => Ok(Message::Ack {
                    seq,
                    errno: (err as i32).wrapping_neg(),
                }),
                _ => Err(WireError::Truncated),
            },
            NLMSG_OVERRUN => Ok(Message::Overrun),
            NLMSG_DONE => Ok(Message::Other),
            _ => Ok(Message::Other),
        })
    }
}

/// Reads a packet message. `cut` says the message is known to be cut
/// short: then it is never returned whole, only its id (as `BadPacket`).
fn packet(msg: &[u8], cut: bool) -> Result<Message<'_>, WireError> {
    let queue = msg
        .get(NLMSG_HDRLEN + 2..NLMSG_HDRLEN + 4)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(WireError::Truncated)?;
    let mut attrs = msg
        .get(NLMSG_HDRLEN + NFGEN_HDRLEN..)
        .ok_or(WireError::Truncated)?;
    let mut id = None;
    let mut hw_protocol = 0;
    let mut payload: &[u8] = &[];
    let mut cap_len = None;
    // Once the id is known, a broken attribute still leaves a packet that
    // needs its verdict.
    let broken = |id: Option<u32>| match id {
        Some(id) => WireError::BadPacket { id },
        None => WireError::Truncated,
    };
    while !attrs.is_empty() {
        let (Some(len), Some(kind)) = (u16_ne(attrs, 0), u16_ne(attrs, 2)) else {
            return Err(broken(id));
        };
        let (len, kind) = (usize::from(len), kind & NLA_TYPE_MASK);
        if len < NLA_HDRLEN || len > attrs.len() {
            return Err(broken(id));
        }
        let data = &attrs[NLA_HDRLEN..len];
        match kind {
            // struct nfqnl_msg_packet_hdr { be32 id; be16 hw_protocol; u8 hook; }
            NFQA_PACKET_HDR => {
                id = u32_be(data, 0);
                hw_protocol = data
                    .get(4..6)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            }
            NFQA_PAYLOAD => payload = data,
            NFQA_CAP_LEN => cap_len = u32_be(data, 0),
            _ => {}
        }
        attrs = attrs.get(align4(len)..).unwrap_or(&[]);
    }
    let id = id.ok_or(WireError::NoPacketId)?;
    if cut {
        return Err(WireError::BadPacket { id });
    }
    Ok(Message::Packet {
        queue,
        id,
        hw_protocol,
        payload,
        cap_len,
    })
}

/// Verdicts for a batch of packets, in the order the packets arrived,
/// encoded with as few messages as the kernel allows: a run of packets with
/// the same verdict becomes one NFQNL_MSG_VERDICT_BATCH ("every packet up to
/// this id"), a lone packet one NFQNL_MSG_VERDICT. The kernel applies the
/// messages of one send in order, so a batch never reaches a packet that an
/// earlier message in the same send already judged.
#[derive(Debug)]
pub struct Verdicts {
    queue: u16,
    /// The run being built: its verdict, first and last id, length.
    run: Option<(u32, u32, u32, u32)>,
    pub out: Vec<u8>,
}

impl Verdicts {
    pub fn new(queue: u16) -> Verdicts {
        Verdicts {
            queue,
            run: None,
            out: Vec::with_capacity(8192),
        }
    }

    /// Adds the verdict for the next packet received. Ids rise by one per
    /// packet the kernel queued, with gaps for packets it dropped after
    /// numbering them (a full socket buffer); a run grows only over
    /// consecutive ids, so a batch verdict never reaches into a gap.
    pub fn push(&mut self, id: u32, verdict: u32) {
        match &mut self.run {
            Some((v, _, last, n)) if *v == verdict && id == last.wrapping_add(1) => {
                *last = id;
                *n += 1;
            }
            _ => {
                self.close_run();
                self.run = Some((verdict, id, id, 1));
            }
        }
    }

    fn close_run(&mut self) {
        if let Some((verdict, _first, last, n)) = self.run.take() {
            put_verdict(&mut self.out, self.queue, last, verdict, n > 1);
        }
    }

    /// The encoded messages, ready to send; empty when there is nothing.
    pub fn finish(&mut self) -> &[u8] {
        self.close_run();
        &self.out
    }

    pub fn clear(&mut self) {
        self.run = None;
        self.out.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.run.is_none() && self.out.is_empty()
    }
}

/// The (message type, id, verdict) of each verdict message in `buf`.
#[cfg(test)]
pub(crate) fn decode_verdicts(buf: &[u8]) -> Vec<(u16, u32, u32)> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let len = u32_ne(rest, 0).unwrap() as usize;
        let kind = u16_ne(rest, 4).unwrap();
        let verdict = u32_be(rest, 24).unwrap();
        let id = u32_be(rest, 28).unwrap();
        out.push((kind, id, verdict));
        rest = &rest[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet message as the kernel builds it.
    fn kernel_packet(queue: u16, id: u32, payload: &[u8], cap_len: Option<u32>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = Builder::new(&mut out, MSG_PACKET, 0, 0, queue);
        let mut hdr = [0u8; 7];
        hdr[..4].copy_from_slice(&id.to_be_bytes());
        hdr[4..6].copy_from_slice(&0x0800u16.to_be_bytes());
        hdr[6] = 2; // NF_INET_FORWARD
        b.attr(NFQA_PACKET_HDR, &hdr);
        b.attr(5, &7u32.to_be_bytes()); // NFQA_IFINDEX_INDEV
        if let Some(c) = cap_len {
            b.attr(NFQA_CAP_LEN, &c.to_be_bytes());
        }
        b.attr(NFQA_PAYLOAD, payload);
        b.finish();
        out
    }

    #[test]
    fn reads_packets_back_to_back() {
        let mut buf = kernel_packet(3, 41, &[0x45, 1, 2], None);
        buf.extend(kernel_packet(3, 42, &[0x60; 9], Some(1500)));
        let msgs: Vec<_> = messages(&buf).collect();
        assert_eq!(
            msgs,
            vec![
                Ok(Message::Packet {
                    queue: 3,
                    id: 41,
                    hw_protocol: 0x0800,
                    payload: &[0x45, 1, 2],
                    cap_len: None
                }),
                Ok(Message::Packet {
                    queue: 3,
                    id: 42,
                    hw_protocol: 0x0800,
                    payload: &[0x60; 9],
                    cap_len: Some(1500)
                }),
            ]
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let buf = kernel_packet(0, 7, &[0x45; 40], Some(60));
        // The packet header attribute (the id) ends at byte 31: a cut past
        // it still yields the id, so the packet can be dropped.
        for n in 1..buf.len() {
            let all: Vec<_> = messages(&buf[..n]).collect();
            let want = if n >= 31 {
                WireError::BadPacket { id: 7 }
            } else {
                WireError::Truncated
            };
            assert_eq!(all, vec![Err(want)], "cut at {n}");
        }
        // Lying lengths inside a whole buffer.
        let mut bad = buf.clone();
        bad[20..22].copy_from_slice(&1000u16.to_ne_bytes()); // first attr's length
        assert_eq!(messages(&bad).next(), Some(Err(WireError::Truncated)));
        let mut bad = buf.clone();
        bad[20..22].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(messages(&bad).next(), Some(Err(WireError::Truncated)));
        // Past the id, a broken attribute still names the packet.
        let mut bad = buf.clone();
        bad[32..34].copy_from_slice(&999u16.to_ne_bytes()); // second attr's length
        assert_eq!(
            messages(&bad).next(),
            Some(Err(WireError::BadPacket { id: 7 }))
        );
        // A message length that lies: still a packet, whose id we can read.
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(
            messages(&bad).next(),
            Some(Err(WireError::BadPacket { id: 7 }))
        );
        // Not a packet: nothing to answer.
        let mut bad = buf;
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        bad[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(messages(&bad).next(), Some(Err(WireError::Truncated)));
    }

    #[test]
    fn packet_without_id() {
        let mut out = Vec::new();
        let mut b = Builder::new(&mut out, MSG_PACKET, 0, 0, 0);
        b.attr(NFQA_PAYLOAD, &[0x45]);
        b.finish();
        assert_eq!(messages(&out).next(), Some(Err(WireError::NoPacketId)));
    }

    #[test]
    fn acks_and_errors() {
        // nlmsgerr: error -16 (EBUSY), then the offending request's header.
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-16i32).to_ne_bytes());
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&MSG_CONFIG.to_ne_bytes());
        m.extend_from_slice(&5u16.to_ne_bytes());
        m.extend_from_slice(&77u32.to_ne_bytes()); // seq
        m.extend_from_slice(&0u32.to_ne_bytes());
        assert_eq!(
            messages(&m).next(),
            Some(Ok(Message::Ack { seq: 77, errno: 16 }))
        );
    }

    #[test]
    fn config_message_layout() {
        let mut out = Vec::new();
        put_config(
            &mut out,
            9,
            0x0102,
            &Config {
                command: Some(CMD_BIND),
                copy_range: Some(256),
                max_len: Some(4096),
                flags: Some((FLAG_FAIL_OPEN, FLAG_FAIL_OPEN)),
            },
        );
        // header 16 + nfgen 4 + cmd 8 + params 12 (9 padded) + maxlen 8 + flags 8 + mask 8
        assert_eq!(out.len(), 64);
        assert_eq!(u32_ne(&out, 0), Some(64));
        assert_eq!(u16_ne(&out, 4), Some(MSG_CONFIG));
        assert_eq!(u16_ne(&out, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(u32_ne(&out, 8), Some(9));
        assert_eq!(&out[18..20], &[1, 2]); // queue, big-endian
        assert_eq!(&out[20..28], &[8, 0, 1, 0, CMD_BIND, 0, 0, 0]);
        assert_eq!(u16_ne(&out, 28), Some(9));
        assert_eq!(&out[32..37], &[0, 0, 1, 0, COPY_PACKET]);
    }

    #[test]
    fn verdict_runs() {
        let mut v = Verdicts::new(0);
        for (id, verdict) in [
            (5, NF_ACCEPT),
            (6, NF_DROP),
            (7, NF_ACCEPT),
            (8, NF_ACCEPT),
            (9, NF_ACCEPT),
        ] {
            v.push(id, verdict);
        }
        assert_eq!(
            decode_verdicts(v.finish()),
            vec![
                (MSG_VERDICT, 5, NF_ACCEPT),
                (MSG_VERDICT, 6, NF_DROP),
                (MSG_VERDICT_BATCH, 9, NF_ACCEPT),
            ]
        );
        v.clear();
        assert!(v.is_empty());
        // A gap in ids (a packet the kernel never delivered) ends a run: a
        // batch must not reach a packet we have not judged.
        v.push(u32::MAX, NF_DROP);
        v.push(0, NF_DROP);
        v.push(2, NF_DROP);
        assert_eq!(
            decode_verdicts(v.finish()),
            vec![(MSG_VERDICT_BATCH, 0, NF_DROP), (MSG_VERDICT, 2, NF_DROP)]
        );
    }
}
