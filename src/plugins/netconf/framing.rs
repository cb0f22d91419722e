//! RFC 6242 message framing of NETCONF over SSH, apart from any SSH code.
//!
//! It exists so that the session code only sends and receives whole messages: how a message
//! ends (`]]>]]>` in NETCONF 1.0, chunks in 1.1), which framing the two hellos agree on, and
//! the guards against a device that sends too much, stops in the middle or breaks the chunk
//! syntax live here, generic over `Read`/`Write` so that tests feed them from memory. Every
//! failure is an `io::Error` whose message names what was wrong; the kinds of the underlying
//! reads (`TimedOut`, `WouldBlock`) are passed through unchanged.

use std::io::{self, Read, Write};

/// The NETCONF 1.0 end-of-message delimiter.
const EOM: &[u8] = b"]]>]]>";
/// Base capabilities of the two framings (RFC 6241 §8.1, RFC 6242 §4.1).
const BASE_10: &str = "urn:ietf:params:netconf:base:1.0";
const BASE_11: &str = "urn:ietf:params:netconf:base:1.1";
/// The largest chunk RFC 6242 allows (`chunk-size` is 1..4294967295).
const MAX_CHUNK: u64 = 4_294_967_295;
/// How much one `read` asks for.
const READ_SIZE: usize = 16 * 1024;

/// A bound for one message fit for Junos replies: those of big boxes are a few MB.
pub const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// How messages are delimited on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// NETCONF 1.0: each message is followed by `]]>]]>`. Hellos always use it.
    Eom,
    /// NETCONF 1.1: `\n#<len>\n<bytes>` chunks, then `\n##\n`.
    Chunked,
}

/// The framing that follows the hellos: chunked only if the server offers base:1.1 (ours
/// offers both, see [`client_hello`]). Junos offers 1.0 only.
pub fn negotiate(server_hello: &str) -> Framing {
    let text = server_hello.trim_start();
    let offers_11 = match roxmltree::Document::parse(text) {
        Ok(doc) => doc
            .descendants()
            .any(|n| n.tag_name().name() == "capability" && n.text().is_some_and(|t| t.trim() == BASE_11)),
        // Not XML we can read (a declaration after the comments, say): look for the capability.
        Err(_) => text.contains(&format!(">{BASE_11}<")),
    };
    if offers_11 {
        Framing::Chunked
    } else {
        Framing::Eom
    }
}

/// Our `<hello>`: base:1.0 and base:1.1, no other capability (we only read operational data).
pub fn client_hello() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities>\
         <capability>{BASE_10}</capability><capability>{BASE_11}</capability>\
         </capabilities></hello>"
    )
}

