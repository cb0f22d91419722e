//! SNMP requests on the wire, v2c and v3 (USM): one [`Session::get`] / [`Session::getbulk`]
//! is one request with its retries, over the codec of `message.rs` and `usm.rs`.
//!
//! Why not `snmp2::SyncSession` (which this replaced): it only advanced its request id
//! after a reply was received, so after a timeout the next request went out with the SAME
//! id, and the late reply to the timed-out request passed its check and was taken as the
//! answer to the new question. Here every attempt gets a fresh id from a process-wide
//! counter (random start; in v3 it is also the msgID), and a session reads until a reply
//! carries one of the ids of the current request (all its attempts ask the same question)
//! or the attempt times out; anything else (late replies, other communities, bad digests,
//! garbage) is counted and dropped. Sessions are also short-lived (one per device call), so
//! a reply that arrives after its call ended finds a closed socket.
//!
//! SNMPv3 (RFC 3414 §4): the agent's engine is discovered on first contact and kept with
//! the user's keys localized to it ([`Engine`], held in the device's state); a
//! `usmStatsNotInTimeWindows` report (the agent restarted: engineBoots went up) updates its
//! boots and time, a `usmStatsUnknownEngineIDs` report discovers it again, and the request
//! is sent again at once: no poll is lost.

use std::fmt;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::ber::{Val, Varbind};
use super::message::{self, Body, Message, Pdu, UsmParams};
use super::usm::{Keys, User};

/// ifName column of ifXTable; the index is the ifIndex.
pub const IF_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
/// ifOperStatus column of ifTable (1 up, 2 down, …).
pub const IF_OPER_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8];
/// sysUpTime.0 (TimeTicks, hundredths of a second since the agent started).
pub const SYS_UPTIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
/// usmStats (RFC 3414 §5): the counters a report names.
const USM_STATS: &[u32] = &[1, 3, 6, 1, 6, 3, 15, 1, 1];

/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

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
    /// SNMPv3: the agent refused our security (unknown user, wrong digest, …).
    Security(String),
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
            Failure::Security(why) => write!(f, "SNMPv3: {why}"),
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


/// What a v3 agent's engine is known to be, with the user's keys localized to it.
#[derive(Clone)]
pub struct Engine {
    id: Vec<u8>,
    boots: i64,
    time: i64,
    /// When `time` was learned: the engine's time now is `time` + the seconds since.
    at: Instant,
    /// The user the keys are of (a reload may change the profile).
    user: User,
    keys: Keys,
}

impl Engine {
    fn new(id: &[u8], boots: i64, time: i64, user: &User) -> Engine {
        Engine { id: id.to_vec(), boots, time, at: Instant::now(), user: user.clone(), keys: user.localize(id) }
    }

    fn time_now(&self) -> i64 {
        (self.time + self.at.elapsed().as_secs() as i64).min(i64::from(i32::MAX))
    }
}

/// How a session speaks: a v2c community, or a v3 user with its engine's state.
pub enum Security<'a> {
    Community(&'a [u8]),
    Usm { user: &'a User, engine: &'a mut Option<Engine> },
}

/// One short-lived client socket to one agent.
pub struct Session<'a> {
    link: Link<'a>,
    security: Security<'a>,
}

/// The socket, its bounds and counters: one request with its attempts at a time.
struct Link<'a> {
    socket: UdpSocket,
    timeout: Duration,
    retries: u32,
    counters: [&'a Counters; 2],
    buf: Vec<u8>,
}

/// What a v3 agent answered.
enum V3Answer {
    Response(Pdu),
    /// A report: the usmStats counter it names, and the engine's id, boots and time.
    Report { counter: Option<u32>, engine: Vec<u8>, boots: i64, time: i64, authentic: bool },
}

impl<'a> Session<'a> {
    pub fn open(
        peer: SocketAddr,
        security: Security<'a>,
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
        socket.connect(peer).map_err(|e| Failure::Socket(e.to_string()))?;
        let timeout = timeout.max(Duration::from_millis(1));
        let link = Link { socket, timeout, retries, counters, buf: vec![0; MAX_DATAGRAM + 1] };
        Ok(Session { link, security })
    }

    /// GET of `oids`; the values in request order (the answer must name the same OIDs).
    pub fn get(&mut self, oids: &[&[u32]]) -> Result<Vec<Val>, Failure> {
        bump(&self.link.counters, |c| &c.gets);
        let varbinds = self.exchange(message::GET, 0, 0, oids)?;
        if varbinds.len() != oids.len() {
            return Err(Failure::Malformed(format!("{} varbinds for {} asked", varbinds.len(), oids.len())));
        }
        let mut values = Vec::with_capacity(oids.len());
        for ((got, value), asked) in varbinds.into_iter().zip(oids) {
            if got.as_slice() != *asked {
                return Err(Failure::Malformed(format!(
                    "answer names {} where {} was asked",
                    super::ber::dotted(&got),
                    super::ber::dotted(asked)
                )));
            }
            values.push(value);
        }
        Ok(values)
    }

