//! SNMP messages (RFC 3416 PDUs in v1/v2c community messages and RFC 3412 v3 messages),
//! encoded and decoded with `ber.rs`; the v3 security (USM) applied to them is `usm.rs`.

use super::ber::{self, Reader, Val, Varbind, OCTET_STRING, SEQUENCE};

pub const GET: u8 = 0xA0;
pub const RESPONSE: u8 = 0xA2;
pub const TRAP_V1: u8 = 0xA4;
pub const GETBULK: u8 = 0xA5;
pub const INFORM: u8 = 0xA6;
pub const TRAP_V2: u8 = 0xA7;
pub const REPORT: u8 = 0xA8;

pub const VERSION_1: i64 = 0;
pub const VERSION_2C: i64 = 1;
pub const VERSION_3: i64 = 3;
/// msgSecurityModel of the USM.
pub const USM: i64 = 3;
pub const FLAG_AUTH: u8 = 1;
pub const FLAG_PRIV: u8 = 2;
pub const FLAG_REPORTABLE: u8 = 4;

/// A PDU of RFC 3416 (all but the v1 Trap-PDU). For GETBULK `a`/`b` are non-repeaters and
/// max-repetitions, else error-status and error-index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub tag: u8,
    pub req_id: i32,
    pub a: i64,
    pub b: i64,
    pub varbinds: Vec<Varbind>,
}

/// SNMPv1's Trap-PDU (RFC 1157).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapV1 {
    pub enterprise: Vec<u32>,
    pub generic: i64,
    pub specific: i64,
    pub varbinds: Vec<Varbind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Pdu(Pdu),
    TrapV1(TrapV1),
}

impl Pdu {
    pub fn request(tag: u8, req_id: i32, a: i64, b: i64, oids: &[&[u32]]) -> Pdu {
        Pdu { tag, req_id, a, b, varbinds: oids.iter().map(|o| (o.to_vec(), Val::Null)).collect() }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut content = Vec::with_capacity(32 + self.varbinds.len() * 24);
        ber::int(i64::from(self.req_id), &mut content);
        ber::int(self.a, &mut content);
        ber::int(self.b, &mut content);
        ber::varbinds(self.varbinds.iter().map(|(o, v)| (o.as_slice(), v)), &mut content);
        ber::tlv(self.tag, &content, out);
    }
}

/// A PDU from its TLV; `None` for anything malformed or of an unknown tag.
pub fn decode_body(r: &mut Reader<'_>) -> Option<Body> {
    let (tag, content, _) = r.tlv()?;
    let mut r = Reader::new(content);
    match tag {
        TRAP_V1 => {
            let enterprise = ber::oid_of(r.expect(ber::OID)?)?;
            r.expect(ber::IP_ADDRESS)?;
            let generic = r.int()?;
            let specific = r.int()?;
            r.expect(ber::TIMETICKS)?;
            let varbinds = r.varbinds()?;
            Some(Body::TrapV1(TrapV1 { enterprise, generic, specific, varbinds }))
        }
        0xA0..=0xA8 => {
            let req_id = i32::try_from(r.int()?).ok()?;
            let a = r.int()?;
            let b = r.int()?;
            let varbinds = r.varbinds()?;
            Some(Body::Pdu(Pdu { tag, req_id, a, b, varbinds }))
        }
        _ => None,
    }
}

/// A v1 or v2c message.
pub fn community_message(version: i64, community: &[u8], pdu: &Pdu) -> Vec<u8> {
    let mut content = Vec::with_capacity(64 + community.len() + pdu.varbinds.len() * 24);
    ber::int(version, &mut content);
    ber::tlv(OCTET_STRING, community, &mut content);
    pdu.encode(&mut content);
    let mut out = Vec::with_capacity(content.len() + 6);
    ber::tlv(SEQUENCE, &content, &mut out);
    out
}

/// The USM security parameters of a v3 message (RFC 3414 §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsmParams<'a> {
    pub engine_id: &'a [u8],
    pub boots: i64,
    pub time: i64,
    pub user: &'a [u8],
    pub auth: &'a [u8],
    pub privacy: &'a [u8],
}

/// A decoded v3 message; `data` is the scopedPDU, or its encryption when `FLAG_PRIV`.
#[derive(Debug, Clone)]
pub struct V3<'a> {
    pub msg_id: i32,
    pub flags: u8,
    pub security_model: i64,
    pub usm: UsmParams<'a>,
    /// Where `usm.auth` lies in the whole message (it is zeroed to check the digest).
    pub auth_at: std::ops::Range<usize>,
    pub data: &'a [u8],
    /// The TLV of `data`: a SEQUENCE (plain) or an OCTET STRING (encrypted).
    pub data_tag: u8,
}

#[derive(Debug, Clone)]
pub enum Message<'a> {
    Community { version: i64, community: &'a [u8], body: Body },
    V3(V3<'a>),
}

/// Any SNMP message; `None` for anything malformed.
pub fn decode(bytes: &[u8]) -> Option<Message<'_>> {
    let (mut msg, msg_at) = Reader::new(bytes).nested(SEQUENCE)?;
    let version = msg.int()?;
    match version {
        VERSION_1 | VERSION_2C => {
            let community = msg.octets()?;
            let body = decode_body(&mut msg)?;
            Some(Message::Community { version, community, body })
        }
        VERSION_3 => {
            let (mut global, _) = msg.nested(SEQUENCE)?;
            let msg_id = i32::try_from(global.int()?).ok()?;
            let _max_size = global.int()?;
            let flags = *global.octets()?.first()?;
            let security_model = global.int()?;
            let (_, params, params_at) = msg.tlv().filter(|(tag, _, _)| *tag == OCTET_STRING)?;
            let (mut usm, usm_at) = Reader::new(params).nested(SEQUENCE)?;
            let engine_id = usm.octets()?;
            let boots = usm.int()?;
            let time = usm.int()?;
            let user = usm.octets()?;
            let (_, auth, auth_in_usm) = usm.tlv().filter(|(tag, _, _)| *tag == OCTET_STRING)?;
            let auth_start = msg_at + params_at + usm_at + auth_in_usm;
            let privacy = usm.octets()?;
            let (data_tag, data, _) = msg.tlv()?;
            if data_tag != SEQUENCE && data_tag != OCTET_STRING {
                return None;
            }
            let usm = UsmParams { engine_id, boots, time, user, auth, privacy };
            let auth_at = auth_start..auth_start + auth.len();
            Some(Message::V3(V3 { msg_id, flags, security_model, usm, auth_at, data, data_tag }))
        }
        _ => None,
    }
}

