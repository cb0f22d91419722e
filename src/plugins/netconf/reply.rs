//! Reading Junos `<rpc-reply>` messages: the checks every reply passes, then the VRRP and BGP
//! states the `vrrp_session` and `bgp_session` probes compare.
//!
//! It exists so that the knowledge of the reply shapes (tests/fixtures/netconf/README.md)
//! lives in one place. Elements are matched by LOCAL name only, since Junos puts its release
//! in the namespaces (`http://xml.juniper.net/junos/17.3R3/junos`); values are trimmed (Junos
//! wraps some in newlines) and states upper-cased. Nothing here panics on what a device
//! sends: a reply that cannot be used is a [`ReplyError`] with a message fit for a log line.

use std::fmt;
use std::net::IpAddr;

use roxmltree::{Document, Node};

/// The longest device text (an error message, a message-id) repeated in an error.
const MAX_SHOWN: usize = 200;

/// Why a reply cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Not XML at all, or cut short; the string is the parser's account.
    NotXml(String),
    /// Well-formed, but the root element (its local name here) is not `rpc-reply`.
    NotRpcReply(String),
    /// The reply answers another request (or does not say which): the session is out of
    /// step and must be dropped, see [`ReplyError::desync`].
    MessageId { found: Option<String>, expected: u64 },
    /// An `rpc-error` of severity `error` (or of no severity): its type, tag and message, trimmed.
    RpcError { error_type: String, tag: String, message: String },
}

