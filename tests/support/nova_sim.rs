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
//! It answers over `http_sim.rs` (plain HTTP/1.1 on `std::net`, one thread per connection, keep-alive,
//! `Content-Length` and chunked request bodies up to 1 MiB); every answer is `application/json`, an
//! unreadable request gets `{"error": {"code", "title", "message"}}`. Tests add servers, change their
//! status, delete them, set the token lifetime, expire every token, deny `all_tenants`, make Nova fail
//! or answer late, and count tokens, pages, single-server requests and 401s. Whatever a client sends,
//! the server answers 4xx or closes the connection; it never panics on input.
//!
//! Needs only std, serde_json and its sibling `http_sim.rs` (which it includes itself): include it
//! with `#[path = "support/nova_sim.rs"] mod nova_sim;` or through `tests/support/mod.rs`.

#![allow(dead_code)]

// Its own copy, so that this file can be included alone; where `contrail_sim.rs` is included too, the
// server is compiled twice.
#[path = "http_sim.rs"]
#[allow(clippy::duplicate_mod)]
mod http_sim;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_sim::{percent_decode, query_params, reason, Handler, HttpSim, Request, Response, Server as HttpServer};
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

const MAX_BODY: usize = 1024 * 1024;

/// A running simulator; dropping it stops the server.
pub struct NovaSim {
    http: HttpSim<Shared>,
}

struct Shared {
    state: Mutex<State>,
    counters: Counters,
    /// Behind a TLS proxy: the catalog and links name `https://` URLs.
    https: AtomicBool,
}

impl Shared {
    /// `scheme://host` of the URLs this simulator hands out, for a request to `host`.
    fn origin(&self, host: &str) -> String {
        let scheme = if self.https.load(Ordering::SeqCst) { "https" } else { "http" };
        format!("{scheme}://{host}")
    }
}

#[derive(Default)]
struct Counters {
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
}

impl NovaSim {
    /// Starts a simulator on a free port of 127.0.0.1.
    pub fn start() -> NovaSim {
        NovaSim::start_on("127.0.0.1:0").expect("nova simulator: bind 127.0.0.1:0")
    }

    /// Starts a simulator listening on `addr`.
    pub fn start_on(addr: &str) -> io::Result<NovaSim> {
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
        let shared = Shared { state: Mutex::new(state), counters: Counters::default(), https: AtomicBool::new(false) };
        Ok(NovaSim { http: HttpSim::start(addr, "nova-sim", MAX_BODY, shared)? })
    }

    fn shared(&self) -> &Shared {
        self.http.handler()
    }

    /// The `auth_url` to configure: `http://127.0.0.1:PORT/v3`.
    pub fn url(&self) -> String {
        format!("http://{}/v3", self.addr())
    }

