//! SNMPv2c on the wire: requests are encoded here (GET and GETBULK only), replies are parsed
//! with snmp2's decoder, and one [`Session::get`] / [`Session::getbulk`] is one request with
//! its retries.
//!
//! Why not `snmp2::SyncSession`: it only advances its request id after a reply was
//! received, so after a timeout the next request goes out with the SAME id, and the late
//! reply to the timed-out request passes its check and is taken as the answer to the new
//! question. It also fails on the first datagram with another id instead of reading on.
//! Here every attempt gets a fresh id from a process-wide counter (random start), and a
//! session reads until a reply carries one of the ids of the current request (all its
//! attempts ask the same question) or the attempt times out; anything else (late replies,
//! other communities, garbage) is counted and dropped. Sessions are also short-lived (one
//! per device call), so a reply that arrives after its call ended finds a closed socket.

use std::fmt;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use snmp2::{MessageType, Pdu, Value};

/// ifName column of ifXTable; the index is the ifIndex.
pub const IF_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
/// ifOperStatus column of ifTable (1 up, 2 down, …).
pub const IF_OPER_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8];
/// sysUpTime.0 (TimeTicks, hundredths of a second since the agent started).
pub const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];

pub const TAG_GET: u8 = 0xA0;
pub const TAG_GETBULK: u8 = 0xA5;
#[cfg(test)]
pub const TAG_RESPONSE: u8 = 0xA2;
const VERSION_2C: i64 = 1;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// A decoded value, owned (snmp2's borrow the receive buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Ticks(u32),
    Bytes(Vec<u8>),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
    /// Any other type; the name is for messages.
    Other(&'static str),
}

pub type Varbind = (Vec<u32>, Val);

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No matching reply to any attempt. `refused`: the host said nothing listens there.
    Timeout {
        attempts: u32,
        each: Duration,
        refused: bool,
    },
    /// error-status tooBig, or a request too large to send: ask for less.
    TooBig,
    /// Another error-status from the agent (noSuchName, genErr, …).
    Status {
        status: u32,
        index: u32,
    },
    /// A reply with the right id but not the varbinds asked for.
    Malformed(String),
    Socket(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout {
                attempts,
                each,
                refused,
            } => {
                write!(f, "no answer within {} ms", each.as_millis())?;
                if *attempts > 1 {
                    write!(f, " ({attempts} attempts)")?;
                }
                if *refused {
                    write!(f, ", port unreachable")?;
                }
                Ok(())
            }
            Failure::TooBig => write!(f, "the agent answered tooBig"),
            Failure::Status { status, index } => {
                write!(
                    f,
                    "the agent answered {} (varbind {index})",
                    status_name(*status)
                )
            }
            Failure::Malformed(why) => write!(f, "unusable answer: {why}"),
            Failure::Socket(why) => write!(f, "socket error: {why}"),
        }
    }
}

fn status_name(status: u32) -> String {
    const NAMES: [&str; 19] = [
        "noError",
        "tooBig",
        "noSuchName",
        "badValue",
        "readOnly",
        "genErr",
        "noAccess",
        "wrongType",
        "wrongLength",
        "wrongEncoding",
        "wrongValue",
        "noCreation",
        "inconsistentValue",
        "resourceUnavailable",
        "commitFailed",
        "undoFailed",
        "authorizationError",
        "notWritable",
        "inconsistentName",
    ];
    match NAMES.get(status as usize) {
        Some(name) => (*name).to_string(),
        None => format!("error-status {status}"),
    }
}

/// Traffic counters (all monotonic). One set per device and one for all devices.
#[derive(Debug, Default)]
pub struct Counters {
    pub gets: AtomicU64,
    pub bulks: AtomicU64,
    pub packets: AtomicU64,
    pub timeouts: AtomicU64,
    pub unanswered: AtomicU64,
    pub discarded: AtomicU64,
    pub walks: AtomicU64,
}

fn bump(counters: &[&Counters], field: impl Fn(&Counters) -> &AtomicU64) {
    for c in counters {
        field(c).fetch_add(1, Ordering::Relaxed);
    }
}

/// A request id never used before by this process (until 2^32 requests), starting at a
/// random point so that a restarted process does not repeat the previous one's ids.
fn next_request_id() -> i32 {
    static SEED: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u128() as u32);
    let n = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    // Positive ids only: some agents mishandle negative ones.
    (n & 0x7fff_ffff) as i32
}

/// One short-lived client socket to one agent.
pub struct Session<'a> {
    socket: UdpSocket,
    community: &'a [u8],
    timeout: Duration,
    retries: u32,
    counters: [&'a Counters; 2],
    buf: Vec<u8>,
}