    /// GETBULK from `oid` (no non-repeaters).
    pub fn getbulk(&mut self, oid: &[u32], max_repetitions: u32) -> Result<Vec<Varbind>, Failure> {
        bump(&self.link.counters, |c| &c.bulks);
        self.exchange(message::GETBULK, 0, i64::from(max_repetitions), &[oid])
    }

    fn exchange(&mut self, tag: u8, a: i64, b: i64, oids: &[&[u32]]) -> Result<Vec<Varbind>, Failure> {
        match &mut self.security {
            Security::Community(community) => {
                let community: &[u8] = community;
                let pdu = self.link.ask(
                    |id| message::community_message(message::VERSION_2C, community, &Pdu::request(tag, id, a, b, oids)),
                    |bytes, ids| match message::decode(bytes)? {
                        Message::Community { version: message::VERSION_2C, community: c, body: Body::Pdu(p) }
                            if c == community && p.tag == message::RESPONSE && ids.contains(&p.req_id) =>
                        {
                            Some(p)
                        }
                        _ => None,
                    },
                )?;
                outcome(pdu)
            }
            Security::Usm { user, engine } => v3_exchange(&mut self.link, user, engine, tag, a, b, oids),
        }
    }
}

/// A Response-PDU's varbinds, or its error-status as a failure.
fn outcome(pdu: Pdu) -> Result<Vec<Varbind>, Failure> {
    match pdu.a {
        0 => Ok(pdu.varbinds),
        1 => Err(Failure::TooBig),
        status => Err(Failure::Status { status: status.clamp(0, i64::from(u32::MAX)) as u32, index: pdu.b.max(0) as u32 }),
    }
}

/// One v3 request: discovery when the engine is not known, then the request, sent again
/// (at most twice more) when a report says the engine's time or identity changed.
fn v3_exchange(
    link: &mut Link<'_>,
    user: &User,
    engine: &mut Option<Engine>,
    tag: u8,
    a: i64,
    b: i64,
    oids: &[&[u32]],
) -> Result<Vec<Varbind>, Failure> {
    if engine.as_ref().is_some_and(|e| e.user != *user) {
        // The profile changed (a reload): the same engine, keys made again.
        let e = engine.take().expect("checked above");
        *engine = Some(Engine::new(&e.id, e.boots, e.time_now(), user));
    }
    for _ in 0..3 {
        let Some(known) = engine.as_ref() else {
            *engine = Some(discover(link, user)?);
            continue;
        };
        match v3_ask(link, user, Some(known), tag, a, b, oids)? {
            V3Answer::Response(pdu) => return outcome(pdu),
            V3Answer::Report { counter, boots, time, authentic, .. } => match counter {
                // The agent restarted (engineBoots went up) or its clock moved.
                Some(2) if authentic => {
                    if let Some(e) = engine.as_mut() {
                        (e.boots, e.time, e.at) = (boots, time, Instant::now());
                    }
                }
                Some(4) => {
                    log::info!("SNMPv3 {}: the engine ID changed: discovering it again", link.peer());
                    *engine = None;
                }
                other => return Err(Failure::Security(report_text(other, user))),
            },
        }
    }
    Err(Failure::Security("the agent kept reporting time-window or engine-ID errors".into()))
}

/// RFC 3414 §4: a request without authentication to an unknown engine; the agent's report
/// carries its engine ID, boots and time.
fn discover(link: &mut Link<'_>, user: &User) -> Result<Engine, Failure> {
    match v3_ask(link, user, None, message::GET, 0, 0, &[])? {
        V3Answer::Report { engine, boots, time, .. } if !engine.is_empty() => Ok(Engine::new(&engine, boots, time, user)),
        V3Answer::Report { .. } => Err(Failure::Malformed("the discovery report carries no engine ID".into())),
        V3Answer::Response(_) => Err(Failure::Malformed("a response to engine discovery".into())),
    }
}

