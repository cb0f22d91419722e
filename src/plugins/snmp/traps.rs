//! Traps and informs (SPEC §5.1): what a datagram sent to `snmp.trap_listen` says, and
//! whether to believe it. v1 and v2c need a community of the sending device's objects
//! (or of a v2c profile); v3 needs a user of `snmp.credentials` and a right digest, with
//! the keys localized to the sender's engine (the sender of a trap is the authoritative
//! engine). Anything else is a [`Dropped`] reason, counted by the caller: a trap receiver
//! is open to the network, so nothing here trusts, or panics on, what arrives.

use std::collections::HashMap;
use std::net::IpAddr;

use super::ber::Val;
use super::credentials::{Credential, Profiles};
use super::message::{self, Body, Message, Pdu};
use super::usm::Keys;

/// snmpTrapOID.0: the second varbind of a v2 trap.
const SNMP_TRAP_OID: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
/// snmpTraps: coldStart .1, warmStart .2, linkDown .3, linkUp .4.
const SNMP_TRAPS: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5];
/// ifTable entry columns (ifIndex .1, ifAdminStatus .7, ifOperStatus .8) and ifXTable's ifName.
const IF_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
const IF_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
/// A v3 sender's (boots, time) may lag the latest seen by this many seconds (RFC 3414 §3.2).
const TIME_WINDOW: i64 = 150;
/// Most (engine, user) keys kept: only verified senders are added.
const MAX_KEYS: usize = 10_000;

/// What a trap reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    LinkDown,
    LinkUp,
    ColdStart,
    WarmStart,
    /// Any other notification: counted, not acted upon.
    Other,
}

/// A trap or inform believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap {
    pub from: IpAddr,
    pub kind: Kind,
    /// The interface a linkDown/linkUp names (its ifIndex varbind), and its ifName when sent.
    pub if_index: Option<u32>,
    pub if_name: Option<String>,
    /// 0 (v1), 1 (v2c) or 3.
    pub version: i64,
    /// The Response acknowledging an inform, to send back to its sender.
    pub ack: Option<Vec<u8>>,
}

impl Trap {
    /// For `esi-monitor status`: "linkDown trap from 10.0.0.1 (ifIndex 513)".
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            Kind::LinkDown => "linkDown",
            Kind::LinkUp => "linkUp",
            Kind::ColdStart => "coldStart",
            Kind::WarmStart => "warmStart",
            Kind::Other => "other",
        };
        let what = if self.ack.is_some() { "inform" } else { "trap" };
        match (self.if_index, &self.if_name) {
            (Some(i), Some(n)) => format!("{kind} {what} from {} (ifIndex {i}, {n})", self.from),
            (Some(i), None) => format!("{kind} {what} from {} (ifIndex {i})", self.from),
            _ => format!("{kind} {what} from {}", self.from),
        }
    }
}

/// Why a datagram was dropped (the `reason` label of `esi_monitor_traps_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    Malformed,
    UnknownSender,
    WrongCommunity,
    UnknownUser,
    BadAuth,
    Stale,
    Unsupported,
}

