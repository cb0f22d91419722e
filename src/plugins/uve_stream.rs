//! The Contrail analytics UVE stream (`GET /analytics/uve-stream`, server-sent events), followed for
//! the VMIs' `UveVMInterfaceAgent.l2_active`.
//!
//! It exists so that a change of a VMI's layer 2 state can be learnt when analytics publishes it,
//! over one long-lived connection, instead of at the next poll of that VMI. The format is the one
//! opserver writes (contrail-analytics `contrail-opserver/opserver.py` `_serve_streams`,
//! `partition_handler.py` `sse_pack`, `UveStreamer`, `UveStreamPart`):
//!
//! * `200`, `Content-Type: text/event-stream`, `Cache-Control: no-cache`, a body without end
//!   (chunked); the route exists only where the alarm generator is enabled (else `404`).
//! * `event: init` / `data: null` first, then one `event: update` per UVE struct: first the
//!   current state of every UVE of the tables asked for (`tablefilt`), then each change as it is
//!   published. `data:` is one JSON line `{"key": "ObjectVMITable:<fq_name>", "type":
//!   "UveVMInterfaceAgent", "value": {…the struct, as `?flat` shows it…}}`; `"value": null` when that
//!   struct went away, `{"key": …, "type": null}` (no value) when the whole UVE did (also when an
//!   alarm generator partition moves: its UVEs are then sent again).
//! * `event: stop` / `data: null` when the server ends the stream. No keepalives: a stream can be
//!   silent for hours.
//!
//! Nothing here panics on what the network sends: bad JSON, unknown events and oversized events
//! are skipped; every failure becomes a [`StreamEvent::Disconnected`] reason free of credentials.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use serde_json::Value;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport};

use super::contrail::redact_url;

/// The stream of the VMI table (opserver maps `virtual-machine-interface` to `ObjectVMITable`).
const STREAM_PATH: &str = "/analytics/uve-stream?tablefilt=virtual-machine-interface";
/// The table part of a VMI UVE's key (`ObjectVMITable:<fq_name>`).
const VMI_TABLE: &str = "ObjectVMITable";
/// The struct carrying `l2_active`.
const AGENT_STRUCT: &str = "UveVMInterfaceAgent";
/// Longest wait between two looks at `stop` while waiting for the server.
const STOP_CHECK: Duration = Duration::from_secs(1);
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff even if it delivered nothing.
const HEALTHY: Duration = Duration::from_secs(30);
/// Largest event (its `data:` lines together, or one line) kept; larger ones are skipped. A VMI's
/// struct is a few KiB.
const MAX_EVENT: usize = 8 * 1024 * 1024;
const STOPPED: &str = "stopped";

/// One change of a VMI's UveVMInterfaceAgent.l2_active seen on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Change {
    pub fq_name: String,
    /// `None`: the UVE or its struct went away (or the struct carries no boolean `l2_active`).
    pub l2_active: Option<bool>,
}

/// What the follower tells its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The server answered with an event stream.
    Connected,
    Change(L2Change),
    /// One attempt ended (refused, failed, broken, ended, or `stopped`); why, without secrets.
    Disconnected(String),
}