/// A scopedPDU's content: contextEngineID, contextName, and the PDU.
pub fn decode_scoped(content: &[u8]) -> Option<(&[u8], Body)> {
    let mut r = Reader::new(content);
    let context_engine = r.octets()?;
    let _context_name = r.octets()?;
    Some((context_engine, decode_body(&mut r)?))
}

/// A scopedPDU (a SEQUENCE) for `pdu`, empty context name.
pub fn scoped(context_engine: &[u8], pdu: &Pdu) -> Vec<u8> {
    let mut content = Vec::with_capacity(64 + pdu.varbinds.len() * 24);
    ber::tlv(OCTET_STRING, context_engine, &mut content);
    ber::tlv(OCTET_STRING, b"", &mut content);
    pdu.encode(&mut content);
    let mut out = Vec::with_capacity(content.len() + 6);
    ber::tlv(SEQUENCE, &content, &mut out);
    out
}

/// A v3 message around `data` (a scopedPDU's TLV, or an OCTET STRING of its encryption),
/// with `auth_len` zero octets for the digest; the second value is where they lie.
pub fn v3_message(msg_id: i32, flags: u8, usm: &UsmParams<'_>, auth_len: usize, data: &[u8]) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut global = Vec::with_capacity(24);
    ber::int(i64::from(msg_id), &mut global);
    ber::int(65_507, &mut global);
    ber::tlv(OCTET_STRING, &[flags], &mut global);
    ber::int(USM, &mut global);
    let mut params = Vec::with_capacity(96);
    ber::tlv(OCTET_STRING, usm.engine_id, &mut params);
    ber::int(usm.boots, &mut params);
    ber::int(usm.time, &mut params);
    ber::tlv(OCTET_STRING, usm.user, &mut params);
    let auth_in_params = params.len() + ber::header_len(auth_len);
    ber::tlv(OCTET_STRING, &vec![0; auth_len], &mut params);
    ber::tlv(OCTET_STRING, usm.privacy, &mut params);
    let mut usm_seq = Vec::with_capacity(params.len() + 4);
    ber::tlv(SEQUENCE, &params, &mut usm_seq);
    let mut content = Vec::with_capacity(usm_seq.len() + data.len() + 48);
    ber::int(VERSION_3, &mut content);
    ber::tlv(SEQUENCE, &global, &mut content);
    let usm_at = content.len() + ber::header_len(usm_seq.len()) + ber::header_len(params.len());
    ber::tlv(OCTET_STRING, &usm_seq, &mut content);
    content.extend_from_slice(data);
    let auth_start = ber::header_len(content.len()) + usm_at + auth_in_params;
    let mut out = Vec::with_capacity(content.len() + 6);
    ber::tlv(SEQUENCE, &content, &mut out);
    (out, auth_start..auth_start + auth_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn community_messages_round_trip() {
        let pdu = Pdu { tag: RESPONSE, req_id: 0x1234_5678, a: 0, b: 0, varbinds: vec![(vec![1, 3, 6, 1, 2, 1, 1, 3, 0], Val::Ticks(3_000_000_000))] };
        let bytes = community_message(VERSION_2C, b"public", &pdu);
        match decode(&bytes) {
            Some(Message::Community { version: VERSION_2C, community: b"public", body: Body::Pdu(p) }) => assert_eq!(p, pdu),
            other => panic!("{other:?}"),
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn v3_messages_say_where_the_digest_lies() {
        let usm = UsmParams { engine_id: b"\x80\x00\x1f\x88\x80engine", boots: 3, time: 1234, user: b"esi", auth: b"", privacy: b"saltsalt" };
        let pdu = Pdu::request(GET, 7, 0, 0, &[&[1, 3, 6, 1, 2, 1, 1, 3, 0]]);
        let data = scoped(usm.engine_id, &pdu);
        let (mut bytes, at) = v3_message(99, FLAG_AUTH | FLAG_REPORTABLE, &usm, 24, &data);
        bytes[at.clone()].copy_from_slice(&[0xAB; 24]);
        let Some(Message::V3(m)) = decode(&bytes) else { panic!("not decoded") };
        assert_eq!((m.msg_id, m.flags, m.security_model), (99, FLAG_AUTH | FLAG_REPORTABLE, USM));
        assert_eq!((m.usm.engine_id, m.usm.boots, m.usm.time, m.usm.user), (usm.engine_id, 3, 1234, &b"esi"[..]));
        assert_eq!(m.usm.auth, &[0xAB; 24][..]);
        assert_eq!(m.auth_at, at);
        assert_eq!(m.data_tag, SEQUENCE);
        assert_eq!(decode_scoped(m.data).map(|(e, b)| (e.to_vec(), b)), Some((usm.engine_id.to_vec(), Body::Pdu(pdu))));
    }
}