impl Dropped {
    pub const LABELS: [&'static str; 7] =
        ["malformed", "unknown_sender", "wrong_community", "unknown_user", "bad_auth", "stale", "unsupported"];

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The registered SNMP devices, by address: the `community_name` of their objects.
pub type Senders = HashMap<IpAddr, Vec<String>>;

/// The receiver's memory of v3 senders: keys localized to each engine, and the latest
/// (boots, time) each engine sent.
#[derive(Default)]
pub struct Engines {
    keys: HashMap<(Vec<u8>, String), Keys>,
    latest: HashMap<Vec<u8>, (i64, i64)>,
}

/// What a datagram from `from` says, if it is to be believed.
pub fn receive(bytes: &[u8], from: IpAddr, senders: &Senders, profiles: &Profiles, engines: &mut Engines) -> Result<Trap, Dropped> {
    let message = message::decode(bytes).ok_or(Dropped::Malformed)?;
    let names = senders.get(&from);
    match message {
        Message::Community { version, community, body } => {
            let names = names.ok_or(Dropped::UnknownSender)?;
            let own = names.iter().any(|n| matches!(&*profiles.resolve(n), Credential::Community(c) if c == community));
            if !own && !profiles.is_v2c_community(community) {
                return Err(Dropped::WrongCommunity);
            }
            // An inform's Response: the same id and varbinds, in the same community.
            let ack = match &body {
                Body::Pdu(p) if p.tag == message::INFORM => {
                    let response = Pdu { tag: message::RESPONSE, req_id: p.req_id, a: 0, b: 0, varbinds: p.varbinds.clone() };
                    Some(message::community_message(version, community, &response))
                }
                _ => None,
            };
            Ok(Trap { ack, ..notification(from, version, body)? })
        }
        Message::V3(m) => {
            if m.security_model != message::USM {
                return Err(Dropped::Unsupported);
            }
            let users = profiles.users(m.usm.user);
            if users.is_empty() {
                return Err(Dropped::UnknownUser);
            }
            if m.flags & message::FLAG_AUTH == 0 || m.usm.engine_id.is_empty() {
                return Err(Dropped::BadAuth);
            }
            // The first of the users of that name whose keys verify the digest.
            let user_name = String::from_utf8_lossy(m.usm.user).into_owned();
            let cached = engines.keys.get(&(m.usm.engine_id.to_vec(), user_name.clone())).filter(|k| k.verify(bytes, m.auth_at.clone()));
            let keys = match cached {
                Some(k) => k.clone(),
                None => {
                    let k = users.iter().map(|u| u.localize(m.usm.engine_id)).find(|k| k.verify(bytes, m.auth_at.clone()));
                    let k = k.ok_or(Dropped::BadAuth)?;
                    if engines.keys.len() >= MAX_KEYS {
                        engines.keys.clear();
                    }
                    engines.keys.insert((m.usm.engine_id.to_vec(), user_name), k.clone());
                    k
                }
            };
            let latest = engines.latest.get(m.usm.engine_id).copied().unwrap_or((0, 0));
            let (boots, time) = (m.usm.boots, m.usm.time);
            if boots < latest.0 || (boots == latest.0 && time + TIME_WINDOW < latest.1) {
                return Err(Dropped::Stale);
            }
            if (boots, time) > latest {
                engines.latest.insert(m.usm.engine_id.to_vec(), (boots, time));
            }
            // Known to the sender only: names not registered are dropped after the digest,
            // so that a forger cannot learn which addresses are registered.
            names.ok_or(Dropped::UnknownSender)?;
            let plain;
            let scoped = match (m.flags & message::FLAG_PRIV != 0, m.data_tag) {
                (false, super::ber::SEQUENCE) => m.data,
                (true, super::ber::OCTET_STRING) => {
                    plain = keys.open(&m).ok_or(Dropped::BadAuth)?;
                    &plain
                }
                _ => return Err(Dropped::Malformed),
            };
            let (_, body) = message::decode_scoped(scoped).ok_or(Dropped::BadAuth)?;
            if matches!(&body, Body::Pdu(p) if p.tag == message::INFORM) {
                // A v3 inform's receiver is the authoritative engine: not supported.
                return Err(Dropped::Unsupported);
            }
            notification(from, message::VERSION_3, body)
        }
    }
}

/// The notification a PDU carries (its `ack` is for the caller to make).
fn notification(from: IpAddr, version: i64, body: Body) -> Result<Trap, Dropped> {
    let (kind, varbinds) = match body {
        Body::TrapV1(t) if version == message::VERSION_1 => {
            let kind = match t.generic {
                0 => Kind::ColdStart,
                1 => Kind::WarmStart,
                2 => Kind::LinkDown,
                3 => Kind::LinkUp,
                _ => Kind::Other,
            };
            (kind, t.varbinds)
        }
        Body::Pdu(p) if matches!(p.tag, message::TRAP_V2 | message::INFORM) && version != message::VERSION_1 => {
            let kind = match p.varbinds.get(1) {
                Some((oid, Val::Oid(trap))) if oid == SNMP_TRAP_OID => match trap.strip_prefix(SNMP_TRAPS) {
                    Some([1]) => Kind::ColdStart,
                    Some([2]) => Kind::WarmStart,
                    Some([3]) => Kind::LinkDown,
                    Some([4]) => Kind::LinkUp,
                    _ => Kind::Other,
                },
                _ => return Err(Dropped::Malformed),
            };
            (kind, p.varbinds)
        }
        _ => return Err(Dropped::Unsupported),
    };
    let mut if_index = None;
    let mut if_name = None;
    for (oid, value) in &varbinds {
        if let Some([column, index]) = oid.strip_prefix(IF_ENTRY) {
            if matches!(column, 1 | 7 | 8) {
                if_index = if_index.or(Some(*index));
            }
        } else if let (Some([index]), Val::Bytes(name)) = (oid.strip_prefix(IF_NAME), value) {
            if_index = if_index.or(Some(*index));
            if_name = Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(Trap { from, kind, if_index, if_name, version, ack: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::snmp::ber;

    fn v2_trap(tag: u8, community: &[u8], trap: &[u32], if_index: u32) -> Vec<u8> {
        let varbinds = vec![
            (vec![1, 3, 6, 1, 2, 1, 1, 3, 0], Val::Ticks(100)),
            (SNMP_TRAP_OID.to_vec(), Val::Oid(trap.to_vec())),
            ([IF_ENTRY, &[1, if_index]].concat(), Val::Int(i64::from(if_index))),
            ([IF_ENTRY, &[8, if_index]].concat(), Val::Int(2)),
        ];
        message::community_message(message::VERSION_2C, community, &Pdu { tag, req_id: 42, a: 0, b: 0, varbinds })
    }

    fn senders() -> Senders {
        [("127.0.0.5".parse().unwrap(), vec!["devcomm".to_string()])].into_iter().collect()
    }

    #[test]
    fn v2c_link_down_from_a_registered_device() {
        let from: IpAddr = "127.0.0.5".parse().unwrap();
        let bytes = v2_trap(message::TRAP_V2, b"devcomm", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 3], 513);
        let trap = receive(&bytes, from, &senders(), &Profiles::default(), &mut Engines::default()).unwrap();
        assert_eq!((&trap.kind, trap.if_index, &trap.ack), (&Kind::LinkDown, Some(513), &None));
        assert_eq!(trap.describe(), "linkDown trap from 127.0.0.5 (ifIndex 513)");
        let other: IpAddr = "127.0.0.6".parse().unwrap();
        assert_eq!(receive(&bytes, other, &senders(), &Profiles::default(), &mut Engines::default()), Err(Dropped::UnknownSender));
        let wrong = v2_trap(message::TRAP_V2, b"other", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 3], 513);
        assert_eq!(receive(&wrong, from, &senders(), &Profiles::default(), &mut Engines::default()), Err(Dropped::WrongCommunity));
    }

    #[test]
    fn informs_are_acknowledged_with_their_id() {
        let from: IpAddr = "127.0.0.5".parse().unwrap();
        let bytes = v2_trap(message::INFORM, b"devcomm", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 4], 7);
        let trap = receive(&bytes, from, &senders(), &Profiles::default(), &mut Engines::default()).unwrap();
        assert_eq!(trap.kind, Kind::LinkUp);
        let ack = trap.ack.expect("an ack");
        match message::decode(&ack) {
            Some(Message::Community { community: b"devcomm", body: Body::Pdu(p), .. }) => {
                assert_eq!((p.tag, p.req_id, p.varbinds.len()), (message::RESPONSE, 42, 4));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let from: IpAddr = "127.0.0.5".parse().unwrap();
        let good = v2_trap(message::TRAP_V2, b"devcomm", &[1, 3, 6, 1, 6, 3, 1, 1, 5, 3], 513);
        let mut engines = Engines::default();
        for cut in 0..good.len() {
            assert_eq!(receive(&good[..cut], from, &senders(), &Profiles::default(), &mut engines), Err(Dropped::Malformed));
        }
        let mut seed = 0x9e37_79b9_u32;
        for n in 0..2000 {
            let len = n % 200;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = receive(&bytes, from, &senders(), &Profiles::default(), &mut engines);
        }
        let mut v = Vec::new();
        ber::int(0, &mut v);
        assert!(receive(&v, from, &senders(), &Profiles::default(), &mut engines).is_err());
    }
}