/// Follows `<analytics_url>/analytics/uve-stream?tablefilt=virtual-machine-interface` until `stop`
/// fires or is closed, calling `on_event` for every event; reconnects with backoff (start 0.5 s,
/// doubling to 30 s max, reset after a connection that delivered at least one event or lasted 30 s);
/// returns when stopped.
///
/// Every attempt ends with one `Disconnected`, a successful one is opened by `Connected`. `Change`
/// is called only when a VMI's `l2_active` differs from the last one seen (the first sighting of a
/// VMI counts); that memory survives reconnections, so the state the server sends again on each
/// connection reports only what changed meanwhile. `timeout` bounds connecting and the wait for
/// the answer's head, not the stream. `stop` is looked at least every second while waiting for the
/// server; while connecting (DNS, TCP, TLS) only after `timeout` at worst.
pub fn follow(analytics_url: &str, timeout: Duration, stop: &Receiver<()>, on_event: &mut dyn FnMut(StreamEvent)) {
    let stop = Stop { rx: stop.clone(), fired: Arc::new(AtomicBool::new(false)) };
    let url = format!("{}{STREAM_PATH}", analytics_url.trim_end_matches('/'));
    let agent = stream_agent(timeout, stop.clone());
    let mut last = HashMap::new();
    let mut backoff = BACKOFF_START;
    while !stop.fired() {
        let started = Instant::now();
        let attempt = Attempt { agent: &agent, url: &url, base: analytics_url, timeout, stop: &stop };
        let (delivered, why) = attempt.run(&mut last, on_event);
        on_event(StreamEvent::Disconnected(why));
        if delivered || started.elapsed() >= HEALTHY {
            backoff = BACKOFF_START;
        }
        if stop.wait(backoff) {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// `stop` as both the follower and the connection look at it: the first to see it fire (a message
/// taken, or every sender gone) latches it for the other.
#[derive(Debug, Clone)]
struct Stop {
    rx: Receiver<()>,
    fired: Arc<AtomicBool>,
}

impl Stop {
    fn fired(&self) -> bool {
        if self.fired.load(Ordering::SeqCst) {
            return true;
        }
        let fired = !matches!(self.rx.try_recv(), Err(TryRecvError::Empty));
        if fired {
            self.fired.store(true, Ordering::SeqCst);
        }
        fired
    }

    /// Waits `d`; true as soon as stop fires.
    fn wait(&self, d: Duration) -> bool {
        if self.fired() {
            return true;
        }
        match self.rx.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                self.fired.store(true, Ordering::SeqCst);
                true
            }
        }
    }
}

/// One connection to the stream.
struct Attempt<'a> {
    agent: &'a ureq::Agent,
    url: &'a str,
    base: &'a str,
    timeout: Duration,
    stop: &'a Stop,
}

impl Attempt<'_> {
    /// Reads the stream until it ends or stop fires: whether it delivered an event, and why it ended.
    fn run(&self, last: &mut HashMap<String, Option<bool>>, on_event: &mut dyn FnMut(StreamEvent)) -> (bool, String) {
        let response = match self.agent.get(self.url).header("Accept", "text/event-stream").call() {
            Ok(response) => response,
            Err(_) if self.stop.fired() => return (false, STOPPED.into()),
            Err(e) => return (false, self.describe(&e)),
        };
        let status = response.status().as_u16();
        if status != 200 {
            return (false, format!("HTTP {status} from analytics"));
        }
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream") {
            let shown: String = content_type.chars().take(60).collect();
            return (false, format!("analytics answered Content-Type {shown:?}, not an event stream"));
        }
        on_event(StreamEvent::Connected);
        let mut reader = response.into_body().into_reader();
        let mut parser = Parser::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut delivered = false;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return (delivered, "analytics ended the stream".into()),
                Ok(n) => n,
                Err(_) if self.stop.fired() => return (delivered, STOPPED.into()),
                Err(e) => return (delivered, format!("stream broken: {}", self.describe(&ureq::Error::from(e)))),
            };
            for parsed in parser.feed(&buf[..n]) {
                delivered = true;
                if let Parsed::L2(change) = parsed {
                    if last.get(&change.fq_name) != Some(&change.l2_active) {
                        last.insert(change.fq_name.clone(), change.l2_active);
                        on_event(StreamEvent::Change(change));
                    }
                }
            }
            if self.stop.fired() {
                return (delivered, STOPPED.into());
            }
        }
    }

    /// A reason for a transport error, free of the URL's userinfo.
    fn describe(&self, e: &ureq::Error) -> String {
        let late = || format!("no answer from analytics within {} ms", self.timeout.as_millis());
        match e {
            ureq::Error::Timeout(_) => late(),
            ureq::Error::Io(io) if matches!(io.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => late(),
            ureq::Error::Io(io) => format!("analytics unreachable: {io}"),
            ureq::Error::HostNotFound => "analytics host not found".into(),
            ureq::Error::ConnectionFailed => "connection to analytics failed".into(),
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => format!("bad analytics url {}", redact_url(self.base)),
            // The other variants' texts do not carry the URL; with userinfo in it, say nothing more.
            other if redact_url(self.base) == self.base => other.to_string(),
            _ => "request to analytics failed".into(),
        }
    }
}

