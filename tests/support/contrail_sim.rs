//! A simulated OpenContrail analytics server for tests and the demo.
//!
//! No real analytics server can run here, yet the Contrail probes must be tested against
//! something that behaves like one. This file serves the recorded UVE samples of
//! `tests/fixtures/contrail/` with the real API's semantics, as the samples document them:
//!
//! * `GET /analytics/uves/virtual-machine-interface/<name>` and `…/virtual-network/<name>`
//!   (any query; `?flat` may be present or not): a known name answers 200 with its UVE, an
//!   unknown one 200 `{}` (never 404). `cfilt=Struct:attr,Struct,…` restricts the answer to
//!   those structs/attributes.
//! * `POST /analytics/uves/<type>` with `{"kfilt": [names], "cfilt": [...]}` answers
//!   `{"value": [{"name", "value"}…]}` for the known names only (no `kfilt` = every name).
//! * `GET /analytics/uves/virtual-machine-interfaces` and `…/virtual-networks` list
//!   `[{"href", "name"}…]`.
//! * anything else → 404.
//!
//! It is plain HTTP/1.1 on `std::net`, one thread per connection, with keep-alive (ureq
//! pools connections), `Content-Length` and chunked request bodies. Tests flip a VMI's
//! `l2_active`, add or remove objects, make every answer fail with an HTTP status or arrive
//! late, and count the requests served. Whatever a client sends, the server answers 4xx
//! or closes the connection; it never panics on input.
//!
//! The file is self-contained (std + serde_json) so that integration tests can include it
//! with `#[path = "support/contrail_sim.rs"] mod contrail_sim;` and the demo example with
//! `#[path = "../tests/support/contrail_sim.rs"] mod contrail_sim;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// `GET …/virtual-machine-interface/<VMI_SAMPLE_NAME>?flat` (name from derived/vmi-list.json).
const VMI_SAMPLE: &str = include_str!("../fixtures/contrail/vmi-flat-wiki-R2.json");
pub const VMI_SAMPLE_NAME: &str = "default-domain:admin:7322c95c-4a52-4496-b3a9-365de52e5dc7";
/// A bulk POST answer holding two more VMIs.
const VMI_BULK_SAMPLE: &str = include_str!("../fixtures/contrail/vmi-bulk-post-webui-mock-R4.json");
/// `GET …/virtual-network/<VN_SAMPLE_NAME>?flat` (name from its ContrailConfig.fq_name).
const VN_SAMPLE: &str = include_str!("../fixtures/contrail/vn-flat-opserver-doc-R4.json");
pub const VN_SAMPLE_NAME: &str = "default-domain:admin:vn1";

const VMI_TYPE: &str = "virtual-machine-interface";
const VN_TYPE: &str = "virtual-network";

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(20);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A running simulator; dropping it stops the server.
pub struct ContrailSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    requests: AtomicU64,
    /// TCP connections accepted so far (shows whether clients reuse connections).
    accepted: AtomicU64,
    stop: AtomicBool,
    /// Connection threads still running (they are detached; Drop waits for this to be 0).
    connections: AtomicUsize,
}

struct State {
    vmis: BTreeMap<String, Value>,
    vns: BTreeMap<String, Value>,
    fail: Option<u16>,
    delay: Duration,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

impl ContrailSim {
    /// Starts a simulator on a free port of 127.0.0.1.
    pub fn start() -> ContrailSim {
        ContrailSim::start_on("127.0.0.1:0").expect("contrail simulator: bind 127.0.0.1:0")
    }