impl<'a> Session<'a> {
    pub fn open(
        peer: SocketAddr,
        community: &'a [u8],
        timeout: Duration,
        retries: u32,
        counters: [&'a Counters; 2],
    ) -> Result<Session<'a>, Failure> {
        let local: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).map_err(|e| Failure::Socket(e.to_string()))?;
        // connect(): the kernel drops datagrams from any other address and reports ICMP
        // port-unreachable to us.
        socket
            .connect(peer)
            .map_err(|e| Failure::Socket(e.to_string()))?;
        Ok(Session {
            socket,
            community,
            timeout: timeout.max(Duration::from_millis(1)),
            retries,
            counters,
            buf: vec![0; MAX_DATAGRAM + 1],
        })
    }

    /// GET of `oids`; the values in request order (the answer must name the same OIDs).
    pub fn get(&mut self, oids: &[&[u32]]) -> Result<Vec<Val>, Failure> {
        bump(&self.counters, |c| &c.gets);
        let varbinds = self.exchange(TAG_GET, 0, 0, oids)?;
        if varbinds.len() != oids.len() {
            return Err(Failure::Malformed(format!(
                "{} varbinds for {} asked",
                varbinds.len(),
                oids.len()
            )));
        }
        let mut values = Vec::with_capacity(oids.len());
        for ((got, value), asked) in varbinds.into_iter().zip(oids) {
            if got.as_slice() != *asked {
                return Err(Failure::Malformed(format!(
                    "answer names {} where {} was asked",
                    dotted(&got),
                    dotted(asked)
                )));
            }
            values.push(value);
        }
        Ok(values)
    }

    /// GETBULK from `oid` (no non-repeaters).
    pub fn getbulk(&mut self, oid: &[u32], max_repetitions: u32) -> Result<Vec<Varbind>, Failure> {
        bump(&self.counters, |c| &c.bulks);
        self.exchange(TAG_GETBULK, 0, max_repetitions, &[oid])
    }

    fn exchange(
        &mut self,
        tag: u8,
        a: u32,
        b: u32,
        oids: &[&[u32]],
    ) -> Result<Vec<Varbind>, Failure> {
        let nulls: Vec<(&[u32], Val)> = oids.iter().map(|o| (*o, Val::Null)).collect();
        let mut ids = Vec::with_capacity(self.retries as usize + 1);
        let mut refused = false;
        for _attempt in 0..=self.retries {
            let id = next_request_id();
            ids.push(id);
            let packet =
                encode_message(tag, self.community, id, i64::from(a), i64::from(b), &nulls);
            if packet.len() > MAX_DATAGRAM {
                return Err(Failure::TooBig);
            }
            bump(&self.counters, |c| &c.packets);
            match self.socket.send(&packet) {
                Ok(_) => {}
                // An ICMP error left over from the previous attempt.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused = true,
                Err(e) => return Err(Failure::Socket(e.to_string())),
            }
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Err(e) = self.socket.set_read_timeout(Some(left)) {
                    return Err(Failure::Socket(e.to_string()));
                }
                match self.socket.recv(&mut self.buf) {
                    Ok(n) => match decode_response(&self.buf[..n], self.community) {
                        Some(reply) if ids.contains(&reply.req_id) => return reply.into_result(),
                        // A late reply to an earlier request, or not a reply of ours at all.
                        _ => bump(&self.counters, |c| &c.discarded),
                    },
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break
                    }
                    // ICMP port unreachable is not an answer: the agent may be restarting.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused = true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(Failure::Socket(e.to_string())),
                }
            }
            bump(&self.counters, |c| &c.timeouts);
        }
        bump(&self.counters, |c| &c.unanswered);
        Err(Failure::Timeout {
            attempts: self.retries + 1,
            each: self.timeout,
            refused,
        })
    }
}

/// A decoded Response-PDU.
#[derive(Debug)]
pub struct Reply {
    pub req_id: i32,
    pub error_status: u32,
    pub error_index: u32,
    pub varbinds: Vec<Varbind>,
}

impl Reply {
    fn into_result(self) -> Result<Vec<Varbind>, Failure> {
        match self.error_status {
            0 => Ok(self.varbinds),
            1 => Err(Failure::TooBig),
            status => Err(Failure::Status {
                status,
                index: self.error_index,
            }),
        }
    }
}