/// An agent for the stream: every stage before the body is bounded by `timeout`, the body is not
/// (it has no end, and opserver sends no keepalives, so silence is no failure).
///
/// Why a transport of our own: `stop` must be looked at while a read waits for the server. ureq's
/// own read timeouts end the request when they expire (a body timeout would cut every quiet stream,
/// and resuming a body after a per-read timeout error is not something ureq promises). So the
/// connection is wrapped ([`StopTransport`]) below ureq's state machine: each wait for input is cut
/// into waits of at most [`STOP_CHECK`] (the socket or TLS read simply times out and is retried, as
/// std sockets allow), `stop` is looked at between them, and ureq only sees its own deadline expire
/// or the connection fail. This uses ureq's `unversioned` transport API: an upgrade of ureq that
/// changes it fails to compile rather than misbehave.
fn stream_agent(timeout: Duration, stop: Stop) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::WebPki).build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(timeout))
        .timeout_send_request(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .user_agent(concat!("esi-monitor/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(config, DefaultConnector::new().chain(StopConnector(stop)), DefaultResolver::default())
}

/// Wraps every connection (TCP or TLS) in a [`StopTransport`].
#[derive(Debug)]
struct StopConnector(Stop);

impl Connector<Box<dyn Transport>> for StopConnector {
    type Out = StopTransport;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<StopTransport>, ureq::Error> {
        Ok(chained.map(|inner| StopTransport { inner, stop: self.0.clone() }))
    }
}

/// A connection whose waits for input look at `stop` at least every [`STOP_CHECK`].
#[derive(Debug)]
struct StopTransport {
    inner: Box<dyn Transport>,
    stop: Stop,
}

impl Transport for StopTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        // ureq's deadline for this wait; none while the body is read.
        let deadline = if timeout.after.is_not_happening() { None } else { Instant::now().checked_add(*timeout.after) };
        loop {
            if self.stop.fired() {
                return Err(ureq::Error::Io(io::Error::other(STOPPED)));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let last = left.is_some_and(|left| left <= STOP_CHECK);
            let slice = NextTimeout { after: left.map_or(STOP_CHECK, |left| left.min(STOP_CHECK)).into(), ..timeout };
            match self.inner.await_input(slice) {
                Err(e) if !last && is_timeout(&e) => continue,
                outcome => return outcome,
            }
        }
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

fn is_timeout(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => matches!(io.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The parser

/// What one event of the stream says, as far as VMIs' `l2_active` go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// `event: init`: the stream starts (the current state follows).
    Init,
    /// `event: stop`: the server ends the stream.
    Stop,
    /// An `update` of a VMI's `UveVMInterfaceAgent`, or the removal of that struct or of the UVE.
    L2(L2Change),
}

/// A server-sent events parser (the WHATWG rules: lines end with CRLF, LF or CR; `:` starts a
/// comment; `data:` lines join with newlines; an empty line dispatches) that keeps what concerns
/// VMIs' `l2_active`. Fed bytes split anywhere, or lines; never panics. Updates of other tables or
/// structs, other events, bad JSON and events over 8 MiB are skipped.
#[derive(Debug, Default)]
pub struct Parser {
    /// The line read so far.
    line: Vec<u8>,
    /// The line so far is over the limit: the rest of it is dropped, and its event.
    overlong: bool,
    /// The last line ended with CR: a LF next is part of that line end.
    after_cr: bool,
    /// A line was completed already (a byte order mark is stripped from the first one only).
    lines_seen: bool,
    event: String,
    data: String,
    /// The event being read is dropped when dispatched (too large).
    drop_event: bool,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feeds bytes as they arrive; returns what the events they completed say.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    self.end_line(&mut out);
                }
                _ if self.overlong => {}
                _ if self.line.len() >= MAX_EVENT => {
                    self.overlong = true;
                    self.line = Vec::new();
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    /// Feeds one line without its line end (what was fed before and not yet ended is its start).
    pub fn feed_line(&mut self, line: &str) -> Vec<Parsed> {
        let mut out = self.feed(line.as_bytes());
        self.after_cr = false;
        self.end_line(&mut out);
        out
    }

    fn end_line(&mut self, out: &mut Vec<Parsed>) {
        let line = std::mem::take(&mut self.line);
        let first = !std::mem::replace(&mut self.lines_seen, true);
        if std::mem::take(&mut self.overlong) {
            self.drop_event = true;
            return;
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        let line = String::from_utf8_lossy(&line);
        let line = if first { line.strip_prefix('\u{feff}').unwrap_or(&line) } else { &line };
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" if self.data.len() + value.len() < MAX_EVENT => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "data" => self.drop_event = true,
            _ => {} // id, retry and unknown fields mean nothing here
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Parsed>) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if std::mem::take(&mut self.drop_event) || data.is_empty() {
            return;
        }
        let data = data.strip_suffix('\n').unwrap_or(&data);
        let parsed = match event.as_str() {
            "init" => Some(Parsed::Init),
            "stop" => Some(Parsed::Stop),
            "update" => vmi_update(data).map(Parsed::L2),
            _ => None,
        };
        out.extend(parsed);
    }
}

/// The `data:` of an `update`: a VMI's l2_active, or `None` for anything else or garbage.
fn vmi_update(data: &str) -> Option<L2Change> {
    let update: Value = serde_json::from_str(data).ok()?;
    let (table, fq_name) = update.get("key")?.as_str()?.split_once(':')?;
    if table != VMI_TABLE || fq_name.is_empty() {
        return None;
    }
    let l2_active = match update.get("type")? {
        // The whole UVE went away.
        Value::Null => None,
        Value::String(struct_name) if struct_name == AGENT_STRUCT => match update.get("value")? {
            Value::Null => None,
            Value::Object(agent) => agent.get("l2_active").and_then(Value::as_bool),
            _ => return None,
        },
        _ => return None,
    };
    Some(L2Change { fq_name: fq_name.to_string(), l2_active })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VMI: &str = "default-domain:admin:7322c95c-4a52-4496-b3a9-365de52e5dc7";

    /// An event as opserver's `sse_pack` writes it (`json.dumps` spacing).
    fn update(key: &str, typ: &str, value: &str) -> String {
        format!("event: update\ndata: {{\"key\": \"{key}\", \"type\": {typ}, \"value\": {value}}}\n\n")
    }

    fn agent(l2_active: bool) -> String {
        format!(
            "{{\"l2_active\": {l2_active}, \"active\": {l2_active}, \"vm_name\": \"vm1\", \"ip6_active\": false, \
             \"if_stats\": {{\"in_bytes\": 0, \"in_pkts\": 0}}}}"
        )
    }

    fn change(fq_name: &str, l2_active: Option<bool>) -> Parsed {
        Parsed::L2(L2Change { fq_name: fq_name.into(), l2_active })
    }

    #[test]
    fn uve_real_stream_yields_init_changes_and_stop() {
        let key = format!("ObjectVMITable:{VMI}");
        let mut stream = String::from("event: init\ndata: null\n\n");
        stream += &update(&key, "\"UveVMInterfaceAgent\"", &agent(true));
        stream += &update(&key, "\"ContrailConfig\"", "{\"elements\": {\"fq_name\": \"[\\\"a\\\"]\"}}");
        stream += &update(&key, "\"UveVMInterfaceAgent\"", &agent(false));
        stream += &update(&key, "\"UveVMInterfaceAgent\"", "null");
        stream += &format!("event: update\ndata: {{\"key\": \"{key}\", \"type\": null}}\n\n");
        stream += "event: stop\ndata: null\n\n";
        let parsed = Parser::new().feed(stream.as_bytes());
        assert_eq!(
            parsed,
            vec![
                Parsed::Init,
                change(VMI, Some(true)),
                change(VMI, Some(false)),
                change(VMI, None),
                change(VMI, None),
                Parsed::Stop
            ]
        );
    }

    #[test]
    fn uve_bytes_split_anywhere_give_the_same_events() {
        let key = format!("ObjectVMITable:{VMI}");
        let stream = format!("event: init\ndata: null\n\n{}", update(&key, "\"UveVMInterfaceAgent\"", &agent(true)));
        let whole = Parser::new().feed(stream.as_bytes());
        assert_eq!(whole, vec![Parsed::Init, change(VMI, Some(true))]);
        for size in 1..12 {
            let mut parser = Parser::new();
            let split: Vec<Parsed> = stream.as_bytes().chunks(size).flat_map(|c| parser.feed(c)).collect();
            assert_eq!(split, whole, "chunks of {size}");
        }
    }

    #[test]
    fn uve_crlf_cr_comments_and_multiline_data() {
        let key = format!("ObjectVMITable:{VMI}");
        // The JSON split over three data lines (joined with newlines, which JSON allows), CRLF and CR
        // line ends, a comment and unknown fields between.
        let stream = format!(
            ": keepalive\r\nevent: update\r\nid: 7\r\ndata: {{\"key\": \"{key}\",\rdata:  \"type\": \
             \"UveVMInterfaceAgent\",\r\nretry: 10\r\ndata: \"value\": {}}}\r\n\r\n:\n\n",
            agent(false)
        );
        let mut parser = Parser::new();
        let mut parsed = Vec::new();
        // CR at the end of one chunk, LF at the start of the next: one line end.
        for part in stream.split_inclusive('\r') {
            parsed.extend(parser.feed(part.as_bytes()));
        }
        assert_eq!(parsed, vec![change(VMI, Some(false))]);
    }

    #[test]
    fn uve_lines_fed_one_by_one() {
        let key = format!("ObjectVMITable:{VMI}");
        let mut parser = Parser::new();
        let mut parsed = Vec::new();
        for line in update(&key, "\"UveVMInterfaceAgent\"", &agent(true)).lines() {
            parsed.extend(parser.feed_line(line));
        }
        parsed.extend(parser.feed_line(""));
        assert_eq!(parsed, vec![change(VMI, Some(true))]);
    }

    #[test]
    fn uve_garbage_is_skipped() {
        let key = format!("ObjectVMITable:{VMI}");
        let mut stream = String::new();
        for data in [
            "{\"key\": ",
            "not json",
            "[1, 2]",
            "null",
            "{\"key\": 5, \"type\": null}",
            "{\"type\": \"UveVMInterfaceAgent\", \"value\": {\"l2_active\": true}}",
            &format!("{{\"key\": \"{key}\"}}"),
            &format!("{{\"key\": \"{key}\", \"type\": \"UveVMInterfaceAgent\"}}"),
            &format!("{{\"key\": \"{key}\", \"type\": \"UveVMInterfaceAgent\", \"value\": 3}}"),
            &format!("{{\"key\": \"{key}\", \"type\": 12, \"value\": {{}}}}"),
            "{\"key\": \"ObjectVMITable\", \"type\": null}",
            "{\"key\": \"ObjectVMITable:\", \"type\": null}",
        ] {
            stream += &format!("event: update\ndata: {data}\n\n");
        }
        stream += "\u{0}\u{7f}\u{ff}\n\n\n";
        let mut bytes = stream.into_bytes();
        bytes.extend_from_slice(b"data: \xff\xfe\n\n");
        bytes.extend_from_slice(b"event: update\ndata: {\"key\": \"ObjectVMITable:\xc3\x28\", \"type\": null}\n\n");
        let parsed = Parser::new().feed(&bytes);
        // Only the last one, whose key is invalid UTF-8 (replaced), is an update of a VMI.
        assert_eq!(parsed, vec![change("\u{fffd}(", None)]);
    }

    #[test]
    fn uve_other_tables_structs_and_events_are_ignored() {
        let mut stream = update("ObjectVNTable:default-domain:admin:vn1", "\"UveVirtualNetworkAgent\"", "{}");
        stream += &update("ObjectVNTable:default-domain:admin:vn1", "\"UveVMInterfaceAgent\"", &agent(true));
        stream += &update(&format!("ObjectVMITable:{VMI}"), "\"UVEAlarms\"", "{\"alarms\": []}");
        stream += &update(&format!("ObjectVMITable:{VMI}"), "\"ContrailConfig\"", "null");
        stream += &format!("data: {{\"key\": \"ObjectVMITable:{VMI}\", \"type\": null}}\n\n");
        stream += &format!("event: alarm\ndata: {{\"key\": \"ObjectVMITable:{VMI}\", \"type\": null}}\n\n");
        stream += "event: update\n\nevent: init\n\n";
        assert_eq!(Parser::new().feed(stream.as_bytes()), vec![]);
    }

    #[test]
    fn uve_struct_without_a_boolean_l2_active_is_none() {
        let key = format!("ObjectVMITable:{VMI}");
        let mut stream = update(&key, "\"UveVMInterfaceAgent\"", "{\"active\": true}");
        stream += &update(&key, "\"UveVMInterfaceAgent\"", "{\"l2_active\": \"true\"}");
        assert_eq!(Parser::new().feed(stream.as_bytes()), vec![change(VMI, None), change(VMI, None)]);
    }

    #[test]
    fn uve_byte_order_mark_is_stripped_from_the_first_line_only() {
        let stream = "\u{feff}event: init\ndata: null\n\n\u{feff}event: stop\ndata: null\n\n";
        assert_eq!(Parser::new().feed(stream.as_bytes()), vec![Parsed::Init]);
    }

    #[test]
    fn uve_oversized_events_are_dropped_and_parsing_goes_on() {
        let key = format!("ObjectVMITable:{VMI}");
        let big = "x".repeat(MAX_EVENT / 2 + 1);
        let mut parser = Parser::new();
        // One line over the limit, then two data lines together over it.
        let mut parsed = parser.feed(format!("event: update\ndata: {big}{big}\n\n").as_bytes());
        parsed.extend(parser.feed(format!("event: update\ndata: {big}\ndata: {big}\n\n").as_bytes()));
        parsed.extend(parser.feed(update(&key, "\"UveVMInterfaceAgent\"", &agent(true)).as_bytes()));
        assert_eq!(parsed, vec![change(VMI, Some(true))]);
        assert!(parser.line.capacity() <= MAX_EVENT * 2 && parser.data.is_empty());
    }

    #[test]
    fn uve_stop_fires_on_a_message_or_when_closed() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Stop { rx: rx.clone(), fired: Arc::new(AtomicBool::new(false)) };
        assert!(!stop.fired());
        assert!(!stop.wait(Duration::from_millis(10)));
        tx.send(()).unwrap();
        let other = stop.clone();
        assert!(stop.fired());
        // The message was taken by the first look; the latch tells the clone.
        assert!(other.fired() && other.wait(Duration::from_secs(5)));
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        let stop = Stop { rx, fired: Arc::new(AtomicBool::new(false)) };
        drop(tx);
        assert!(stop.wait(Duration::from_secs(5)));
    }

    #[test]
    fn uve_reasons_carry_no_userinfo() {
        let (_tx, rx) = crossbeam_channel::unbounded();
        let stop = Stop { rx, fired: Arc::new(AtomicBool::new(false)) };
        let base = "http://admin:s3cret@127.0.0.1:1";
        let agent = stream_agent(Duration::from_secs(1), stop.clone());
        let attempt = Attempt { agent: &agent, url: base, base, timeout: Duration::from_secs(1), stop: &stop };
        for e in [
            ureq::Error::BadUri(base.into()),
            ureq::Error::Io(io::Error::other("refused")),
            ureq::Error::ConnectionFailed,
            ureq::Error::BodyStalled,
            ureq::Error::Timeout(ureq::Timeout::Connect),
        ] {
            let why = attempt.describe(&e);
            assert!(!why.contains("s3cret") && !why.contains("admin"), "{why}");
        }
        assert_eq!(attempt.describe(&ureq::Error::BadUri(base.into())), "bad analytics url http://127.0.0.1:1");
    }
}