impl ReplyError {
    /// Whether the reply shows that the session no longer pairs replies with requests.
    pub fn desync(&self) -> bool {
        matches!(self, ReplyError::MessageId { .. })
    }
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NotXml(why) => write!(f, "reply is not well-formed XML: {why}"),
            ReplyError::NotRpcReply(root) => write!(f, "reply is <{root}>, not <rpc-reply>"),
            ReplyError::MessageId { found: Some(id), expected } => {
                write!(f, "reply message-id {id} does not match request {expected}")
            }
            ReplyError::MessageId { found: None, expected } => {
                write!(f, "reply has no message-id (request {expected})")
            }
            ReplyError::RpcError { error_type, tag, message } => {
                f.write_str("rpc-error")?;
                let kind = [error_type.as_str(), tag.as_str()].into_iter().filter(|s| !s.is_empty());
                let kind: Vec<&str> = kind.collect();
                if !kind.is_empty() {
                    write!(f, " ({})", kind.join(" "))?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ReplyError {}

/// Parses one reply to the request `expected_id`: well-formed XML whose root is `rpc-reply`
/// with that `message-id`, and without an `rpc-error` of severity `error` anywhere (one with
/// no severity counts as an error too). Warnings are ignored: the data beside them is used.
///
/// A reply without a `message-id` is a [`ReplyError::MessageId`] too, unless it carries an
/// error: a device that cannot read a request cannot know its id, and its message matters more.
pub fn parse(text: &str, expected_id: u64) -> Result<Document<'_>, ReplyError> {
    // A message may start with the newline that followed the previous delimiter, and an XML
    // declaration must come first.
    let doc = Document::parse(text.trim_start()).map_err(|e| ReplyError::NotXml(e.to_string()))?;
    let root = doc.root_element();
    if !is(root, "rpc-reply") {
        return Err(ReplyError::NotRpcReply(shown(root.tag_name().name())));
    }
    let id = root.attribute("message-id").map(str::trim);
    if id.is_some_and(|id| id != expected_id.to_string()) {
        return Err(ReplyError::MessageId { found: id.map(shown), expected: expected_id });
    }
    let error = root.descendants().filter(|n| is(*n, "rpc-error")).find(|e| {
        let severity = child(*e, "error-severity").map(text_of);
        !severity.is_some_and(|s| s.eq_ignore_ascii_case("warning"))
    });
    if let Some(e) = error {
        let field = |name: &str| child(e, name).map(|n| shown(&text_of(n))).unwrap_or_default();
        return Err(ReplyError::RpcError {
            error_type: field("error-type"),
            tag: field("error-tag"),
            message: field("error-message"),
        });
    }
    match id {
        Some(_) => Ok(doc),
        None => Err(ReplyError::MessageId { found: None, expected: expected_id }),
    }
}

/// `(interface, group, state)` of every VRRP group in a `get-vrrp-information` reply.
///
/// The interface is the `interface` child of a `vrrp-interface` (MX), or for EX/QFX (ELS)
/// `vrrp-vlan/physical-interface` + "." + `vrrp-vlan/unit`; there one `vrrp-interface` holds
/// several records, each starting with its `vrrp-vlan`, followed by its `group` and
/// `vrrp-state`. A record lacking one of the three is left out. States are upper-cased
/// (MASTER, BACKUP, INIT, TRANSITION, IDLE, …).
pub fn vrrp_states(reply: &Document) -> Vec<(String, String, String)> {
    let mut states = Vec::new();
    for record in reply.descendants().filter(|n| is(*n, "vrrp-interface")) {
        let mut interface = String::new();
        let mut group: Option<String> = None;
        let mut state: Option<String> = None;
        for field in record.children().filter(Node::is_element) {
            match field.tag_name().name() {
                "interface" => {
                    push_vrrp(&mut states, &interface, &mut group, &mut state);
                    interface = text_of(field);
                }
                "vrrp-vlan" => {
                    push_vrrp(&mut states, &interface, &mut group, &mut state);
                    interface = child(field, "physical-interface").map(text_of).unwrap_or_default();
                    match child(field, "unit").map(text_of) {
                        Some(unit) if !unit.is_empty() => interface = format!("{interface}.{unit}"),
                        _ => {}
                    }
                }
                "group" => {
                    // A second group under the same interface is a record of its own.
                    if group.is_some() {
                        push_vrrp(&mut states, &interface, &mut group, &mut state);
                    }
                    group = Some(text_of(field));
                }
                "vrrp-state" => state = Some(text_of(field).to_ascii_uppercase()),
                _ => {}
            }
        }
        push_vrrp(&mut states, &interface, &mut group, &mut state);
    }
    states
}

/// Ends the record under way: kept if complete, and its group and state cleared.
fn push_vrrp(
    states: &mut Vec<(String, String, String)>,
    interface: &str,
    group: &mut Option<String>,
    state: &mut Option<String>,
) {
    if let (Some(g), Some(s)) = (group.take(), state.take()) {
        if !interface.is_empty() && !g.is_empty() && !s.is_empty() {
            states.push((interface.to_string(), g, s));
        }
    }
}

/// `(peer address, state)` of every `bgp-peer` of a `get-bgp-summary-information` or
/// `get-bgp-neighbor-information` reply: the address without its `+port` suffix, the state
/// upper-cased (ESTABLISHED, ACTIVE, CONNECT, IDLE, OPENSENT, OPENCONFIRM). The routing
/// instance is not kept: the request already names it (`<exact-instance>`).
pub fn bgp_states(reply: &Document) -> Vec<(String, String)> {
    let mut states = Vec::new();
    for peer in reply.descendants().filter(|n| is(*n, "bgp-peer")) {
        let address = child(peer, "peer-address").map(text_of).unwrap_or_default();
        let state = child(peer, "peer-state").map(text_of).unwrap_or_default();
        let address = without_port(&address);
        if !address.is_empty() && !state.is_empty() {
            states.push((address.to_string(), state.to_ascii_uppercase()));
        }
    }
    states
}

/// The state of VRRP group `vrid` on `interface`. Both are compared trimmed, the interface
/// ignoring ASCII case, the group as text or else as a number (`"20"`, `" 20 "`, `"020"`).
pub fn vrrp_state<'a>(states: &'a [(String, String, String)], interface: &str, vrid: &str) -> Option<&'a str> {
    let (interface, vrid) = (interface.trim(), vrid.trim());
    let same_group = |group: &str| {
        group == vrid || matches!((group.parse::<u64>(), vrid.parse::<u64>()), (Ok(a), Ok(b)) if a == b)
    };
    states
        .iter()
        .find(|(i, g, _)| i.trim().eq_ignore_ascii_case(interface) && same_group(g.trim()))
        .map(|(_, _, state)| state.as_str())
}