/// A v2c Response-PDU with this community, or `None` for anything else.
pub fn decode_response(bytes: &[u8], community: &[u8]) -> Option<Reply> {
    let pdu = Pdu::from_bytes(bytes).ok()?;
    if pdu.message_type != MessageType::Response
        || pdu.version().ok()? != snmp2::Version::V2C
        || pdu.community != community
    {
        return None;
    }
    let varbinds = decode_varbinds(pdu.varbinds.clone())?;
    Some(Reply {
        req_id: pdu.req_id,
        error_status: pdu.error_status,
        error_index: pdu.error_index,
        varbinds,
    })
}

/// Varbinds as owned values; `None` if an OID does not fit in u32 arcs.
pub fn decode_varbinds(varbinds: snmp2::Varbinds<'_>) -> Option<Vec<Varbind>> {
    varbinds
        .map(|(oid, value)| Some((decode_oid(oid.as_bytes())?, own(&value))))
        .collect()
}

fn own(value: &Value<'_>) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Integer(i) => Val::Int(*i),
        Value::Timeticks(t) => Val::Ticks(*t),
        Value::OctetString(s) => Val::Bytes(s.to_vec()),
        Value::NoSuchObject => Val::NoSuchObject,
        Value::NoSuchInstance => Val::NoSuchInstance,
        Value::EndOfMibView => Val::EndOfMibView,
        Value::Counter32(_) => Val::Other("Counter32"),
        Value::Unsigned32(_) => Val::Other("Gauge32"),
        Value::Counter64(_) => Val::Other("Counter64"),
        Value::ObjectIdentifier(_) => Val::Other("OBJECT IDENTIFIER"),
        Value::IpAddress(_) => Val::Other("IpAddress"),
        _ => Val::Other("an unexpected type"),
    }
}

/// BER content octets of an OBJECT IDENTIFIER → arcs.
pub fn decode_oid(bytes: &[u8]) -> Option<Vec<u32>> {
    let mut arcs = Vec::with_capacity(bytes.len() + 1);
    let mut acc: u64 = 0;
    let mut in_progress = false;
    for &b in bytes {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if acc > u64::from(u32::MAX) + 80 {
            return None;
        }
        in_progress = b & 0x80 != 0;
        if !in_progress {
            if arcs.is_empty() {
                let (first, second) = match acc {
                    0..=39 => (0, acc),
                    40..=79 => (1, acc - 40),
                    _ => (2, acc - 80),
                };
                arcs.push(first as u32);
                arcs.push(u32::try_from(second).ok()?);
            } else {
                arcs.push(u32::try_from(acc).ok()?);
            }
            acc = 0;
        }
    }
    if in_progress || arcs.is_empty() {
        return None;
    }
    Some(arcs)
}

pub fn dotted(arcs: &[u32]) -> String {
    let parts: Vec<String> = arcs.iter().map(u32::to_string).collect();
    parts.join(".")
}

/// A whole v2c message. For requests `a`/`b` are error-status/error-index (or
/// non-repeaters/max-repetitions for GETBULK).
pub fn encode_message(
    tag: u8,
    community: &[u8],
    req_id: i32,
    a: i64,
    b: i64,
    varbinds: &[(&[u32], Val)],
) -> Vec<u8> {
    let mut list = Vec::with_capacity(varbinds.len() * 24);
    for (oid, value) in varbinds {
        let mut vb = Vec::with_capacity(32);
        tlv(0x06, &oid_content(oid), &mut vb);
        encode_value(value, &mut vb);
        tlv(0x30, &vb, &mut list);
    }
    let mut pdu = Vec::with_capacity(list.len() + 24);
    tlv(0x02, &int_content(i64::from(req_id)), &mut pdu);
    tlv(0x02, &int_content(a), &mut pdu);
    tlv(0x02, &int_content(b), &mut pdu);
    tlv(0x30, &list, &mut pdu);
    let mut msg = Vec::with_capacity(pdu.len() + community.len() + 16);
    tlv(0x02, &int_content(VERSION_2C), &mut msg);
    tlv(0x04, community, &mut msg);
    tlv(tag, &pdu, &mut msg);
    let mut out = Vec::with_capacity(msg.len() + 6);
    tlv(0x30, &msg, &mut out);
    out
}

fn encode_value(value: &Val, out: &mut Vec<u8>) {
    match value {
        Val::Null | Val::Other(_) => tlv(0x05, &[], out),
        Val::Int(i) => tlv(0x02, &int_content(*i), out),
        Val::Ticks(t) => tlv(0x43, &int_content(i64::from(*t)), out),
        Val::Bytes(b) => tlv(0x04, b, out),
        Val::NoSuchObject => tlv(0x80, &[], out),
        Val::NoSuchInstance => tlv(0x81, &[], out),
        Val::EndOfMibView => tlv(0x82, &[], out),
    }
}

