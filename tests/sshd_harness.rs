//! Proves the NETCONF test harness (tests/support/sshd.rs and netconf_agent.py) with the ssh2
//! crate as the client, independently of the plugin under test: password login to the real
//! sshd, the Junos-like hello and replies from the state file (changed under an open session),
//! BGP per instance, the ELS layout, every fault, the events log, stop/restart/kill_sessions,
//! fixed privileged ports, and that no process outlives the harness.

mod support;

use ssh2::{Channel, Session};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::sshd::{BgpPeer, Faults, Layout, Sshd, VrrpGroup, RECORDED_INSTANCE};
use support::wait_for;

const USER: &str = "esi";
const PASSWORD: &str = "Pw of the job #1";
const DELIM: &str = "]]>]]>";
const CLIENT_HELLO: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
    <hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities>\
    <capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>";
/// Long enough for any reply here; the delay test lowers it on purpose.
const TIMEOUT_MS: u32 = 10_000;

fn login(sshd: &Sshd, user: &str, password: &str) -> Result<Session, ssh2::Error> {
    let tcp = TcpStream::connect(sshd.socket_addr()).expect("connect to sshd");
    let mut session = Session::new().expect("ssh2 session");
    session.set_timeout(TIMEOUT_MS);
    session.set_tcp_stream(tcp);
    session.handshake().expect("SSH handshake");
    session.userauth_password(user, password)?;
    Ok(session)
}

/// One NETCONF session over the `netconf` subsystem.
struct Client {
    session: Session,
    channel: Channel,
    pending: Vec<u8>,
    hello: String,
}

impl Client {
    /// Logs in as `esi`, opens the subsystem, reads the server's hello and sends ours.
    fn open(sshd: &Sshd) -> Client {
        Client::open_as(sshd, USER, PASSWORD)
    }

    fn open_as(sshd: &Sshd, user: &str, password: &str) -> Client {
        let session = login(sshd, user, password).unwrap_or_else(|e| panic!("login: {e}\n{}", sshd.log_text()));
        let mut channel = session.channel_session().expect("channel");
        channel.subsystem("netconf").expect("netconf subsystem");
        let mut client = Client { session, channel, pending: Vec::new(), hello: String::new() };
        client.hello = client.read_frame().expect("server hello");
        client.send(CLIENT_HELLO);
        client
    }

    fn send(&mut self, text: &str) {
        self.try_send(text).expect("write to channel");
    }

    fn try_send(&mut self, text: &str) -> std::io::Result<()> {
        self.channel.write_all(text.as_bytes())?;
        self.channel.flush()
    }

    /// Whether an RPC still gets an answer (false when the write or the read fails).
    fn answers(&mut self, id: u32) -> bool {
        let rpc = format!("<rpc message-id=\"{id}\">{VRRP}</rpc>{DELIM}");
        self.try_send(&rpc).is_ok() && self.read_frame().is_ok()
    }