    /// Starts a simulator listening on `addr` (e.g. `127.0.0.1:8081`).
    pub fn start_on(addr: &str) -> io::Result<ContrailSim> {
        let listener = TcpListener::bind(addr)?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::with_samples()),
            requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("contrail-sim".into())
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(ContrailSim {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets `UveVMInterfaceAgent.l2_active` (and `active`) of a VMI, creating its UVE
    /// from the recorded sample if the name is unknown.
    pub fn set_l2_active(&self, fq_name: &str, up: bool) {
        let mut state = self.shared.state();
        let uve = state
            .vmis
            .entry(fq_name.to_string())
            .or_insert_with(|| new_vmi(fq_name));
        if !uve.is_object() {
            *uve = json!({});
        }
        let agent = uve
            .as_object_mut()
            .map(|m| m.entry("UveVMInterfaceAgent").or_insert_with(|| json!({})));
        if let Some(agent) = agent {
            if !agent.is_object() {
                *agent = json!({});
            }
            if let Some(agent) = agent.as_object_mut() {
                agent.insert("l2_active".into(), Value::Bool(up));
                agent.insert("active".into(), Value::Bool(up));
            }
        }
    }

    /// Makes a VN known (its UVE is the recorded sample, renamed); keeps an existing one.
    pub fn add_vn(&self, fq_name: &str) {
        let mut state = self.shared.state();
        state
            .vns
            .entry(fq_name.to_string())
            .or_insert_with(|| new_vn(fq_name));
    }

    /// Forgets a VMI or VN: it answers `{}` from now on.
    pub fn remove(&self, fq_name: &str) {
        let mut state = self.shared.state();
        state.vmis.remove(fq_name);
        state.vns.remove(fq_name);
    }

    /// Answers every request with this HTTP status (`None`: normal service again).
    pub fn set_fail(&self, status: Option<u16>) {
        self.shared.state().fail = status;
    }

    /// Delays every answer by `d` (zero: no delay).
    pub fn set_delay(&self, d: Duration) {
        self.shared.state().delay = d;
    }

    /// How many requests were received and answered (or are being answered).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// How many TCP connections were accepted (fewer than requests when kept alive).
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ContrailSim {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Connection threads notice the flag within a TICK or their read timeout.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.shared.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl State {
    fn with_samples() -> State {
        let mut vmis = BTreeMap::new();
        vmis.insert(VMI_SAMPLE_NAME.to_string(), parse_sample(VMI_SAMPLE));
        if let Some(entries) = parse_sample(VMI_BULK_SAMPLE)
            .get("value")
            .and_then(Value::as_array)
        {
            for entry in entries {
                if let (Some(name), Some(value)) = (
                    entry.get("name").and_then(Value::as_str),
                    entry.get("value"),
                ) {
                    vmis.insert(name.to_string(), value.clone());
                }
            }
        }
        let mut vns = BTreeMap::new();
        vns.insert(VN_SAMPLE_NAME.to_string(), parse_sample(VN_SAMPLE));
        State {
            vmis,
            vns,
            fail: None,
            delay: Duration::ZERO,
        }
    }

    fn table(&self, uve_type: &str) -> &BTreeMap<String, Value> {
        if uve_type == VMI_TYPE {
            &self.vmis
        } else {
            &self.vns
        }
    }
}

fn parse_sample(text: &str) -> Value {
    serde_json::from_str(text).expect("contrail simulator: fixture is valid JSON")
}

fn last_segment(fq_name: &str) -> &str {
    fq_name.rsplit(':').next().unwrap_or(fq_name)
}

/// A VMI UVE modelled on the recorded one, named after `fq_name`.
fn new_vmi(fq_name: &str) -> Value {
    let sample = parse_sample(VMI_SAMPLE);
    let mut agent = sample
        .get("UveVMInterfaceAgent")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(agent) = agent.as_object_mut() {
        agent.insert("uuid".into(), json!(last_segment(fq_name)));
        agent.insert(
            "if_stats".into(),
            json!({"in_bytes": 0, "in_pkts": 0, "out_bytes": 0, "out_pkts": 0}),
        );
    }
    json!({ "UveVMInterfaceAgent": agent })
}

/// A VN UVE modelled on the recorded one, named after `fq_name`.
fn new_vn(fq_name: &str) -> Value {
    let mut uve = parse_sample(VN_SAMPLE);
    let last = last_segment(fq_name);
    // ContrailConfig elements are Python json.dumps strings, as the API sends them.
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let fq_list = format!(
        "[{}]",
        fq_name
            .split(':')
            .map(&quoted)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(elements) = uve
        .pointer_mut("/ContrailConfig/elements")
        .and_then(Value::as_object_mut)
    {
        elements.insert("fq_name".into(), json!(fq_list));
        elements.insert("display_name".into(), json!(quoted(last)));
    }
    if let Some(config) = uve
        .pointer_mut("/UveVirtualNetworkConfig")
        .and_then(Value::as_object_mut)
    {
        config.insert(
            "routing_instance_list".into(),
            json!([format!("{fq_name}:{last}")]),
        );
        config.insert("connected_networks".into(), json!([]));
    }
    uve
}

/// Keeps the structs/attributes named by `cfilt` (`Struct` or `Struct:attr`); an empty
/// filter keeps everything. Structs left empty are dropped.
pub fn apply_cfilt(uve: &Value, cfilt: &[String]) -> Value {
    let Some(structs) = uve.as_object().filter(|_| !cfilt.is_empty()) else {
        return uve.clone();
    };
    let mut out = Map::new();
    for (name, body) in structs {
        let wanted: Vec<Option<&str>> = cfilt
            .iter()
            .filter_map(|f| match f.split_once(':') {
                Some((s, attr)) if s == name => Some(Some(attr)),
                None if f == name => Some(None),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            continue;
        }
        if wanted.contains(&None) {
            out.insert(name.clone(), body.clone());
            continue;
        }
        if let Some(attrs) = body.as_object() {
            let kept: Map<String, Value> = attrs
                .iter()
                .filter(|(k, _)| wanted.contains(&Some(k.as_str())))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !kept.is_empty() {
                out.insert(name.clone(), Value::Object(kept));
            }
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------
// HTTP

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let conn_shared = shared.clone();
                let spawned = thread::Builder::new()
                    .name("contrail-sim-conn".into())
                    .spawn(move || {
                        let _guard = ConnectionGuard(conn_shared.clone());
                        serve_connection(&conn_shared, stream);
                    });
                if spawned.is_err() {
                    shared.connections.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(TICK / 4),
            Err(_) => thread::sleep(TICK / 4),
        }
    }
}

/// Counts a connection thread down however it ends.
struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read: answer with this status, then close.
struct Bad(u16);

fn serve_connection(shared: &Shared, mut stream: TcpStream) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(TICK)).is_err()
        || stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let request = match read_request(shared, &mut stream, &mut buf) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(Bad(status)) => {
                let _ = write_response(&mut stream, status, &error_body(status), false);
                return;
            }
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let (fail, delay) = {
            let state = shared.state();
            (state.fail, state.delay)
        };
        if !delay.is_zero() && !sleep_unless_stopped(shared, delay) {
            return;
        }
        let (status, body) = match fail {
            Some(status) => (status, error_body(status)),
            None => {
                let host = request
                    .header("host")
                    .map(str::to_string)
                    .or_else(|| local.map(|a| a.to_string()))
                    .unwrap_or_else(|| "127.0.0.1".into());
                route(shared, &request, &host)
            }
        };
        let keep_alive = request.keep_alive && !shared.stopping();
        if write_response(&mut stream, status, &body, keep_alive).is_err() || !keep_alive {
            return;
        }
    }
}

/// Sleeps `d`; false if the server is stopping meanwhile.
fn sleep_unless_stopped(shared: &Shared, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if shared.stopping() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(TICK));
    }
}

/// Reads one request (pipelined leftovers stay in `buf`). `Ok(None)`: connection closed
/// or server stopping.
fn read_request(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<Request>, Bad> {
    let mut sent_continue = false;
    loop {
        if let Some(head_len) = find(buf, b"\r\n\r\n").map(|i| i + 4) {
            let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
            let (method, target, version, headers) = parse_head(&head)?;
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let chunked = header("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            let body_and_len = if chunked {
                decode_chunked(&buf[head_len..])?
            } else {
                let len = match header("content-length") {
                    None => 0,
                    Some(v) => v.trim().parse::<usize>().map_err(|_| Bad(400))?,
                };
                if len > MAX_BODY {
                    return Err(Bad(413));
                }
                (buf.len() - head_len >= len).then(|| (buf[head_len..head_len + len].to_vec(), len))
            };
            if let Some((body, used)) = body_and_len {
                buf.drain(..head_len + used);
                let connection = header("connection")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let keep_alive = if version == "HTTP/1.0" {
                    connection.contains("keep-alive")
                } else {
                    !connection.contains("close")
                };
                return Ok(Some(Request {
                    method,
                    target,
                    headers,
                    body,
                    keep_alive,
                }));
            }
            if buf.len() - head_len > MAX_BODY {
                return Err(Bad(413));
            }
            let expects = header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
            if expects && !sent_continue {
                sent_continue = true;
                if stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                    return Ok(None);
                }
            }
        } else if buf.len() > MAX_HEAD {
            return Err(Bad(431));
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if shared.stopping() {
                    return Ok(None);
                }
            }
            Err(_) => return Ok(None),
        }
    }
}

type Head = (String, String, String, Vec<(String, String)>);

fn parse_head(head: &str) -> Result<Head, Bad> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Bad(400));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Bad(400));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Bad(400))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok((
        method.to_string(),
        target.to_string(),
        version.to_string(),
        headers,
    ))
}

