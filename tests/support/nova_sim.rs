//! A simulated OpenStack Keystone v3 + Nova compute API, on one port, for tests.
//!
//! No OpenStack cloud can run here, yet the `nova_vm` client must be tested against something
//! that behaves like one. This file serves the parts the client uses with the real APIs'
//! semantics:
//!
//! * `POST /v3/auth/tokens`: password authentication. The user name, its domain (`name`, or
//!   `id` `default` for `Default`), the password, and the scope's project name and domain are
//!   checked; anything wrong → 401 `{"error": {"code": 401, "message": …, "title":
//!   "Unauthorized"}}` as Keystone answers; a body that is not JSON or lacks `auth.identity` →
//!   400. Success → 201 with the token in `X-Subject-Token` and `{"token": {"expires_at",
//!   "issued_at", "catalog", …}}` (lifetime configurable, 1 h by default). The catalog has an
//!   `identity` service and a `compute` service with `public`, `internal` and `admin` endpoints in
//!   `RegionOne` and a `public` one in `RegionTwo`, all pointing at this simulator under
//!   different paths ([`PUBLIC`], [`INTERNAL`], [`ADMIN`], [`REGION_TWO`]); an unscoped request
//!   gets a token without a catalog, as Keystone gives.
//! * `GET <compute>/servers/detail`: needs a known, unexpired `X-Auth-Token` (else 401);
//!   `limit` (default and maximum `max_limit`, 1000 as Nova's), `marker` (400 `badRequest` if
//!   it is not the id of a server this Nova knows; deleted servers stay valid markers, as Nova
//!   looks markers up among deleted rows too), `all_tenants` (403 `forbidden` when the test
//!   denies it; without it only the project's servers are listed). Order: created desc, id
//!   desc (Nova's default). A full page carries `servers_links` with rel `next`.
//! * `GET <compute>/servers/<id>`: 200 `{"server": …}`, or 404 `{"itemNotFound": …}`.
//! * anything else → 404 (JSON).
//!
//! Plain HTTP/1.1 on `std::net`, one thread per connection, keep-alive, `Content-Length` and
//! chunked request bodies. Tests add servers, change their status, delete them, set the token
//! lifetime, expire every token, deny `all_tenants`, make Nova fail or answer late, and count
//! tokens, pages, single-server requests and 401s. Whatever a client sends, the server answers
//! 4xx or closes the connection; it never panics on input.
//!
//! Self-contained (std + serde_json): include it with
//! `#[path = "support/nova_sim.rs"] mod nova_sim;` or through `tests/support/mod.rs`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// The credentials the simulator accepts (change them with [`NovaSim::set_credentials`]).
pub const USERNAME: &str = "esi-monitor";
pub const PASSWORD: &str = "n0va-s3cret-pw";
pub const PROJECT: &str = "admin";
pub const DOMAIN: &str = "Default";
/// The id of the project the credentials are scoped to (servers' `tenant_id`).
pub const PROJECT_ID: &str = "3f1c2b9e5a7d4c60b1e2f3a4b5c6d7e8";
/// Another project, whose servers only `all_tenants` lists.
pub const OTHER_PROJECT_ID: &str = "9a8b7c6d5e4f40312a1b2c3d4e5f6a7b";

/// Paths of the compute endpoints in the catalog: `public`, `internal`, `admin` in RegionOne …
pub const PUBLIC: &str = "/v2.1";
pub const INTERNAL: &str = "/internal/v2.1";
pub const ADMIN: &str = "/admin/v2.1";
/// … and `public` in RegionTwo.
pub const REGION_TWO: &str = "/region-two/v2.1";
const ENDPOINTS: [(&str, &str, &str); 4] =
    [("public", "RegionOne", PUBLIC), ("internal", "RegionOne", INTERNAL), ("admin", "RegionOne", ADMIN), ("public", "RegionTwo", REGION_TWO)];

/// Nova's default `max_limit`.
pub const MAX_LIMIT: usize = 1000;

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(20);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// A running simulator; dropping it stops the server.
pub struct NovaSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    counters: Counters,
    stop: AtomicBool,
    /// Connection threads still running (they are detached; Drop waits for this to be 0).
    connections: AtomicUsize,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    accepted: AtomicU64,
    tokens: AtomicU64,
    auth_requests: AtomicU64,
    pages: AtomicU64,
    server_gets: AtomicU64,
    unauthorized: AtomicU64,
}