    /// The next `]]>]]>`-framed message (without the delimiter). At EOF: `UnexpectedEof`
    /// whose text is what came before it.
    fn read_frame(&mut self) -> std::io::Result<String> {
        let mut buf = [0u8; 16384];
        loop {
            if let Some(at) = find(&self.pending, DELIM.as_bytes()) {
                let frame = String::from_utf8_lossy(&self.pending[..at]).into_owned();
                self.pending.drain(..at + DELIM.len());
                return Ok(frame);
            }
            assert!(self.pending.len() < 1 << 20, "no delimiter in 1 MiB");
            let n = self.channel.read(&mut buf)?;
            if n == 0 {
                let partial = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
                return Err(std::io::Error::new(ErrorKind::UnexpectedEof, partial));
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    fn send_rpc(&mut self, id: u32, body: &str) {
        let ns = "urn:ietf:params:xml:ns:netconf:base:1.0";
        self.send(&format!("<rpc message-id=\"{id}\" xmlns=\"{ns}\">{body}</rpc>{DELIM}"));
    }

    fn rpc(&mut self, id: u32, body: &str) -> String {
        self.send_rpc(id, body);
        self.read_frame().unwrap_or_else(|e| panic!("reply to rpc {id}: {e}"))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Trimmed texts of every element named `name` (local name), in document order.
fn texts(xml: &str, name: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml.trim()).unwrap_or_else(|e| panic!("reply is not XML ({e}): {xml}"));
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == name)
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

fn message_id(xml: &str) -> String {
    let doc = roxmltree::Document::parse(xml.trim()).expect("reply is XML");
    assert_eq!(doc.root_element().tag_name().name(), "rpc-reply", "{xml}");
    doc.root_element().attribute("message-id").unwrap_or("").to_string()
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const VRRP: &str = "<get-vrrp-information/>";

fn bgp(instance: Option<&str>) -> String {
    match instance {
        Some(i) => {
            format!("<get-bgp-summary-information><exact-instance>{i}</exact-instance></get-bgp-summary-information>")
        }
        None => "<get-bgp-summary-information/>".to_string(),
    }
}

/// Whether any process's command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push((pid, text));
        }
    }
    found
}

#[test]
fn password_login_gets_the_hello_and_vrrp_state_that_follows_the_state_file() {
    let sshd = Sshd::start("127.0.3.1", &[(USER, PASSWORD), ("other", "second-pw")]);
    let mut client = Client::open(&sshd);
    // Junos: comments first, base:1.0 only (no 1.1, so `]]>]]>` framing), a session id.
    assert!(client.hello.trim_start().starts_with("<!--"), "{}", client.hello);
    let caps = texts(&client.hello, "capability");
    assert!(caps.iter().any(|c| c == "urn:ietf:params:netconf:base:1.0"), "{caps:?}");
    assert!(!caps.iter().any(|c| c.contains("base:1.1")), "{caps:?}");
    assert!(!texts(&client.hello, "session-id")[0].is_empty());

    // The host key is the harness's own.
    let (key, _) = client.session.host_key().expect("host key");
    let line = sshd.host_key_line();
    assert_eq!(line.split(' ').nth(1), Some(base64(key).as_str()), "{line}");
    assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
    assert!(sshd.fingerprint().starts_with("SHA256:"), "{}", sshd.fingerprint());

    let reply = client.rpc(7, VRRP);
    assert_eq!(message_id(&reply), "7");
    assert_eq!(texts(&reply, "vrrp-interface").len(), 3, "{reply}");
    assert_eq!(texts(&reply, "group"), ["20", "41", "42"]);
    assert_eq!(texts(&reply, "vrrp-state"), ["master", "master", "master"]);
    assert_eq!(texts(&reply, "interface"), ["ae0.1025", "ae0.1025", "ae0.1025"]);
    // Some values wrapped in newlines, as Junos writes them.
    assert!(reply.contains("<vrrp-state>\nmaster\n</vrrp-state>"), "{reply}");
    assert!(reply.contains("xmlns=\"http://xml.juniper.net/junos/17.3R3/junos-vrrp\""), "{reply}");

    // The same session sees a rewritten state at its next RPC.
    sshd.set_vrrp_state("ae0.1025", 41, "backup");
    let reply = client.rpc(8, VRRP);
    assert_eq!(message_id(&reply), "8");
    assert_eq!(texts(&reply, "vrrp-state"), ["master", "backup", "master"]);
    sshd.set_state(&Sshd::junos_secondary());
    assert_eq!(texts(&client.rpc(9, VRRP), "vrrp-state"), ["backup", "backup", "backup"]);
    sshd.set_vrrp(&[VrrpGroup::new("ae1.7", 3, "init")]);
    let reply = client.rpc(10, VRRP);
    assert_eq!((texts(&reply, "interface"), texts(&reply, "vrrp-state")), (vec!["ae1.7".into()], vec!["init".into()]));

    // Other attributes of <rpc> come back too; close-session answers <ok/> and ends the session.
    client.send(&format!("<rpc message-id=\"11\" foo=\"bar\"><close-session/></rpc>{DELIM}"));
    let reply = client.read_frame().expect("close-session reply");
    assert!(reply.contains("message-id=\"11\"") && reply.contains("foo=\"bar\""), "{reply}");
    assert_eq!(texts(&reply, "ok").len(), 1, "{reply}");
    let end = client.read_frame().expect_err("EOF after close-session");
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");

    // The second user logs in too.
    assert!(login(&sshd, "other", "second-pw").is_ok(), "{}", sshd.log_text());
    assert!(sshd.log_text().contains("Accepted password for esi"), "{}", sshd.log_text());
}

#[test]
fn a_wrong_password_or_unknown_user_is_refused() {
    let sshd = Sshd::start("127.0.3.2", &[(USER, PASSWORD)]);
    let refused = login(&sshd, USER, "not the password");
    assert!(refused.is_err(), "a wrong password was accepted");
    assert!(login(&sshd, "nobody-here", PASSWORD).is_err(), "an unknown user was accepted");
    assert!(login(&sshd, "root", PASSWORD).is_err(), "root was accepted");
    wait_for("the failed login in sshd's log", Duration::from_secs(5), || {
        sshd.log_text().contains("Failed password for esi").then_some(())
    });
    // The right one still works, and nothing reached the agent before.
    assert_eq!(sshd.sessions(), 0);
    assert!(login(&sshd, USER, PASSWORD).is_ok(), "{}", sshd.log_text());
}

#[test]
fn bgp_summary_lists_the_peers_of_the_exact_instance() {
    let sshd = Sshd::start("127.0.3.3", &[(USER, PASSWORD)]);
    sshd.set_bgp("vrf_other", &[BgpPeer::new("10.9.9.1", "Active"), BgpPeer::new("10.9.9.2", "Established")]);
    let mut client = Client::open(&sshd);

    let reply = client.rpc(1, &bgp(Some(RECORDED_INSTANCE)));
    assert_eq!(message_id(&reply), "1");
    assert_eq!(texts(&reply, "peer-address"), ["192.168.8.1"], "{reply}");
    assert_eq!(texts(&reply, "peer-state"), ["Established"]);
    assert_eq!(texts(&reply, "name"), [format!("{RECORDED_INSTANCE}.inet.0")]);
    assert_eq!(texts(&reply, "peer-count"), ["1"]);

    let reply = client.rpc(2, &bgp(Some("vrf_other")));
    assert_eq!(texts(&reply, "peer-address"), ["10.9.9.1", "10.9.9.2"], "{reply}");
    assert_eq!(texts(&reply, "peer-state"), ["Active", "Established"]);
    assert_eq!(texts(&reply, "down-peer-count"), ["1"]);

    let reply = client.rpc(3, &bgp(None));
    let mut all = texts(&reply, "peer-address");
    all.sort();
    assert_eq!(all, ["10.9.9.1", "10.9.9.2", "192.168.8.1"], "{reply}");

    assert!(texts(&client.rpc(4, &bgp(Some("vrf_none"))), "peer-address").is_empty());

    sshd.set_peer_state(RECORDED_INSTANCE, "192.168.8.1", "Active");
    let reply = client.rpc(5, &bgp(Some(RECORDED_INSTANCE)));
    assert_eq!(texts(&reply, "peer-state"), ["Active"], "{reply}");
    assert_eq!(texts(&reply, "down-peer-count"), ["1"]);
}

#[test]
fn els_layout_writes_vrrp_vlan_records() {
    let sshd = Sshd::start("127.0.3.4", &[(USER, PASSWORD)]);
    sshd.set_layout(Layout::Els);
    sshd.set_vrrp(&[VrrpGroup::new("xe-0/0/0.1", 1, "master"), VrrpGroup::new("irb.1025", 20, "backup")]);
    let mut client = Client::open(&sshd);
    let reply = client.rpc(3, VRRP);
    assert!(reply.contains("<vrrp-vlan><physical-interface>xe-0/0/0</physical-interface><unit>1</unit></vrrp-vlan>"));
    assert_eq!(texts(&reply, "vrrp-interface").len(), 1, "one vrrp-interface holds the records: {reply}");
    assert_eq!(texts(&reply, "physical-interface"), ["xe-0/0/0", "irb"]);
    assert_eq!(texts(&reply, "unit"), ["1", "1025"]);
    assert_eq!(texts(&reply, "group"), ["1", "20"]);
    assert_eq!(texts(&reply, "vrrp-state"), ["master", "backup"]);
    assert!(texts(&reply, "interface").is_empty(), "{reply}");
    assert!(reply.contains("junos/18.1R3/junos"), "{reply}");
}

#[test]
fn fault_rpc_error_answers_errors_until_cleared() {
    let sshd = Sshd::start("127.0.3.5", &[(USER, PASSWORD)]);
    let mut client = Client::open(&sshd);
    sshd.set_faults(Faults { rpc_error: true, ..Faults::default() });
    for (id, body) in [(1, VRRP.to_string()), (2, bgp(Some(RECORDED_INSTANCE)))] {
        let reply = client.rpc(id, &body);
        assert_eq!(message_id(&reply), id.to_string());
        assert_eq!(texts(&reply, "error-severity"), ["error"], "{reply}");
        assert!(texts(&reply, "vrrp-state").is_empty() && texts(&reply, "peer-state").is_empty(), "{reply}");
    }
    sshd.set_faults(Faults::default());
    assert_eq!(texts(&client.rpc(3, VRRP), "vrrp-state").len(), 3);

    // Unknown RPCs and input that is not XML get an rpc-error; the session goes on.
    let reply = client.rpc(4, "<get-chassis-inventory/>");
    assert_eq!(message_id(&reply), "4");
    assert_eq!(texts(&reply, "bad-element"), ["get-chassis-inventory"], "{reply}");
    client.send(&format!("this is <not xml{DELIM}"));
    let reply = client.read_frame().expect("reply to garbage");
    assert_eq!(texts(&reply, "error-tag"), ["malformed-message"], "{reply}");
    assert_eq!(texts(&client.rpc(5, VRRP), "vrrp-state").len(), 3);
}

#[test]
fn fault_delay_answers_after_a_read_timeout() {
    let sshd = Sshd::start("127.0.3.6", &[(USER, PASSWORD)]);
    let mut client = Client::open(&sshd);
    let delay = Duration::from_millis(1500);
    sshd.set_faults(Faults { delay, ..Faults::default() });
    let sent = Instant::now();
    client.session.set_timeout(300);
    client.send_rpc(1, VRRP);
    let early = client.read_frame().expect_err("no reply before the delay");
    assert_eq!(early.kind(), ErrorKind::TimedOut, "{early}");
    assert!(sent.elapsed() < delay, "the read timeout fired only after {:?}", sent.elapsed());
    // The reply still comes, late, on the same session.
    client.session.set_timeout(TIMEOUT_MS);
    let reply = client.read_frame().expect("the late reply");
    assert!(sent.elapsed() >= delay, "replied after {:?}", sent.elapsed());
    assert_eq!(message_id(&reply), "1");
    assert_eq!(texts(&reply, "vrrp-state"), ["master", "master", "master"]);
}

#[test]
fn fault_truncate_writes_half_a_reply_and_ends_the_session() {
    let sshd = Sshd::start("127.0.3.7", &[(USER, PASSWORD)]);
    let mut client = Client::open(&sshd);
    sshd.set_faults(Faults { truncate: true, ..Faults::default() });
    client.send_rpc(1, VRRP);
    let cut = client.read_frame().expect_err("a truncated reply");
    assert_eq!(cut.kind(), ErrorKind::UnexpectedEof, "{cut}");
    let partial = cut.to_string();
    assert!(partial.contains("<rpc-reply") && !partial.contains("</rpc-reply>"), "{partial:?}");
    assert!(roxmltree::Document::parse(&partial).is_err());
    assert!(sshd.events().contains(&"fault truncate".to_string()), "{:?}", sshd.events());
}

#[test]
fn fault_drop_ends_the_session_without_an_answer() {
    let sshd = Sshd::start("127.0.3.8", &[(USER, PASSWORD)]);
    let mut client = Client::open(&sshd);
    sshd.set_faults(Faults { drop: true, ..Faults::default() });
    let sent = Instant::now();
    client.send_rpc(1, VRRP);
    let end = client.read_frame().expect_err("no answer");
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    assert_eq!(end.to_string().trim(), "", "nothing before EOF");
    assert!(sent.elapsed() < Duration::from_secs(5));
    assert_eq!(sshd.rpc_count("get-vrrp-information"), 1);
    assert!(sshd.events().contains(&"fault drop".to_string()), "{:?}", sshd.events());
}

#[test]
fn fault_garbage_answers_a_body_that_is_not_xml() {
    let sshd = Sshd::start("127.0.3.9", &[(USER, PASSWORD)]);
    let mut client = Client::open(&sshd);
    sshd.set_faults(Faults { garbage: true, ..Faults::default() });
    client.send_rpc(1, VRRP);
    let reply = client.read_frame().expect("a framed reply");
    assert!(!reply.trim().is_empty());
    assert!(roxmltree::Document::parse(reply.trim()).is_err(), "garbage parsed as XML: {reply:?}");
    sshd.set_faults(Faults::default());
    assert_eq!(message_id(&client.rpc(2, VRRP)), "2");
}

#[test]
fn the_events_log_counts_sessions_and_rpcs() {
    let sshd = Sshd::start("127.0.3.10", &[(USER, PASSWORD)]);
    let mut first = Client::open(&sshd);
    let mut second = Client::open(&sshd);
    first.rpc(1, VRRP);
    second.rpc(1, VRRP);
    second.rpc(2, &bgp(Some(RECORDED_INSTANCE)));
    first.rpc(2, VRRP);
    first.rpc(3, "<close-session/>");
    assert_eq!(sshd.sessions(), 2);
    assert_eq!(sshd.rpc_count("get-vrrp-information"), 3);
    assert_eq!(sshd.rpc_count("get-bgp-summary-information"), 1);
    assert_eq!(sshd.rpc_count("close-session"), 1);
    let events = sshd.events();
    assert_eq!(events.iter().filter(|e| *e == "hello").count(), 2, "{events:?}");
    assert!(events.contains(&"close".to_string()), "{events:?}");
    assert!(!events.iter().any(|e| e.starts_with("error")), "{events:?}");
    // Each session line names its agent's pid; the two differ.
    let pids: Vec<&String> = events.iter().filter(|e| e.starts_with("session ")).collect();
    assert_ne!(pids[0], pids[1]);
}

#[test]
fn kill_sessions_stop_and_restart() {
    let mut sshd = Sshd::start("127.0.3.11", &[(USER, PASSWORD)]);
    let key = sshd.host_key_line();
    let port = sshd.port();
    let mut client = Client::open(&sshd);
    client.rpc(1, VRRP);
    let before = sshd.pids();
    assert!(before.len() >= 3, "sshd, its connection and the agent: {before:?}");

    sshd.kill_sessions();
    assert_eq!(sshd.pids(), [sshd.pid().unwrap()]);
    assert!(!client.answers(2), "the killed session still answers");
    let mut again = Client::open(&sshd);
    assert_eq!(message_id(&again.rpc(1, VRRP)), "1");

    sshd.stop();
    assert!(!sshd.is_running());
    assert!(TcpStream::connect(sshd.socket_addr()).is_err(), "a stopped sshd accepts connections");
    assert!(!again.answers(2), "a session of the stopped sshd still answers");

    sshd.restart();
    assert_eq!((sshd.port(), sshd.host_key_line()), (port, key));
    sshd.set_vrrp_state("ae0.1025", 20, "backup");
    let mut after = Client::open(&sshd);
    assert_eq!(texts(&after.rpc(1, VRRP), "vrrp-state"), ["backup", "master", "master"]);
    assert_eq!(sshd.sessions(), 3);
}

#[test]
fn two_devices_share_the_privileged_port_830() {
    let primary = Sshd::start_on("127.3.5.185", 830, &[(USER, PASSWORD)]);
    let secondary = Sshd::start_on("127.3.5.184", 830, &[(USER, "the other pw")]);
    secondary.set_state(&Sshd::junos_secondary());
    assert_ne!(primary.host_key_line(), secondary.host_key_line());
    let mut a = Client::open(&primary);
    assert_eq!(texts(&a.rpc(1, VRRP), "vrrp-state"), ["master", "master", "master"]);
    assert!(login(&secondary, USER, PASSWORD).is_err(), "the primary's password opened the secondary");
    let mut b = Client::open_as(&secondary, USER, "the other pw");
    assert_eq!(texts(&b.rpc(1, VRRP), "vrrp-state"), ["backup", "backup", "backup"]);
    assert_eq!(texts(&b.rpc(2, &bgp(Some(RECORDED_INSTANCE))), "peer-address"), ["192.168.8.5"]);
}

#[test]
fn drop_leaves_no_process_behind() {
    let sshd = Sshd::start("127.0.3.12", &[(USER, PASSWORD)]);
    let dir = sshd.dir().display().to_string();
    let mut client = Client::open(&sshd);
    client.rpc(1, VRRP);
    let pids = sshd.pids();
    assert!(pids.len() >= 3, "sshd, its connection and the agent: {pids:?}");
    let mentioning = processes_mentioning(&dir);
    assert!(mentioning.iter().any(|(_, c)| c.contains("netconf_agent.py")), "{mentioning:?}");
    assert!(mentioning.iter().any(|(_, c)| c.contains("sshd")), "{mentioning:?}");

    drop(sshd);
    assert!(processes_mentioning(&dir).is_empty(), "{:?}", processes_mentioning(&dir));
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next().unwrap_or('X')).unwrap_or('X');
        assert!(matches!(state, 'Z' | 'X'), "pid {pid} of the dropped sshd is alive: {stat}");
    }
    assert!(!std::path::Path::new(&dir).exists(), "the temp dir {dir} is still there");
    assert!(!client.answers(2), "the session outlived the sshd");
}