/// Decodes a chunked body from the start of `data`: `Ok(None)` if incomplete, else the
/// body and how many bytes of `data` it used (trailers included).
fn decode_chunked(data: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Bad> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find(&data[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[pos..pos + eol]).into_owned();
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| Bad(400))?;
        pos += eol + 2;
        if size == 0 {
            // Trailer lines up to an empty line.
            loop {
                let Some(eol) = find(&data[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(Bad(413));
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        pos += size;
        if &data[pos..pos + 2] != b"\r\n" {
            return Err(Bad(400));
        }
        pos += 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn write_response(
    stream: &mut TcpStream,
    status: u16,
    body: &Body,
    keep_alive: bool,
) -> io::Result<()> {
    let (content_type, bytes) = match body {
        Body::Json(v) => (
            "application/json; charset=UTF-8",
            serde_json::to_vec(v).unwrap_or_default(),
        ),
        Body::Text(t) => ("text/plain; charset=UTF-8", t.clone().into_bytes()),
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        reason(status),
        bytes.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(&bytes);
    stream.write_all(&out)?;
    stream.flush()
}

enum Body {
    Json(Value),
    Text(String),
}

fn error_body(status: u16) -> Body {
    Body::Text(format!("{status} {}\n", reason(status)))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------------------
// The analytics API

fn route(shared: &Shared, request: &Request, host: &str) -> (u16, Body) {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    let Some(rest) = path.strip_prefix("/analytics/uves/") else {
        return (404, error_body(404));
    };
    let cfilt = query_cfilt(query);
    let (kind, name) = match rest.split_once('/') {
        Some((kind, name)) => (kind, Some(percent_decode(name))),
        None => (rest, None),
    };
    let state = shared.state();
    match (request.method.as_str(), kind, name) {
        ("GET", VMI_TYPE | VN_TYPE, Some(name)) if !name.is_empty() => {
            let uve = state
                .table(kind)
                .get(&name)
                .map_or_else(|| json!({}), |uve| apply_cfilt(uve, &cfilt));
            (200, Body::Json(uve))
        }
        ("GET", "virtual-machine-interfaces" | "virtual-networks", None) => {
            let uve_type = if kind == "virtual-networks" {
                VN_TYPE
            } else {
                VMI_TYPE
            };
            let list: Vec<Value> = state
                .table(uve_type)
                .keys()
                .map(|name| {
                    json!({
                        "href": format!("http://{host}/analytics/uves/{uve_type}/{name}?flat"),
                        "name": name,
                    })
                })
                .collect();
            (200, Body::Json(Value::Array(list)))
        }
        ("POST", VMI_TYPE | VN_TYPE, None) => {
            match bulk(state.table(kind), &request.body, &cfilt) {
                Some(answer) => (200, Body::Json(answer)),
                None => (400, error_body(400)),
            }
        }
        _ => (404, error_body(404)),
    }
}

/// The bulk POST: `{"kfilt": [names], "cfilt": [...]}` → `{"value": [{"name", "value"}…]}`.
fn bulk(table: &BTreeMap<String, Value>, body: &[u8], query_cfilt: &[String]) -> Option<Value> {
    let filter: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).ok()?
    };
    let strings = |key: &str| -> Option<Option<Vec<String>>> {
        match filter.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some),
            Some(Value::String(s)) => Some(Some(s.split(',').map(str::to_string).collect())),
            Some(_) => None,
        }
    };
    let kfilt = strings("kfilt")?;
    let mut cfilt = strings("cfilt")?.unwrap_or_default();
    cfilt.extend_from_slice(query_cfilt);
    let names: Vec<&String> = match &kfilt {
        Some(names) => names.iter().collect(),
        None => table.keys().collect(),
    };
    let mut seen = std::collections::HashSet::new();
    let value: Vec<Value> = names
        .into_iter()
        .filter(|name| seen.insert(name.as_str()))
        .filter_map(|name| {
            let uve = apply_cfilt(table.get(name.as_str())?, &cfilt);
            let empty = uve.as_object().is_some_and(Map::is_empty);
            (!empty).then(|| json!({ "name": name, "value": uve }))
        })
        .collect();
    Some(json!({ "value": value }))
}

/// All `cfilt` values of a query string, split on commas.
fn query_cfilt(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (percent_decode(key) == "cfilt").then(|| percent_decode(value))
        })
        .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `%XX` decoding; malformed escapes stay as they are, invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