/// The state of the BGP peer `peer`, addresses compared without `+port` and trimmed, as IP
/// addresses when both are (`2001:DB8::1` is `2001:db8:0::1`), else as text ignoring case.
pub fn bgp_state<'a>(states: &'a [(String, String)], peer: &str) -> Option<&'a str> {
    let peer = without_port(peer);
    let peer_ip = peer.parse::<IpAddr>().ok();
    states
        .iter()
        .find(|(address, _)| {
            let address = without_port(address);
            match (peer_ip, address.parse::<IpAddr>()) {
                (Some(a), Ok(b)) => a == b,
                _ => address.eq_ignore_ascii_case(peer),
            }
        })
        .map(|(_, state)| state.as_str())
}

/// `192.168.8.1+179` → `192.168.8.1`, trimmed.
fn without_port(address: &str) -> &str {
    address.split('+').next().unwrap_or_default().trim()
}

fn is(node: Node, local_name: &str) -> bool {
    node.is_element() && node.tag_name().name() == local_name
}

/// The first child element of `node` with that local name.
fn child<'a, 'input>(node: Node<'a, 'input>, local_name: &str) -> Option<Node<'a, 'input>> {
    node.children().find(|n| is(*n, local_name))
}

/// All the text inside `node`, trimmed.
fn text_of(node: Node) -> String {
    let text: String = node.descendants().filter(Node::is_text).filter_map(|n| n.text()).collect();
    text.trim().to_string()
}

