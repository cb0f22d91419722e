//! The BER subset SNMP uses (X.690 definite lengths): TLVs, INTEGER, OCTET STRING, NULL,
//! OBJECT IDENTIFIER, the SNMP application types, and the three varbind exceptions.
//!
//! It exists so that every SNMP message (v1, v2c, v3 with USM, requests, replies, traps and
//! informs) is read and written by one small codec of our own: the v3 authentication
//! needs the byte offsets of fields inside a message, which no decoder we could borrow
//! exposes, and a reader that only ever returns `None` on bad input cannot panic on what
//! the network sends.

/// A decoded value, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Ticks(u32),
    Bytes(Vec<u8>),
    Oid(Vec<u32>),
    /// Counter32, Gauge32, IpAddress, Counter64, Opaque: kept by name only.
    Other(&'static str),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

pub type Varbind = (Vec<u32>, Val);

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const IP_ADDRESS: u8 = 0x40;
pub const TIMETICKS: u8 = 0x43;

/// Reads TLVs from a byte slice; every method returns `None` on anything malformed and
/// leaves nothing half-read that matters (a failed read ends the decoding).
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next TLV: its tag, its content, and where the content starts in this reader's slice.
    pub fn tlv(&mut self) -> Option<(u8, &'a [u8], usize)> {
        let tag = *self.buf.get(self.pos)?;
        let first = *self.buf.get(self.pos + 1)? as usize;
        let mut at = self.pos + 2;
        let len = if first < 0x80 {
            first
        } else {
            let n = first & 0x7f;
            // Indefinite lengths (0x80) are not BER SNMP may use; more than 4 octets is absurd.
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for _ in 0..n {
                len = (len << 8) | *self.buf.get(at)? as usize;
                at += 1;
            }
            len
        };
        let end = at.checked_add(len)?;
        let content = self.buf.get(at..end)?;
        self.pos = end;
        Some((tag, content, at))
    }

    /// The next TLV's content if its tag is `tag`.
    pub fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.tlv()? {
            (t, content, _) if t == tag => Some(content),
            _ => None,
        }
    }

    /// A constructed TLV of `tag`, as a reader of its content, and where that content starts.
    pub fn nested(&mut self, tag: u8) -> Option<(Reader<'a>, usize)> {
        match self.tlv()? {
            (t, content, at) if t == tag => Some((Reader::new(content), at)),
            _ => None,
        }
    }

    pub fn int(&mut self) -> Option<i64> {
        int_of(self.expect(INTEGER)?)
    }

    pub fn octets(&mut self) -> Option<&'a [u8]> {
        self.expect(OCTET_STRING)
    }

    /// A SEQUENCE OF varbinds.
    pub fn varbinds(&mut self) -> Option<Vec<Varbind>> {
        let (mut list, _) = self.nested(SEQUENCE)?;
        let mut out = Vec::new();
        while !list.is_empty() {
            let (mut vb, _) = list.nested(SEQUENCE)?;
            let oid = oid_of(vb.expect(OID)?)?;
            let (tag, content, _) = vb.tlv()?;
            out.push((oid, value_of(tag, content)?));
        }
        Some(out)
    }
}

/// Two's-complement content octets → i64 (at most 9 octets: an unsigned 64-bit value
/// with its leading zero is cut to i64's range by the caller's types).
pub fn int_of(content: &[u8]) -> Option<i64> {
    if content.is_empty() || content.len() > 8 {
        // 9 octets only for Counter64 values above i64::MAX, which no probe reads.
        return None;
    }
    let mut n: i64 = if content[0] & 0x80 != 0 { -1 } else { 0 };
    for &b in content {
        n = (n << 8) | i64::from(b);
    }
    Some(n)
}

/// An unsigned application value (Counter32, Gauge32, TimeTicks): up to 4 octets plus a
/// leading zero.
fn uint32_of(content: &[u8]) -> Option<u32> {
    let trimmed = match content {
        [0, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    if trimmed.is_empty() || trimmed.len() > 4 {
        return None;
    }
    Some(trimmed.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)))
}

pub fn value_of(tag: u8, content: &[u8]) -> Option<Val> {
    Some(match tag {
        INTEGER => Val::Int(int_of(content)?),
        OCTET_STRING => Val::Bytes(content.to_vec()),
        NULL => Val::Null,
        OID => Val::Oid(oid_of(content)?),
        TIMETICKS => Val::Ticks(uint32_of(content)?),
        IP_ADDRESS => Val::Other("IpAddress"),
        0x41 => Val::Other("Counter32"),
        0x42 => Val::Other("Gauge32"),
        0x44 => Val::Other("Opaque"),
        0x46 => Val::Other("Counter64"),
        0x80 => Val::NoSuchObject,
        0x81 => Val::NoSuchInstance,
        0x82 => Val::EndOfMibView,
        _ => return None,
    })
}