    /// `http://127.0.0.1:PORT`: Keystone's root, the `auth_url` written without `/v3`.
    pub fn root(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// Replaces the accepted credentials (user, password, project; both domains `Default`).
    pub fn set_credentials(&self, user: &str, password: &str, project: &str) {
        let mut state = self.shared().state();
        state.credentials.user = user.into();
        state.credentials.password = password.into();
        state.credentials.project = project.into();
    }

    /// The domains the user and the project must be named in.
    pub fn set_domains(&self, user_domain: &str, project_domain: &str) {
        let mut state = self.shared().state();
        state.credentials.user_domain = user_domain.into();
        state.credentials.project_domain = project_domain.into();
    }

    /// `n` new ACTIVE servers of the project; their ids, oldest first.
    pub fn add_servers(&self, n: usize) -> Vec<String> {
        let mut state = self.shared().state();
        (0..n)
            .map(|_| {
                let seq = state.created + 1;
                let id = format!("{:08x}-5a1e-4c0d-8e1f-{:012x}", self.addr().port() as u64 * 7919 % 0xffff_ffff, seq);
                state.insert(&id, "ACTIVE", PROJECT_ID);
                id
            })
            .collect()
    }

    /// A server with this id and status in the project (a known id is replaced).
    pub fn add_server(&self, id: &str, status: &str) {
        self.shared().state().insert(id, status, PROJECT_ID);
    }

    /// A server of another project: listed with `all_tenants` only.
    pub fn add_foreign_server(&self, id: &str, status: &str) {
        self.shared().state().insert(id, status, OTHER_PROJECT_ID);
    }

    /// Sets a server's status (`SHUTOFF`, `ERROR`, `ACTIVE`…); false if there is none.
    pub fn set_status(&self, id: &str, status: &str) -> bool {
        let mut state = self.shared().state();
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
        let mut state = self.shared().state();
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
        self.shared().state().token_lifetime = lifetime;
    }

    /// Makes every issued token invalid: Nova answers 401 to them.
    pub fn expire_tokens(&self) {
        self.shared().state().tokens.clear();
    }

    /// true: `all_tenants` listings are forbidden (403), as for a user without the admin role.
    pub fn deny_all_tenants(&self, deny: bool) {
        self.shared().state().deny_all_tenants = deny;
    }

    /// Nova's `max_limit`: the largest page it sends whatever `limit` asks.
    pub fn set_max_limit(&self, max_limit: usize) {
        self.shared().state().max_limit = max_limit.max(1);
    }

    /// Every Nova request (not Keystone) answers this HTTP status; `None`: normal service.
    pub fn set_nova_fail(&self, status: Option<u16>) {
        self.shared().state().nova_fail = status;
    }

    /// Delays every answer by `d` (zero: no delay).
    /// Behind a TLS proxy (`tls_proxy.rs`): the catalog and links name `https://` URLs of
    /// the host the requests name.
    pub fn set_https(&self, https: bool) {
        self.shared().https.store(https, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.shared().state().delay = d;
    }

    /// Tokens issued (successful `POST /v3/auth/tokens`).
    pub fn tokens_issued(&self) -> u64 {
        self.shared().counters.tokens.load(Ordering::SeqCst)
    }

    /// `POST /v3/auth/tokens` requests, successful or not.
    pub fn auth_requests(&self) -> u64 {
        self.shared().counters.auth_requests.load(Ordering::SeqCst)
    }

    /// `GET …/servers/detail` requests (pages) answered 200.
    pub fn detail_pages(&self) -> u64 {
        self.shared().counters.pages.load(Ordering::SeqCst)
    }

    /// `GET …/servers/<id>` requests, whatever the answer.
    pub fn server_gets(&self) -> u64 {
        self.shared().counters.server_gets.load(Ordering::SeqCst)
    }

    /// 401 answers given (Keystone and Nova).
    pub fn unauthorized(&self) -> u64 {
        self.shared().counters.unauthorized.load(Ordering::SeqCst)
    }

    /// Every request received.
    pub fn requests(&self) -> u64 {
        self.http.requests()
    }

    /// TCP connections accepted (fewer than requests when kept alive).
    pub fn connections(&self) -> u64 {
        self.http.connections()
    }

    /// Compute requests received under this endpoint path ([`PUBLIC`], [`INTERNAL`], …).
    pub fn compute_requests_via(&self, path: &str) -> u64 {
        self.shared().state().via.get(path).copied().unwrap_or(0)
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
// Answers

impl Handler for Shared {
    fn answer(&self, request: &Request, http: &HttpServer) -> Option<Response> {
        let delay = self.state().delay;
        if !delay.is_zero() && !http.sleep(delay) {
            return None;
        }
        let answer = route(self, http, request);
        if answer.status == 401 {
            self.counters.unauthorized.fetch_add(1, Ordering::SeqCst);
        }
        Some(answer)
    }

    fn unreadable(&self, status: u16) -> Response {
        plain_error(status)
    }
}

fn json_answer(status: u16, body: Value) -> Response {
    Response::new(status, "application/json", serde_json::to_vec(&body).unwrap_or_default())
}

/// An answer for a request that could not be read.
fn plain_error(status: u16) -> Response {
    json_answer(status, json!({"error": {"code": status, "title": reason(status), "message": reason(status)}}))
}

/// Keystone's error body.
fn keystone_error(status: u16, message: &str) -> Response {
    let mut answer = json_answer(status, json!({"error": {"code": status, "message": message, "title": reason(status)}}));
    if status == 401 {
        answer.headers.push(("WWW-Authenticate".into(), "Keystone uri=\"/v3\"".into()));
    }
    answer
}

/// Nova's error body: `{"badRequest": {"code", "message"}}` and so on.
fn nova_error(status: u16, message: &str) -> Response {
    let key = match status {
        400 => "badRequest",
        403 => "forbidden",
        404 => "itemNotFound",
        _ => "computeFault",
    };
    json_answer(status, json!({ key: {"code": status, "message": message} }))
}

// ---------------------------------------------------------------------------------------
// Keystone and Nova

fn route(shared: &Shared, http: &HttpServer, request: &Request) -> Response {
    let origin = shared.origin(&request.host);
    let (path, query) = request.target.split_once('?').unwrap_or((request.target.as_str(), ""));
    if path == "/v3/auth/tokens" {
        return match request.method.as_str() {
            "POST" => issue(shared, http, request),
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
        let answer = list(&state, &params, &format!("{origin}{prefix}"));
        if answer.status == 200 {
            shared.counters.pages.fetch_add(1, Ordering::SeqCst);
        }
        return answer;
    }
    if let Some(id) = rest.strip_prefix("/servers/").filter(|id| !id.is_empty() && !id.contains('/')).map(percent_decode) {
        shared.counters.server_gets.fetch_add(1, Ordering::SeqCst);
        let link = format!("{origin}{prefix}");
        return match state.servers.iter().find(|s| s.id == id) {
            Some(server) => json_answer(200, json!({"server": server_json(server, &link)})),
            None => nova_error(404, &format!("Instance {id} could not be found.")),
        };
    }
    nova_error(404, "The resource could not be found.")
}

/// `POST /v3/auth/tokens` with the password method.
fn issue(shared: &Shared, http: &HttpServer, request: &Request) -> Response {
    let origin = shared.origin(&request.host);
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
    let token = format!("gAAAAABsim{nanos:08x}{:08x}{n:06}", http.requests() as u32);
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
                       "url": format!("{origin}{prefix}")})
            })
            .collect();
        let token = &mut answer["token"];
        token["project"] = json!({"domain": {"id": "default", "name": c.project_domain}, "id": PROJECT_ID, "name": c.project});
        token["is_domain"] = json!(false);
        token["roles"] = json!([{"id": "r1", "name": "admin"}, {"id": "r2", "name": "member"}]);
        token["catalog"] = json!([
            {"type": "identity", "name": "keystone", "id": "s1", "endpoints": [
                {"id": "k0", "interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                 "url": format!("{origin}/v3")}]},
            {"type": "compute", "name": "nova", "id": "s2", "endpoints": endpoints},
        ]);
    }
    let mut answer = json_answer(201, answer);
    answer.headers.push(("X-Subject-Token".into(), token));
    answer
}

/// `GET …/servers/detail` with `limit`, `marker`, `all_tenants`.
fn list(state: &State, params: &[(String, String)], link: &str) -> Response {
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
    json_answer(200, body)
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