/// One v3 request with its attempts: authenticated (and encrypted) when the engine is
/// known, a discovery probe otherwise.
fn v3_ask(
    link: &mut Link<'_>,
    user: &User,
    engine: Option<&Engine>,
    tag: u8,
    a: i64,
    b: i64,
    oids: &[&[u32]],
) -> Result<V3Answer, Failure> {
    link.ask(
        |id| {
            let pdu = Pdu::request(tag, id, a, b, oids);
            let Some(e) = engine else {
                let data = message::scoped(b"", &pdu);
                return message::v3_message(id, message::FLAG_REPORTABLE, &UsmParams::default(), 0, &data).0;
            };
            let (boots, time) = (e.boots, e.time_now());
            let plain = message::scoped(&e.id, &pdu);
            let (data, privacy) = match user.privacy {
                super::usm::Privacy::None => (plain, Vec::new()),
                _ => {
                    let (cipher, salt) = e.keys.encrypt(boots, time, &plain);
                    let mut data = Vec::with_capacity(cipher.len() + 6);
                    super::ber::tlv(super::ber::OCTET_STRING, &cipher, &mut data);
                    (data, salt)
                }
            };
            let usm = UsmParams { engine_id: &e.id, boots, time, user: user.name.as_bytes(), auth: b"", privacy: &privacy };
            let flags = user.flags() | message::FLAG_REPORTABLE;
            let (mut bytes, at) = message::v3_message(id, flags, &usm, user.auth.mac_len(), &data);
            e.keys.sign(&mut bytes, at);
            bytes
        },
        |bytes, ids| {
            let Message::V3(m) = message::decode(bytes)? else { return None };
            if !ids.contains(&m.msg_id) || m.security_model != message::USM {
                return None;
            }
            let keys = engine.filter(|e| e.id == m.usm.engine_id).map(|e| &e.keys);
            let authentic = m.flags & message::FLAG_AUTH != 0;
            if authentic && !keys.is_some_and(|k| k.verify(bytes, m.auth_at.clone())) {
                return None; // not from the agent that holds our keys
            }
            let plain;
            let scoped = match (m.flags & message::FLAG_PRIV != 0, m.data_tag) {
                (false, super::ber::SEQUENCE) => m.data,
                (true, super::ber::OCTET_STRING) if authentic => {
                    plain = keys?.open(&m)?;
                    &plain
                }
                _ => return None,
            };
            answer(scoped, &m, authentic)
        },
    )
}

/// A v3 answer from a scopedPDU's content: an authentic Response, or a report.
fn answer(scoped: &[u8], m: &message::V3<'_>, authentic: bool) -> Option<V3Answer> {
    let (_, Body::Pdu(pdu)) = message::decode_scoped(scoped)? else { return None };
    match pdu.tag {
        message::RESPONSE if authentic => Some(V3Answer::Response(pdu)),
        message::REPORT => {
            let counter = pdu.varbinds.first().and_then(|(oid, _)| match oid.strip_prefix(USM_STATS) {
                Some([n, 0]) => Some(*n),
                _ => None,
            });
            let engine = m.usm.engine_id.to_vec();
            Some(V3Answer::Report { counter, engine, boots: m.usm.boots, time: m.usm.time, authentic })
        }
        _ => None,
    }
}

/// What a report that ends a request means, for the message (never a secret).
fn report_text(counter: Option<u32>, user: &User) -> String {
    match counter {
        Some(1) => format!("the agent does not allow user {:?} at this security level", user.name),
        Some(2) => "the agent says our time is outside its window, in an unauthenticated report".into(),
        Some(3) => format!("the agent does not know user {:?}", user.name),
        Some(5) => format!("wrong digest: the agent does not accept the auth_password of user {:?}", user.name),
        Some(6) => format!("decryption error: the agent does not accept the priv_password of user {:?}", user.name),
        Some(n) => format!("the agent reported usmStats counter {n}"),
        None => "the agent sent a report naming no usmStats counter".into(),
    }
}

impl Link<'_> {
    fn peer(&self) -> String {
        self.socket.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string())
    }

    /// Sends `build(id)` with a fresh id per attempt and reads until `accept` takes a
    /// datagram (given the ids of all attempts) or the attempts time out.
    fn ask<T>(&mut self, mut build: impl FnMut(i32) -> Vec<u8>, mut accept: impl FnMut(&[u8], &[i32]) -> Option<T>) -> Result<T, Failure> {
        let mut ids = Vec::with_capacity(self.retries as usize + 1);
        let mut refused = false;
        for _attempt in 0..=self.retries {
            let id = next_request_id();
            ids.push(id);
            let packet = build(id);
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
                    Ok(n) => match accept(&self.buf[..n], &ids) {
                        Some(answer) => return Ok(answer),
                        // A late reply to an earlier request, or not a reply of ours at all.
                        None => bump(&self.counters, |c| &c.discarded),
                    },
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                    // ICMP port unreachable is not an answer: the agent may be restarting.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused = true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(Failure::Socket(e.to_string())),
                }
            }
            bump(&self.counters, |c| &c.timeouts);
        }
        bump(&self.counters, |c| &c.unanswered);
        Err(Failure::Timeout { attempts: self.retries + 1, each: self.timeout, refused })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_do_not_repeat() {
        let a = next_request_id();
        let b = next_request_id();
        assert_ne!(a, b);
        assert!(a >= 0 && b >= 0);
    }

    #[test]
    fn failures_read_well() {
        let t = Failure::Timeout { attempts: 2, each: Duration::from_millis(300), refused: true };
        assert_eq!(t.to_string(), "no answer within 300 ms (2 attempts), port unreachable");
        assert_eq!(Failure::Status { status: 2, index: 1 }.to_string(), "the agent answered noSuchName (varbind 1)");
        assert_eq!(status_name(99), "error-status 99");
    }
}