/// Device text fit for a log line: whitespace runs made one space, at most `MAX_SHOWN` chars.
fn shown(text: &str) -> String {
    let mut out = String::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MX: &str = include_str!("../../../tests/fixtures/netconf/vrrp-mx-primary.xml");
    const ELS: &str = include_str!("../../../tests/fixtures/netconf/vrrp-qfx-els.xml");
    const BGP: &str = include_str!("../../../tests/fixtures/netconf/bgp-summary-primary.xml");
    const ERROR: &str = include_str!("../../../tests/fixtures/netconf/rpc-error.xml");
    const HELLO: &str = include_str!("../../../tests/fixtures/netconf/hello.xml");

    /// A fixture as the framing reader returns it: without the `]]>]]>` that ends it.
    fn message(fixture: &str) -> &str {
        fixture.trim_end().strip_suffix("]]>]]>").expect("fixture ends with ]]>]]>")
    }

    fn triples(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        items.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
    }

    #[test]
    fn mx_vrrp_layout() {
        let doc = parse(message(MX), 2).unwrap();
        let states = vrrp_states(&doc);
        // Group 41's state is `\nmaster\n` in the reply.
        let all_master = [("ae0.1025", "20", "MASTER"), ("ae0.1025", "41", "MASTER"), ("ae0.1025", "42", "MASTER")];
        assert_eq!(states, triples(&all_master));
        assert_eq!(vrrp_state(&states, "ae0.1025", "20"), Some("MASTER"));
        assert_eq!(vrrp_state(&states, " ae0.1025 ", " 41 "), Some("MASTER"));
        assert_eq!(vrrp_state(&states, "ae0.1025", "042"), Some("MASTER"));
        assert_eq!(vrrp_state(&states, "ae0.1025", "43"), None);
        assert_eq!(vrrp_state(&states, "ae0.1026", "20"), None);
        assert_eq!(vrrp_state(&states, "ae0.1025", ""), None);
        // The secondary, as the recorded runs saw it.
        let backup = message(MX).replace("master", "backup");
        let states = vrrp_states(&parse(&backup, 2).unwrap());
        assert_eq!(vrrp_state(&states, "ae0.1025", "20"), Some("BACKUP"));
    }

    #[test]
    fn els_vrrp_layout() {
        let doc = parse(message(ELS), 3).unwrap();
        let states = vrrp_states(&doc);
        assert_eq!(states, triples(&[("irb.1025", "20", "BACKUP"), ("irb.1026", "21", "MASTER")]));
        assert_eq!(vrrp_state(&states, "irb.1026", "21"), Some("MASTER"));
        assert_eq!(vrrp_state(&states, "irb.1025", "21"), None);
        // Physical ports, as in the README's example.
        let xe = message(ELS)
            .replace("<physical-interface>irb<", "<physical-interface>xe-0/0/0<")
            .replace("<unit>1025</unit>", "<unit>1</unit>");
        let states = vrrp_states(&parse(&xe, 3).unwrap());
        assert_eq!(states, triples(&[("xe-0/0/0.1", "20", "BACKUP"), ("xe-0/0/0.1026", "21", "MASTER")]));
        assert_eq!(vrrp_state(&states, "xe-0/0/0.1", "20"), Some("BACKUP"));
    }

    #[test]
    fn incomplete_vrrp_records_are_left_out() {
        let reply = r#"<rpc-reply message-id="1"><vrrp-information>
            <vrrp-interface><interface>ae1.10</interface><group>5</group></vrrp-interface>
            <vrrp-interface><group>6</group><vrrp-state>master</vrrp-state></vrrp-interface>
            <vrrp-interface><interface>ae1.11</interface><group>7</group><vrrp-state>init</vrrp-state>
              <group>8</group><vrrp-state>idle</vrrp-state></vrrp-interface>
            </vrrp-information></rpc-reply>"#;
        let states = vrrp_states(&parse(reply, 1).unwrap());
        assert_eq!(states, triples(&[("ae1.11", "7", "INIT"), ("ae1.11", "8", "IDLE")]));
    }

    #[test]
    fn bgp_peers_with_and_without_port() {
        let doc = parse(message(BGP), 4).unwrap();
        let states = bgp_states(&doc);
        assert_eq!(states, [("192.168.8.1".to_string(), "ESTABLISHED".to_string())]);
        assert_eq!(bgp_state(&states, "192.168.8.1"), Some("ESTABLISHED"));
        assert_eq!(bgp_state(&states, " 192.168.8.1+179 "), Some("ESTABLISHED"));
        assert_eq!(bgp_state(&states, "192.168.8.5"), None);
        // The neighbor form writes the port; a peer going Active.
        let neighbor = message(BGP)
            .replace("<peer-address>192.168.8.1</peer-address>", "<peer-address>\n192.168.8.1+179\n</peer-address>")
            .replace(">Established<", ">Active<");
        let states = bgp_states(&parse(&neighbor, 4).unwrap());
        assert_eq!(states, [("192.168.8.1".to_string(), "ACTIVE".to_string())]);
        assert_eq!(bgp_state(&states, "192.168.8.1+179"), Some("ACTIVE"));
        // IPv6 peers compare as addresses.
        let v6 = message(BGP).replace("192.168.8.1", "2001:DB8::1+179");
        let states = bgp_states(&parse(&v6, 4).unwrap());
        assert_eq!(bgp_state(&states, "2001:db8:0::1"), Some("ESTABLISHED"));
    }

    #[test]
    fn rpc_error_is_an_error() {
        let err = parse(message(ERROR), 5).unwrap_err();
        assert_eq!(
            err,
            ReplyError::RpcError {
                error_type: "protocol".into(),
                tag: "operation-failed".into(),
                message: "syntax error, expecting <exact-instance>".into(),
            }
        );
        assert_eq!(err.to_string(), "rpc-error (protocol operation-failed): syntax error, expecting <exact-instance>");
        assert!(!err.desync());
        // Without a severity it still counts; without type, tag or message the line stays short.
        let bare = r#"<rpc-reply message-id="6"><rpc-error/></rpc-reply>"#;
        assert_eq!(parse(bare, 6).unwrap_err().to_string(), "rpc-error");
    }

    #[test]
    fn warnings_are_ignored_and_data_used() {
        let warning = "<rpc-error>\n<error-type>application</error-type>\n<error-tag>warning</error-tag>\n\
                       <error-severity>warning</error-severity>\n<error-message>\nstatement deprecated\n\
                       </error-message>\n</rpc-error>\n";
        let reply = message(BGP).replacen("<bgp-information", &format!("{warning}<bgp-information"), 1);
        let doc = parse(&reply, 4).unwrap();
        assert_eq!(bgp_state(&bgp_states(&doc), "192.168.8.1"), Some("ESTABLISHED"));
        // An error beside the warning wins.
        let error = "<rpc-error><error-severity>error</error-severity></rpc-error>";
        let both = reply.replacen("</rpc-reply>", &format!("{error}</rpc-reply>"), 1);
        assert!(matches!(parse(&both, 4), Err(ReplyError::RpcError { .. })));
    }

    #[test]
    fn truncated_reply_is_not_well_formed() {
        let text = message(MX);
        let end = text.find("</rpc-reply>").unwrap() + "</rpc-reply>".len();
        for cut in 0..end {
            match parse(&text[..cut], 2) {
                Err(ReplyError::NotXml(_)) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        let err = parse(&text[..text.len() / 2], 2).unwrap_err();
        assert!(err.to_string().starts_with("reply is not well-formed XML: "), "{err}");
    }

    #[test]
    fn message_id_must_match() {
        let err = parse(message(MX), 8).unwrap_err();
        assert_eq!(err, ReplyError::MessageId { found: Some("2".into()), expected: 8 });
        assert_eq!(err.to_string(), "reply message-id 2 does not match request 8");
        assert!(err.desync());
        let none = message(MX).replacen(r#" message-id="2""#, "", 1);
        let err = parse(&none, 2).unwrap_err();
        assert_eq!(err.to_string(), "reply has no message-id (request 2)");
        assert!(err.desync());
        // The id is checked before any rpc-error: a stale error must not be taken for ours.
        assert!(parse(message(ERROR), 6).unwrap_err().desync());
        // An error without an id (a request the device could not read) is reported as such.
        let unread = message(ERROR).replacen(r#" message-id="5""#, "", 1);
        assert!(matches!(parse(&unread, 6), Err(ReplyError::RpcError { .. })));
    }

    #[test]
    fn other_documents_and_prefixes() {
        let err = parse(message(HELLO), 1).unwrap_err();
        assert_eq!(err.to_string(), "reply is <hello>, not <rpc-reply>");
        let prefixed = "\n<?xml version=\"1.0\"?>\n<nc:rpc-reply xmlns:nc=\"urn:ietf:params:xml:ns:netconf:base:1.0\" \
                        message-id=\"12\"><nc:ok/></nc:rpc-reply>\n";
        assert!(parse(prefixed, 12).is_ok());
        assert!(matches!(parse("", 1), Err(ReplyError::NotXml(_))));
        // A DTD is refused (no entity expansion from a device).
        let dtd = "<!DOCTYPE rpc-reply [<!ENTITY a \"aaaa\">]><rpc-reply message-id=\"1\">&a;</rpc-reply>";
        assert!(matches!(parse(dtd, 1), Err(ReplyError::NotXml(_))));
    }

    #[test]
    fn device_text_is_shortened() {
        assert_eq!(shown(" a\n b  c "), "a b c");
        let long = "x".repeat(300);
        assert_eq!(shown(&long).chars().count(), MAX_SHOWN + 1);
    }
}