/// An `<rpc>` with `message_id` around `body`, which must already be XML (it is not escaped).
pub fn rpc(message_id: u64, body: &str) -> String {
    format!("<rpc message-id=\"{message_id}\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">{body}</rpc>")
}

/// Writes `body` as one message in `framing`, then flushes.
///
/// Refuses (`InvalidInput`) what could not be framed: a 1.0 body containing `]]>]]>` (the
/// device would cut the message there) and an empty 1.1 body (a message has at least a chunk).
pub fn write_message(w: &mut impl Write, framing: Framing, body: &[u8]) -> io::Result<()> {
    match framing {
        Framing::Eom => {
            if find(body, EOM).is_some() {
                return Err(invalid_input("a NETCONF 1.0 message cannot contain ]]>]]>"));
            }
            w.write_all(body)?;
            w.write_all(EOM)?;
        }
        Framing::Chunked => {
            if body.is_empty() {
                return Err(invalid_input("a NETCONF 1.1 message cannot be empty"));
            }
            // One chunk unless the body is beyond what one chunk can hold.
            let chunks = usize::try_from(MAX_CHUNK).unwrap_or(usize::MAX);
            for chunk in body.chunks(chunks) {
                write!(w, "\n#{}\n", chunk.len())?;
                w.write_all(chunk)?;
            }
            w.write_all(b"\n##\n")?;
        }
    }
    w.flush()
}

/// Reads messages one at a time from a stream, keeping what comes after a message for the next.
///
/// After `TimedOut`, `WouldBlock` or `Interrupted` from the stream, the bytes received so far
/// stay buffered and the next call goes on with the same message. After any other error the
/// session is out of step and should be dropped.
#[derive(Debug, Default)]
pub struct Reader {
    /// Bytes received; those before `start` belong to messages already returned.
    buf: Vec<u8>,
    start: usize,
    /// End-of-message framing: `buf[start..scanned]` was searched for the delimiter already.
    scanned: usize,
    /// Chunked framing: the chunks of the current message received so far.
    body: Vec<u8>,
}

/// What a chunked-framing header announces.
enum Header {
    Chunk(usize),
    End,
}

impl Reader {
    pub fn new() -> Reader {
        Reader::default()
    }

    /// The next message from `r` in `framing`, without its delimiter or chunk headers.
    ///
    /// Errors: a message larger than `max` bytes (`InvalidData`), a malformed chunk header
    /// (`InvalidData`), the end of the stream (`UnexpectedEof`, "in the middle of a message"
    /// when part of one was received), and the stream's own errors, kinds kept.
    pub fn read_message(&mut self, r: &mut impl Read, framing: Framing, max: usize) -> io::Result<Vec<u8>> {
        self.compact();
        match framing {
            Framing::Eom => self.read_eom(r, max),
            Framing::Chunked => self.read_chunked(r, max),
        }
    }

    /// Bytes received after the last message returned (and not part of a message begun).
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn read_eom(&mut self, r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
        loop {
            // A delimiter may have begun in the last 5 bytes searched: search again from there.
            let from = self.scanned.saturating_sub(EOM.len() - 1).max(self.start);
            if let Some(at) = find(&self.buf[from..], EOM).map(|i| from + i) {
                if at - self.start > max {
                    return Err(too_large(max));
                }
                let message = self.buf[self.start..at].to_vec();
                self.start = at + EOM.len();
                self.scanned = self.start;
                return Ok(message);
            }
            self.scanned = self.buf.len();
            // Even if the delimiter begins in the last 5 bytes, the message is already too large.
            if self.buf.len() - self.start > max.saturating_add(EOM.len() - 1) {
                return Err(too_large(max));
            }
            if self.fill(r)? == 0 {
                return Err(self.ended(self.buf[self.start..].iter().all(u8::is_ascii_whitespace)));
            }
        }
    }

    fn read_chunked(&mut self, r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
        loop {
            match chunk_header(&self.buf[self.start..])? {
                Some((Header::End, len)) => {
                    if self.body.is_empty() {
                        return Err(invalid_data("a NETCONF 1.1 message ended before any chunk"));
                    }
                    self.start += len;
                    return Ok(std::mem::take(&mut self.body));
                }
                Some((Header::Chunk(size), len)) => {
                    if self.body.len().saturating_add(size) > max {
                        return Err(too_large(max));
                    }
                    let data = self.start + len;
                    if self.buf.len() - data >= size {
                        self.body.extend_from_slice(&self.buf[data..data + size]);
                        self.start = data + size;
                        continue;
                    }
                }
                None => {}
            }
            if self.fill(r)? == 0 {
                return Err(self.ended(self.body.is_empty() && self.buf.len() == self.start));
            }
        }
    }

    /// Appends what one read of `r` gives; 0 at the end of the stream.
    fn fill(&mut self, r: &mut impl Read) -> io::Result<usize> {
        let mut tmp = [0u8; READ_SIZE];
        loop {
            match r.read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the bytes of messages already returned.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned = self.scanned.saturating_sub(self.start);
            self.start = 0;
        }
    }

    fn ended(&self, between_messages: bool) -> io::Error {
        let what = if between_messages {
            "the session ended before the next message"
        } else {
            "the session ended in the middle of a message"
        };
        io::Error::new(io::ErrorKind::UnexpectedEof, what)
    }
}

/// Parses the chunk header at the start of `b`: `\n#<size>\n` or `\n##\n`, with its length.
/// `None` when `b` ends before the header does.
fn chunk_header(b: &[u8]) -> io::Result<Option<(Header, usize)>> {
    let bad = || {
        let shown = &b[..b.len().min(16)];
        invalid_data(&format!("malformed NETCONF 1.1 chunk header \"{}\"", shown.escape_ascii()))
    };
    match b {
        [] | [b'\n'] | [b'\n', b'#'] | [b'\n', b'#', b'#'] => return Ok(None),
        [b'\n', b'#', b'#', b'\n', ..] => return Ok(Some((Header::End, 4))),
        [b'\n', b'#', b'1'..=b'9', ..] => {}
        _ => return Err(bad()),
    }
    // Up to 10 digits (4294967295), then a newline.
    let digits = b[2..].iter().take(11).take_while(|c| c.is_ascii_digit()).count();
    if digits > 10 {
        return Err(bad());
    }
    match b.get(2 + digits) {
        None => Ok(None),
        Some(b'\n') => {
            let size = b[2..2 + digits].iter().fold(0u64, |n, c| n * 10 + u64::from(c - b'0'));
            if size > MAX_CHUNK {
                return Err(bad());
            }
            let size = usize::try_from(size).map_err(|_| bad())?;
            Ok(Some((Header::Chunk(size), 3 + digits)))
        }
        Some(_) => Err(bad()),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn too_large(max: usize) -> io::Error {
    invalid_data(&format!("a NETCONF message is larger than {max} bytes"))
}

fn invalid_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn invalid_input(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    const HELLO: &str = include_str!("../../../tests/fixtures/netconf/hello.xml");

    /// A stream that gives the scripted reads one by one, then the end of the stream.
    struct Script(VecDeque<io::Result<Vec<u8>>>);

    impl Script {
        fn new<P: AsRef<[u8]>>(pieces: &[P]) -> Script {
            Script(pieces.iter().map(|p| Ok(p.as_ref().to_vec())).collect())
        }
    }

    impl Read for Script {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                None => Ok(0),
                Some(Err(e)) => Err(e),
                Some(Ok(mut piece)) => {
                    let n = piece.len().min(out.len());
                    out[..n].copy_from_slice(&piece[..n]);
                    if n < piece.len() {
                        self.0.push_front(Ok(piece.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
    }

    fn read(reader: &mut Reader, s: &mut Script, framing: Framing) -> io::Result<Vec<u8>> {
        reader.read_message(s, framing, 1024)
    }

    #[test]
    fn eom_delimiter_split_at_every_position() {
        let wire = b"<rpc-reply>ok</rpc-reply>]]>]]><next";
        for cut in 1..wire.len() {
            let mut s = Script::new(&[&wire[..cut], &wire[cut..]]);
            let mut reader = Reader::new();
            assert_eq!(read(&mut reader, &mut s, Framing::Eom).unwrap(), b"<rpc-reply>ok</rpc-reply>", "cut {cut}");
            // The bytes after the delimiter wait for the next message.
            let rest = read(&mut reader, &mut s, Framing::Eom).unwrap_err();
            assert_eq!(rest.kind(), io::ErrorKind::UnexpectedEof);
            assert!(rest.to_string().contains("middle of a message"), "{rest}");
            assert_eq!(reader.buffered(), b"<next");
        }
    }

    #[test]
    fn eom_byte_by_byte() {
        let wire = b"a]]>]]]>]]>b]]>]]>";
        let pieces: Vec<&[u8]> = wire.chunks(1).collect();
        let mut s = Script::new(&pieces[..]);
        let mut reader = Reader::new();
        assert_eq!(read(&mut reader, &mut s, Framing::Eom).unwrap(), b"a]]>]");
        assert_eq!(read(&mut reader, &mut s, Framing::Eom).unwrap(), b"b");
    }

    #[test]
    fn two_messages_in_one_read() {
        let mut s = Script::new(&[b"one]]>]]>two]]>]]>"]);
        let mut reader = Reader::new();
        assert_eq!(read(&mut reader, &mut s, Framing::Eom).unwrap(), b"one");
        assert_eq!(read(&mut reader, &mut s, Framing::Eom).unwrap(), b"two");
        let end = read(&mut reader, &mut s, Framing::Eom).unwrap_err();
        assert_eq!(end.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(end.to_string(), "the session ended before the next message");
    }

    #[test]
    fn eof_mid_message() {
        let mut s = Script::new(&[b"<rpc-reply>", b"<data>]]>]]"]);
        let err = read(&mut Reader::new(), &mut s, Framing::Eom).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(err.to_string(), "the session ended in the middle of a message");

        let mut s = Script::new(&[b"\n#5\nabc"]);
        let err = read(&mut Reader::new(), &mut s, Framing::Chunked).unwrap_err();
        assert_eq!(err.to_string(), "the session ended in the middle of a message");
        let mut s = Script::new(&[b"\n#3\nabc"]);
        let err = read(&mut Reader::new(), &mut s, Framing::Chunked).unwrap_err();
        assert_eq!(err.to_string(), "the session ended in the middle of a message");
    }

    #[test]
    fn oversize_is_refused() {
        let mut reader = Reader::new();
        let mut s = Script::new(&[b"0123456789]]>]]>01234567890]]>]]>"]);
        assert_eq!(reader.read_message(&mut s, Framing::Eom, 10).unwrap(), b"0123456789");
        let err = reader.read_message(&mut s, Framing::Eom, 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "a NETCONF message is larger than 10 bytes");
        // A stream that never ends a message is cut off too.
        let err = Reader::new().read_message(&mut io::repeat(b'x'), Framing::Eom, 100_000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // Chunked: the total of the chunks counts, refused before the data arrives.
        let mut s = Script::new(&[b"\n#6\nabcdef\n#5\n"]);
        let err = Reader::new().read_message(&mut s, Framing::Chunked, 10).unwrap_err();
        assert_eq!(err.to_string(), "a NETCONF message is larger than 10 bytes");
        let mut s = Script::new(&[b"\n#6\nabcdef\n#4\nghij\n##\n"]);
        assert_eq!(Reader::new().read_message(&mut s, Framing::Chunked, 10).unwrap(), b"abcdefghij");
    }

    #[test]
    fn timeouts_keep_their_kind_and_the_bytes() {
        for kind in [io::ErrorKind::TimedOut, io::ErrorKind::WouldBlock] {
            let mut s = Script(VecDeque::from([
                Ok(b"<rpc-reply/>]]>".to_vec()),
                Err(io::Error::new(kind, "no data")),
                Ok(b"]]>".to_vec()),
            ]));
            let mut reader = Reader::new();
            assert_eq!(read(&mut reader, &mut s, Framing::Eom).unwrap_err().kind(), kind);
            assert_eq!(read(&mut reader, &mut s, Framing::Eom).unwrap(), b"<rpc-reply/>");
        }
        let mut s = Script(VecDeque::from([
            Ok(b"\n#3\nab".to_vec()),
            Err(io::Error::new(io::ErrorKind::Interrupted, "signal")),
            Ok(b"c\n#".to_vec()),
            Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
            Ok(b"#\n".to_vec()),
        ]));
        let mut reader = Reader::new();
        assert_eq!(read(&mut reader, &mut s, Framing::Chunked).unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(read(&mut reader, &mut s, Framing::Chunked).unwrap(), b"abc");
    }

    #[test]
    fn chunked_several_chunks_split_at_every_position() {
        let wire = b"\n#4\n<rpc\n#18\n-reply/>\n##\n]]>]]>\n##\n\n#1\nx\n##\n";
        for cut in 1..wire.len() {
            let mut s = Script::new(&[&wire[..cut], &wire[cut..]]);
            let mut reader = Reader::new();
            assert_eq!(read(&mut reader, &mut s, Framing::Chunked).unwrap(), b"<rpc-reply/>\n##\n]]>]]>", "cut {cut}");
            assert_eq!(read(&mut reader, &mut s, Framing::Chunked).unwrap(), b"x", "cut {cut}");
        }
    }

    #[test]
    fn chunked_bad_headers() {
        for wire in [
            &b"#4\nabcd\n##\n"[..],
            b"\n#0\n\n##\n",
            b"\n#04\nabcd\n##\n",
            b"\n#x\n",
            b"\n#4x\nabcd\n##\n",
            b"\n# 4\nabcd\n##\n",
            b"\n#12345678901\n",
            b"\n#4294967296\nabcd",
            b"\n#4\nabcd##\n",
            b"\n#4\nabcd\n#\n",
            b"\n##x",
            b"\n##\n",
            b" \n#4\nabcd\n##\n",
        ] {
            let err = read(&mut Reader::new(), &mut Script::new(&[wire]), Framing::Chunked).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{}: {err}", wire.escape_ascii());
        }
        let err = read(&mut Reader::new(), &mut Script::new(&[b"\n#4x\n"]), Framing::Chunked).unwrap_err();
        assert_eq!(err.to_string(), "malformed NETCONF 1.1 chunk header \"\\n#4x\\n\"");
        // The largest size is a valid header (refused only for its size).
        let err = read(&mut Reader::new(), &mut Script::new(&[b"\n#4294967295\n"]), Framing::Chunked).unwrap_err();
        assert_eq!(err.to_string(), "a NETCONF message is larger than 1024 bytes");
    }

    #[test]
    fn written_messages_read_back() {
        for framing in [Framing::Eom, Framing::Chunked] {
            let mut wire = Vec::new();
            write_message(&mut wire, framing, rpc(7, "<get-vrrp-information/>").as_bytes()).unwrap();
            write_message(&mut wire, framing, b"<close-session/>").unwrap();
            let mut s = Script::new(&[&wire]);
            let mut reader = Reader::new();
            let first = read(&mut reader, &mut s, framing).unwrap();
            assert_eq!(first, rpc(7, "<get-vrrp-information/>").as_bytes());
            assert_eq!(read(&mut reader, &mut s, framing).unwrap(), b"<close-session/>");
        }
        let mut wire = Vec::new();
        write_message(&mut wire, Framing::Chunked, b"abc").unwrap();
        assert_eq!(wire, b"\n#3\nabc\n##\n");
        let mut wire = Vec::new();
        write_message(&mut wire, Framing::Eom, b"abc").unwrap();
        assert_eq!(wire, b"abc]]>]]>");
        let err = write_message(&mut Vec::new(), Framing::Eom, b"a]]>]]>b").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = write_message(&mut Vec::new(), Framing::Chunked, b"").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn junos_hello_negotiates_eom() {
        let mut s = Script::new(&[HELLO.as_bytes()]);
        let mut reader = Reader::new();
        let hello = read(&mut reader, &mut s, Framing::Eom).unwrap();
        let hello = String::from_utf8(hello).unwrap();
        assert!(hello.starts_with("<!-- No zombies"));
        assert_eq!(negotiate(&hello), Framing::Eom);
        // What follows the hello's delimiter stays for the first reply.
        assert_eq!(reader.buffered(), b"\n");
    }

    #[test]
    fn hello_with_base_11_negotiates_chunked() {
        let hello = HELLO.replace(
            "<capability>urn:ietf:params:netconf:base:1.0</capability>",
            "<capability>urn:ietf:params:netconf:base:1.0</capability>\n    \
             <capability>\n urn:ietf:params:netconf:base:1.1\n</capability>",
        );
        let hello = hello.trim_end().trim_end_matches("]]>]]>");
        assert_eq!(negotiate(hello), Framing::Chunked);
        // Not readable as XML (declaration after the comments): the capability is still seen.
        let odd = "<!-- x -->\n<?xml version=\"1.0\"?><hello><capabilities>\
                   <capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>";
        assert!(roxmltree::Document::parse(odd).is_err());
        assert_eq!(negotiate(odd), Framing::Chunked);
        assert_eq!(negotiate(&odd.replace("1.1", "1.0")), Framing::Eom);
        // A capability that only starts like base:1.1 is not it.
        assert_eq!(negotiate(&hello.replace("base:1.1", "base:1.10")), Framing::Eom);
    }

    #[test]
    fn our_hello_and_rpcs() {
        let hello = client_hello();
        let doc = roxmltree::Document::parse(&hello).unwrap();
        let caps: Vec<&str> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "capability")
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(caps, [BASE_10, BASE_11]);
        assert_eq!(negotiate(&hello), Framing::Chunked);
        assert_eq!(
            rpc(8, "<get-bgp-summary-information/>"),
            "<rpc message-id=\"8\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">\
             <get-bgp-summary-information/></rpc>"
        );
    }
}