fn tlv(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// Minimal two's-complement content octets.
fn int_content(n: i64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// BER content octets of an OID (at least two arcs, first arc ≤ 2).
fn oid_content(arcs: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arcs.len() + 4);
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (u64::from(*a) * 40 + u64::from(*b), rest),
        [a] => (u64::from(*a) * 40, &[][..]),
        [] => (0, &[][..]),
    };
    push_base128(first, &mut out);
    for arc in rest {
        push_base128(u64::from(*arc), &mut out);
    }
    out
}

fn push_base128(mut n: u64, out: &mut Vec<u8>) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (n & 0x7f) as u8 | if i == tmp.len() - 1 { 0 } else { 0x80 };
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_round_trip() {
        for arcs in [
            IF_NAME.to_vec(),
            SYS_UPTIME.to_vec(),
            vec![1, 3, 6, 1, 4, 1, 2636, 3, 4294967295],
        ] {
            assert_eq!(
                decode_oid(&oid_content(&arcs)).as_deref(),
                Some(arcs.as_slice())
            );
        }
        assert_eq!(decode_oid(&[0x2b, 0x86]), None, "unterminated arc");
        assert_eq!(
            decode_oid(&[0x2b, 0x90, 0x80, 0x80, 0x80, 0x80, 0x00]),
            None,
            "arc beyond u32"
        );
    }

    #[test]
    fn integers_are_minimal() {
        assert_eq!(int_content(0), [0]);
        assert_eq!(int_content(127), [0x7f]);
        assert_eq!(int_content(128), [0x00, 0x80]);
        assert_eq!(int_content(-1), [0xff]);
        assert_eq!(int_content(-129), [0xff, 0x7f]);
        assert_eq!(
            int_content(i64::from(u32::MAX)),
            [0x00, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn snmp2_parses_what_we_encode() {
        let name = [IF_NAME, &[513]].concat();
        let msg = encode_message(
            TAG_RESPONSE,
            b"public",
            0x1234_5678,
            0,
            0,
            &[
                (&name, Val::Bytes(b"xe-0/0/3".to_vec())),
                (SYS_UPTIME, Val::Ticks(3_000_000_000)),
                (&[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 513], Val::Int(1)),
                (&[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 514], Val::NoSuchInstance),
            ],
        );
        let reply = decode_response(&msg, b"public").expect("a reply");
        assert_eq!(reply.req_id, 0x1234_5678);
        assert_eq!(reply.varbinds.len(), 4);
        assert_eq!(
            reply.varbinds[0],
            (name.clone(), Val::Bytes(b"xe-0/0/3".to_vec()))
        );
        assert_eq!(reply.varbinds[1].1, Val::Ticks(3_000_000_000));
        assert_eq!(reply.varbinds[2].1, Val::Int(1));
        assert_eq!(reply.varbinds[3].1, Val::NoSuchInstance);
        assert!(
            decode_response(&msg, b"other").is_none(),
            "another community is not ours"
        );
        let get = encode_message(TAG_GET, b"public", 7, 0, 0, &[(SYS_UPTIME, Val::Null)]);
        assert!(
            decode_response(&get, b"public").is_none(),
            "a request is not a reply"
        );
        assert!(
            decode_response(&msg[..msg.len() - 3], b"public").is_none(),
            "truncated"
        );
        assert!(decode_response(b"\x30\x03garbage", b"public").is_none());
    }

    #[test]
    fn long_lengths_are_encoded() {
        let big = vec![b'x'; 300];
        let msg = encode_message(
            TAG_RESPONSE,
            b"c",
            1,
            0,
            0,
            &[(IF_NAME, Val::Bytes(big.clone()))],
        );
        let reply = decode_response(&msg, b"c").expect("a reply");
        assert_eq!(reply.varbinds[0].1, Val::Bytes(big));
    }

    #[test]
    fn request_ids_do_not_repeat() {
        let a = next_request_id();
        let b = next_request_id();
        assert_ne!(a, b);
        assert!(a >= 0 && b >= 0);
    }

    #[test]
    fn failures_read_well() {
        let t = Failure::Timeout {
            attempts: 2,
            each: Duration::from_millis(300),
            refused: true,
        };
        assert_eq!(
            t.to_string(),
            "no answer within 300 ms (2 attempts), port unreachable"
        );
        assert_eq!(
            Failure::Status {
                status: 2,
                index: 1
            }
            .to_string(),
            "the agent answered noSuchName (varbind 1)"
        );
        assert_eq!(status_name(99), "error-status 99");
    }
}