/// BER content octets of an OBJECT IDENTIFIER → arcs.
pub fn oid_of(bytes: &[u8]) -> Option<Vec<u32>> {
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

/// The length of a TLV header whose content is `len` octets.
pub fn header_len(len: usize) -> usize {
    if len < 0x80 {
        2
    } else {
        2 + (usize::BITS as usize / 8 - len.leading_zeros() as usize / 8)
    }
}

pub fn tlv(tag: u8, content: &[u8], out: &mut Vec<u8>) {
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

pub fn int(n: i64, out: &mut Vec<u8>) {
    tlv(INTEGER, &int_content(n), out);
}

/// Minimal two's-complement content octets.
pub fn int_content(n: i64) -> Vec<u8> {
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
pub fn oid_content(arcs: &[u32]) -> Vec<u8> {
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

pub fn value(v: &Val, out: &mut Vec<u8>) {
    match v {
        Val::Null | Val::Other(_) => tlv(NULL, &[], out),
        Val::Int(i) => int(*i, out),
        Val::Ticks(t) => tlv(TIMETICKS, &int_content(i64::from(*t)), out),
        Val::Bytes(b) => tlv(OCTET_STRING, b, out),
        Val::Oid(o) => tlv(OID, &oid_content(o), out),
        Val::NoSuchObject => tlv(0x80, &[], out),
        Val::NoSuchInstance => tlv(0x81, &[], out),
        Val::EndOfMibView => tlv(0x82, &[], out),
    }
}

/// A SEQUENCE OF varbinds.
pub fn varbinds<'v>(list: impl IntoIterator<Item = (&'v [u32], &'v Val)>, out: &mut Vec<u8>) {
    let mut content = Vec::with_capacity(64);
    let mut vb = Vec::with_capacity(32);
    for (oid, v) in list {
        vb.clear();
        tlv(OID, &oid_content(oid), &mut vb);
        value(v, &mut vb);
        tlv(SEQUENCE, &vb, &mut content);
    }
    tlv(SEQUENCE, &content, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_round_trip() {
        for arcs in [vec![1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1], vec![1, 3, 6, 1, 4, 1, 2636, 3, 4294967295]] {
            assert_eq!(oid_of(&oid_content(&arcs)).as_deref(), Some(arcs.as_slice()));
        }
        assert_eq!(oid_of(&[0x2b, 0x86]), None, "unterminated arc");
        assert_eq!(oid_of(&[0x2b, 0x90, 0x80, 0x80, 0x80, 0x80, 0x00]), None, "arc beyond u32");
    }

    #[test]
    fn integers_are_minimal_and_read_back() {
        assert_eq!(int_content(0), [0]);
        assert_eq!(int_content(127), [0x7f]);
        assert_eq!(int_content(128), [0x00, 0x80]);
        assert_eq!(int_content(-1), [0xff]);
        assert_eq!(int_content(-129), [0xff, 0x7f]);
        assert_eq!(int_content(i64::from(u32::MAX)), [0x00, 0xff, 0xff, 0xff, 0xff]);
        for n in [0, 1, -1, 127, 128, -129, 65_535, i64::from(i32::MIN), i64::from(u32::MAX)] {
            assert_eq!(int_of(&int_content(n)), Some(n));
        }
        assert_eq!(uint32_of(&int_content(i64::from(u32::MAX))), Some(u32::MAX));
        assert_eq!(uint32_of(&[1, 0, 0, 0, 0]), None, "beyond 32 bits");
    }

    #[test]
    fn lengths_long_and_short() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536] {
            let mut out = Vec::new();
            tlv(OCTET_STRING, &vec![7; len], &mut out);
            assert_eq!(out.len(), header_len(len) + len, "{len}");
            let mut r = Reader::new(&out);
            assert_eq!(r.octets().map(<[u8]>::len), Some(len));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn malformed_input_is_none_never_a_panic() {
        let mut good = Vec::new();
        varbinds([(&[1u32, 3, 6, 1][..], &Val::Ticks(5)), (&[1, 3, 6, 2][..], &Val::Bytes(b"xe-0/0/0".to_vec()))], &mut good);
        assert_eq!(Reader::new(&good).varbinds().map(|v| v.len()), Some(2));
        for cut in 0..good.len() {
            assert!(Reader::new(&good[..cut]).varbinds().is_none(), "cut at {cut}");
        }
        for bad in [&[0x30, 0x80][..], &[0x30, 0x85, 1, 1, 1, 1, 1], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &[]] {
            assert!(Reader::new(bad).varbinds().is_none());
        }
        // Every byte flipped in turn: decoded or refused, never a panic.
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xff;
            let _ = Reader::new(&b).varbinds();
        }
    }
}