struct Server {
    id: String,
    name: String,
    status: String,
    tenant_id: String,
    /// Creation order: the sort key with the id (created desc, id desc).
    created: u64,
}

struct Credentials {
    user: String,
    password: String,
    project: String,
    user_domain: String,
    project_domain: String,
}

struct State {
    credentials: Credentials,
    token_lifetime: Duration,
    /// Token → when it expires (its issue is checked against this, as Keystone validates).
    tokens: HashMap<String, Instant>,
    servers: Vec<Server>,
    /// Deleted servers: still valid markers (their sort key) but never listed.
    deleted: Vec<Server>,
    created: u64,
    deny_all_tenants: bool,
    max_limit: usize,
    /// Every Nova answer is this status (`None`: normal service).
    nova_fail: Option<u16>,
    delay: Duration,
    /// Compute requests per endpoint path (`/v2.1`, `/internal/v2.1`, …).
    via: BTreeMap<String, u64>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

impl NovaSim {
    /// Starts a simulator on a free port of 127.0.0.1.
    pub fn start() -> NovaSim {
        NovaSim::start_on("127.0.0.1:0").expect("nova simulator: bind 127.0.0.1:0")
    }

    /// Starts a simulator listening on `addr`.
    pub fn start_on(addr: &str) -> io::Result<NovaSim> {
        let listener = TcpListener::bind(addr)?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        listener.set_nonblocking(true)?;
        let state = State {
            credentials: Credentials {
                user: USERNAME.into(),
                password: PASSWORD.into(),
                project: PROJECT.into(),
                user_domain: DOMAIN.into(),
                project_domain: DOMAIN.into(),
            },
            token_lifetime: Duration::from_secs(3600),
            tokens: HashMap::new(),
            servers: Vec::new(),
            deleted: Vec::new(),
            created: 0,
            deny_all_tenants: false,
            max_limit: MAX_LIMIT,
            nova_fail: None,
            delay: Duration::ZERO,
            via: BTreeMap::new(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new().name("nova-sim".into()).spawn(move || accept_loop(listener, shared))?
        };
        Ok(NovaSim { shared, addr, acceptor: Some(acceptor) })
    }

    /// The `auth_url` to configure: `http://127.0.0.1:PORT/v3`.
    pub fn url(&self) -> String {
        format!("http://{}/v3", self.addr)
    }

    /// `http://127.0.0.1:PORT`: Keystone's root, the `auth_url` written without `/v3`.
    pub fn root(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the accepted credentials (user, password, project; both domains `Default`).
    pub fn set_credentials(&self, user: &str, password: &str, project: &str) {
        let mut state = self.shared.state();
        state.credentials.user = user.into();
        state.credentials.password = password.into();
        state.credentials.project = project.into();
    }

    /// The domains the user and the project must be named in.
    pub fn set_domains(&self, user_domain: &str, project_domain: &str) {
        let mut state = self.shared.state();
        state.credentials.user_domain = user_domain.into();
        state.credentials.project_domain = project_domain.into();
    }

    /// `n` new ACTIVE servers of the project; their ids, oldest first.
    pub fn add_servers(&self, n: usize) -> Vec<String> {
        let mut state = self.shared.state();
        (0..n)
            .map(|_| {
                let seq = state.created + 1;
                let id = format!("{:08x}-5a1e-4c0d-8e1f-{:012x}", self.addr.port() as u64 * 7919 % 0xffff_ffff, seq);
                state.insert(&id, "ACTIVE", PROJECT_ID);
                id
            })
            .collect()
    }

    /// A server with this id and status in the project (a known id is replaced).
    pub fn add_server(&self, id: &str, status: &str) {
        self.shared.state().insert(id, status, PROJECT_ID);
    }

    /// A server of another project: listed with `all_tenants` only.
    pub fn add_foreign_server(&self, id: &str, status: &str) {
        self.shared.state().insert(id, status, OTHER_PROJECT_ID);
    }

    /// Sets a server's status (`SHUTOFF`, `ERROR`, `ACTIVE`…); false if there is none.
    pub fn set_status(&self, id: &str, status: &str) -> bool {
        let mut state = self.shared.state();
        match state.servers.iter_mut().find(|s| s.id == id) {
            Some(server) => {
                server.status = status.into();
                true
            }
            None => false,
        }
    }

    /// Deletes a server: no longer listed, 404 when asked for; false if there is none.
    pub fn delete(&self, id: &str) -> bool {
        let mut state = self.shared.state();
        match state.servers.iter().position(|s| s.id == id) {
            Some(at) => {
                let mut server = state.servers.remove(at);
                server.status = "DELETED".into();
                state.deleted.push(server);
                true
            }
            None => false,
        }
    }

    /// Lifetime of the tokens issued from now on (1 h by default).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.state().token_lifetime = lifetime;
    }

    /// Makes every issued token invalid: Nova answers 401 to them.
    pub fn expire_tokens(&self) {
        self.shared.state().tokens.clear();
    }

    /// true: `all_tenants` listings are forbidden (403), as for a user without the admin role.
    pub fn deny_all_tenants(&self, deny: bool) {
        self.shared.state().deny_all_tenants = deny;
    }

    /// Nova's `max_limit`: the largest page it sends whatever `limit` asks.
    pub fn set_max_limit(&self, max_limit: usize) {
        self.shared.state().max_limit = max_limit.max(1);
    }

    /// Every Nova request (not Keystone) answers this HTTP status; `None`: normal service.
    pub fn set_nova_fail(&self, status: Option<u16>) {
        self.shared.state().nova_fail = status;
    }

    /// Delays every answer by `d` (zero: no delay).
    pub fn set_delay(&self, d: Duration) {
        self.shared.state().delay = d;
    }

    /// Tokens issued (successful `POST /v3/auth/tokens`).
    pub fn tokens_issued(&self) -> u64 {
        self.shared.counters.tokens.load(Ordering::SeqCst)
    }

    /// `POST /v3/auth/tokens` requests, successful or not.
    pub fn auth_requests(&self) -> u64 {
        self.shared.counters.auth_requests.load(Ordering::SeqCst)
    }

    /// `GET …/servers/detail` requests (pages) answered 200.
    pub fn detail_pages(&self) -> u64 {
        self.shared.counters.pages.load(Ordering::SeqCst)
    }

    /// `GET …/servers/<id>` requests, whatever the answer.
    pub fn server_gets(&self) -> u64 {
        self.shared.counters.server_gets.load(Ordering::SeqCst)
    }

    /// 401 answers given (Keystone and Nova).
    pub fn unauthorized(&self) -> u64 {
        self.shared.counters.unauthorized.load(Ordering::SeqCst)
    }

    /// Every request received.
    pub fn requests(&self) -> u64 {
        self.shared.counters.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted (fewer than requests when kept alive).
    pub fn connections(&self) -> u64 {
        self.shared.counters.accepted.load(Ordering::SeqCst)
    }

    /// Compute requests received under this endpoint path ([`PUBLIC`], [`INTERNAL`], …).
    pub fn compute_requests_via(&self, path: &str) -> u64 {
        self.shared.state().via.get(path).copied().unwrap_or(0)
    }
}

impl Drop for NovaSim {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Connection threads notice the flag within a TICK.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.shared.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl State {
    fn insert(&mut self, id: &str, status: &str, tenant_id: &str) {
        self.created += 1;
        self.servers.retain(|s| s.id != id);
        self.deleted.retain(|s| s.id != id);
        let name = format!("vm-{}", self.created);
        self.servers.push(Server { id: id.into(), name, status: status.into(), tenant_id: tenant_id.into(), created: self.created });
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.counters.accepted.fetch_add(1, Ordering::SeqCst);
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let conn_shared = shared.clone();
                let spawned = thread::Builder::new().name("nova-sim-conn".into()).spawn(move || {
                    let _guard = ConnectionGuard(conn_shared.clone());
                    serve_connection(&conn_shared, stream);
                });
                if spawned.is_err() {
                    shared.connections.fetch_sub(1, Ordering::SeqCst);
                }
            }
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
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An answer: status, extra headers, JSON body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer { status, headers: Vec::new(), body }
    }
}

/// Why a request could not be read: answer with this status, then close.
struct Bad(u16);

fn serve_connection(shared: &Shared, mut stream: TcpStream) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(TICK)).is_err()
        || stream.set_write_timeout(Some(Duration::from_secs(2))).is_err()
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
                let _ = write_response(&mut stream, &plain_error(status), false);
                return;
            }
        };
        shared.counters.requests.fetch_add(1, Ordering::SeqCst);
        let delay = shared.state().delay;
        if !delay.is_zero() && !sleep_unless_stopped(shared, delay) {
            return;
        }
        let host = request
            .header("host")
            .map(str::to_string)
            .or_else(|| local.map(|a| a.to_string()))
            .unwrap_or_else(|| "127.0.0.1".into());
        let answer = route(shared, &request, &host);
        if answer.status == 401 {
            shared.counters.unauthorized.fetch_add(1, Ordering::SeqCst);
        }
        let keep_alive = request.keep_alive && !shared.stopping();
        if write_response(&mut stream, &answer, keep_alive).is_err() || !keep_alive {
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

/// Reads one request (pipelined leftovers stay in `buf`). `Ok(None)`: connection closed or
/// server stopping.
fn read_request(shared: &Shared, stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Request>, Bad> {
    let mut sent_continue = false;
    loop {
        if let Some(head_len) = find(buf, b"\r\n\r\n").map(|i| i + 4) {
            let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
            let (method, target, version, headers) = parse_head(&head)?;
            let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
            let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
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
                let connection = header("connection").unwrap_or_default().to_ascii_lowercase();
                let keep_alive =
                    if version == "HTTP/1.0" { connection.contains("keep-alive") } else { !connection.contains("close") };
                return Ok(Some(Request { method, target, headers, body, keep_alive }));
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
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {
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
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
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
    Ok((method.to_string(), target.to_string(), version.to_string(), headers))
}

/// Decodes a chunked body from the start of `data`: `Ok(None)` if incomplete, else the body
/// and how many bytes of `data` it used (trailers included).
fn decode_chunked(data: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Bad> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find(&data[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[pos..pos + eol]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16).map_err(|_| Bad(400))?;
        pos += eol + 2;
        if size == 0 {
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

fn write_response(stream: &mut TcpStream, answer: &Answer, keep_alive: bool) -> io::Result<()> {
    let bytes = serde_json::to_vec(&answer.body).unwrap_or_default();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n",
        answer.status,
        reason(answer.status),
        bytes.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&bytes);
    stream.write_all(&out)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// An answer for a request that could not be read.
fn plain_error(status: u16) -> Answer {
    Answer::json(status, json!({"error": {"code": status, "title": reason(status), "message": reason(status)}}))
}

/// Keystone's error body.
fn keystone_error(status: u16, message: &str) -> Answer {
    let mut answer = Answer::json(status, json!({"error": {"code": status, "message": message, "title": reason(status)}}));
    if status == 401 {
        answer.headers.push(("WWW-Authenticate".into(), "Keystone uri=\"/v3\"".into()));
    }
    answer
}

/// Nova's error body: `{"badRequest": {"code", "message"}}` and so on.
fn nova_error(status: u16, message: &str) -> Answer {
    let key = match status {
        400 => "badRequest",
        403 => "forbidden",
        404 => "itemNotFound",
        _ => "computeFault",
    };
    Answer::json(status, json!({ key: {"code": status, "message": message} }))
}

// ---------------------------------------------------------------------------------------
// Keystone and Nova

fn route(shared: &Shared, request: &Request, host: &str) -> Answer {
    let (path, query) = request.target.split_once('?').unwrap_or((request.target.as_str(), ""));
    if path == "/v3/auth/tokens" {
        return match request.method.as_str() {
            "POST" => issue(shared, request, host),
            _ => keystone_error(405, "The method is not allowed for the requested URL."),
        };
    }
    let endpoint = ENDPOINTS
        .iter()
        .map(|(_, _, prefix)| *prefix)
        .filter(|prefix| path.starts_with(&format!("{prefix}/")))
        .max_by_key(|prefix| prefix.len());
    let Some(prefix) = endpoint else {
        return nova_error(404, "The resource could not be found.");
    };
    let rest = &path[prefix.len()..];
    let mut state = shared.state();
    *state.via.entry(prefix.to_string()).or_default() += 1;
    let token_valid = request
        .header("x-auth-token")
        .and_then(|t| state.tokens.get(t))
        .is_some_and(|expires| Instant::now() < *expires);
    if !token_valid {
        return keystone_error(401, "The request you have made requires authentication.");
    }
    if let Some(status) = state.nova_fail {
        return nova_error(status, "The server has either erred or is incapable of performing the requested operation.");
    }
    if request.method != "GET" {
        return nova_error(405, "The method is not allowed for the requested URL.");
    }
    let params = query_params(query);
    if rest == "/servers/detail" {
        let answer = list(&state, &params, &format!("http://{host}{prefix}"));
        if answer.status == 200 {
            shared.counters.pages.fetch_add(1, Ordering::SeqCst);
        }
        return answer;
    }
    if let Some(id) = rest.strip_prefix("/servers/").filter(|id| !id.is_empty() && !id.contains('/')).map(percent_decode) {
        shared.counters.server_gets.fetch_add(1, Ordering::SeqCst);
        let link = format!("http://{host}{prefix}");
        return match state.servers.iter().find(|s| s.id == id) {
            Some(server) => Answer::json(200, json!({"server": server_json(server, &link)})),
            None => nova_error(404, &format!("Instance {id} could not be found.")),
        };
    }
    nova_error(404, "The resource could not be found.")
}

/// `POST /v3/auth/tokens` with the password method.
fn issue(shared: &Shared, request: &Request, host: &str) -> Answer {
    shared.counters.auth_requests.fetch_add(1, Ordering::SeqCst);
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return keystone_error(400, "Expecting to find valid JSON in request body.");
    };
    let Some(identity) = body.pointer("/auth/identity") else {
        return keystone_error(400, "'identity' is a required property");
    };
    let methods = identity.get("methods").and_then(Value::as_array);
    if !methods.is_some_and(|m| m.iter().any(|x| x == "password")) {
        return keystone_error(401, "The request you have made requires authentication.");
    }
    let text = |v: &Value, pointer: &str| v.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    let mut state = shared.state();
    let c = &state.credentials;
    // A domain named, or `default` given by id for the Default domain.
    let domain_ok = |domain: Option<&Value>, wanted: &str| match domain {
        Some(d) => {
            text(d, "/name").as_deref() == Some(wanted)
                || (wanted == DOMAIN && text(d, "/id").as_deref() == Some("default"))
        }
        None => false,
    };
    let user_ok = text(identity, "/password/user/name").as_deref() == Some(c.user.as_str())
        && domain_ok(identity.pointer("/password/user/domain"), &c.user_domain)
        && text(identity, "/password/user/password").as_deref() == Some(c.password.as_str());
    if !user_ok {
        return keystone_error(401, "The request you have made requires authentication.");
    }
    let scope = body.pointer("/auth/scope/project");
    let scoped = match scope {
        None => false,
        Some(project) => {
            let ok = text(project, "/name").as_deref() == Some(c.project.as_str())
                && domain_ok(project.get("domain"), &c.project_domain);
            if !ok {
                return keystone_error(401, "The request you have made requires authentication.");
            }
            true
        }
    };
    let n = shared.counters.tokens.fetch_add(1, Ordering::SeqCst) + 1;
    let wall = SystemTime::now();
    let nanos = wall.duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let token = format!("gAAAAABsim{nanos:08x}{:08x}{n:06}", shared.counters.requests.load(Ordering::SeqCst) as u32);
    let lifetime = state.token_lifetime;
    state.tokens.insert(token.clone(), Instant::now() + lifetime);
    let c = &state.credentials;
    let mut answer = json!({"token": {
        "methods": ["password"],
        "user": {"domain": {"id": "default", "name": c.user_domain}, "id": "5e1f0a6b7c8d4e9fa0b1c2d3e4f5a6b7",
                 "name": c.user, "password_expires_at": null},
        "audit_ids": [format!("sim-audit-{n}")],
        "expires_at": rfc3339(wall + lifetime),
        "issued_at": rfc3339(wall),
    }});
    if scoped {
        let endpoints: Vec<Value> = ENDPOINTS
            .iter()
            .enumerate()
            .map(|(i, (interface, region, prefix))| {
                json!({"id": format!("e{i}"), "interface": interface, "region": region, "region_id": region,
                       "url": format!("http://{host}{prefix}")})
            })
            .collect();
        let token = &mut answer["token"];
        token["project"] = json!({"domain": {"id": "default", "name": c.project_domain}, "id": PROJECT_ID, "name": c.project});
        token["is_domain"] = json!(false);
        token["roles"] = json!([{"id": "r1", "name": "admin"}, {"id": "r2", "name": "member"}]);
        token["catalog"] = json!([
            {"type": "identity", "name": "keystone", "id": "s1", "endpoints": [
                {"id": "k0", "interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                 "url": format!("http://{host}/v3")}]},
            {"type": "compute", "name": "nova", "id": "s2", "endpoints": endpoints},
        ]);
    }
    Answer { status: 201, headers: vec![("X-Subject-Token".into(), token)], body: answer }
}

/// `GET …/servers/detail` with `limit`, `marker`, `all_tenants`.
fn list(state: &State, params: &[(String, String)], link: &str) -> Answer {
    let param = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let limit = match param("limit") {
        None => state.max_limit,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => (n as usize).min(state.max_limit),
            _ => return nova_error(400, "limit param must be an integer"),
        },
    };
    let all_tenants = param("all_tenants").is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "off" | "no"));
    if all_tenants && state.deny_all_tenants {
        return nova_error(403, "Policy doesn't allow os_compute_api:servers:detail:get_all_tenants to be performed.");
    }
    // Sort key: created desc, id desc; the marker's key is looked up among deleted servers too.
    let key = |s: &Server| (std::cmp::Reverse(s.created), std::cmp::Reverse(s.id.clone()));
    let after = match param("marker") {
        None => None,
        Some(marker) => match state.servers.iter().chain(&state.deleted).find(|s| s.id == marker) {
            Some(server) => Some(key(server)),
            None => return nova_error(400, &format!("marker [{marker}] not found")),
        },
    };
    let mut visible: Vec<&Server> = state
        .servers
        .iter()
        .filter(|s| all_tenants || s.tenant_id == PROJECT_ID)
        .filter(|s| after.as_ref().map_or(true, |after| key(s) > *after))
        .collect();
    visible.sort_by_key(|s| key(s));
    visible.truncate(limit);
    let servers: Vec<Value> = visible.iter().map(|s| server_json(s, link)).collect();
    let mut body = json!({ "servers": servers });
    if limit > 0 && visible.len() == limit {
        let mut query: Vec<String> =
            params.iter().filter(|(k, _)| k != "marker" && k != "limit").map(|(k, v)| format!("{k}={v}")).collect();
        query.push(format!("limit={limit}"));
        if let Some(last) = visible.last() {
            query.push(format!("marker={}", last.id));
        }
        body["servers_links"] = json!([{"href": format!("{link}/servers/detail?{}", query.join("&")), "rel": "next"}]);
    }
    Answer::json(200, body)
}

/// A server as Nova 2.1 details it (the fields a listing carries, abridged).
fn server_json(s: &Server, link: &str) -> Value {
    let vm_state = match s.status.as_str() {
        "ACTIVE" => "active",
        "SHUTOFF" => "stopped",
        "ERROR" => "error",
        "BUILD" => "building",
        "PAUSED" => "paused",
        "SUSPENDED" => "suspended",
        _ => "unknown",
    };
    let created = rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s.created));
    json!({
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "tenant_id": s.tenant_id,
        "user_id": "5e1f0a6b7c8d4e9fa0b1c2d3e4f5a6b7",
        "metadata": {},
        "hostId": "9d1c0a7f3e2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091",
        "image": {"id": "70a599e0-31e7-49b7-b260-868f441e862b", "links": [
            {"href": format!("{link}/images/70a599e0-31e7-49b7-b260-868f441e862b"), "rel": "bookmark"}]},
        "flavor": {"id": "1", "links": [{"href": format!("{link}/flavors/1"), "rel": "bookmark"}]},
        "created": created,
        "updated": created,
        "addresses": {"private": [{"addr": "192.168.0.3", "version": 4, "OS-EXT-IPS:type": "fixed",
                                   "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:4c:2c:30"}]},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": [{"href": format!("{link}/servers/{}", s.id), "rel": "self"},
                  {"href": format!("{link}/servers/{}", s.id), "rel": "bookmark"}],
        "OS-DCF:diskConfig": "AUTO",
        "OS-EXT-AZ:availability_zone": "nova",
        "OS-EXT-STS:power_state": if s.status == "ACTIVE" { 1 } else { 4 },
        "OS-EXT-STS:task_state": null,
        "OS-EXT-STS:vm_state": vm_state,
        "key_name": null,
        "security_groups": [{"name": "default"}],
        "os-extended-volumes:volumes_attached": [],
    })
}

/// `2026-12-02T10:00:00.000000Z`, as Keystone writes times.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// `a=1&b=x%20y` → pairs, decoded.
fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
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
