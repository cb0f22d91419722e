//! The `nova_vm` plugin type of SPEC §4.2: the status of OpenStack servers, read from the Nova
//! compute API with a Keystone v3 token.
//!
//! One [`Nova`] holds one `ureq::Agent` (pooled connections, every stage of a request bounded
//! by `nova.timeout_ms`) and the current token, shared by every poller thread. A poll is ONE
//! paged listing (`GET <compute>/servers/detail?all_tenants=1&limit=1000&marker=<last id>`)
//! answering every registered object ([`Nova::servers`]); verify mode asks for one server
//! ([`Nova::server`]). Statuses: `ACTIVE` → [`Probe::Up`], any other → [`Probe::Down`], absent
//! from the listing (or 404) → Down; Keystone or Nova unreachable or answering an HTTP error →
//! [`Probe::NoAnswer`] for every object.
//!
//! The token (`POST <auth_url>/v3/auth/tokens`, password method, project scope) carries the
//! catalog in which the compute endpoint is chosen (type `compute`, `nova.interface`,
//! `nova.region_name` when set). It is reused until 120 s before it expires, or until half of
//! its lifetime is left when that is shorter; a 401 from Nova renews it once and the request is
//! sent again within the same call. Neither the password nor a token ever appears in a message,
//! a log line or `Debug` output.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};

use super::Probe;
use crate::config::{self, Secret};

/// Servers asked per page of the listing (Nova's default `max_limit`).
pub const PAGE_SIZE: usize = 1000;
/// A token is renewed at the latest this long before it expires (or at half its lifetime).
pub const RENEW_MARGIN: Duration = Duration::from_secs(120);
/// Upper bound for one answer read into memory (a page of 1000 servers is a few MB).
const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Upper bound of pages of one listing: 100 million servers, i.e. a Nova that pages forever.
const MAX_PAGES: usize = 100_000;
/// The longest part of an error message of Keystone or Nova repeated in ours.
const MAX_QUOTE: usize = 300;

type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A client of one OpenStack cloud's Keystone v3 and Nova APIs.
///
/// `Send + Sync`: one value is shared by reference (or in an `Arc`) between all threads; the
/// token is behind a `Mutex`, so that threads finding it stale ask Keystone for one, not one each.
pub struct Nova {
    /// Why every probe is no answer, when Nova is not configured (empty `nova.auth_url`).
    unusable: Option<String>,
    agent: ureq::Agent,
    /// Keystone's v3 root, e.g. `http://10.0.0.1:5000/v3`.
    identity: String,
    username: String,
    password: Secret,
    project_name: String,
    user_domain_name: String,
    project_domain_name: String,
    region_name: String,
    interface: String,
    all_tenants: bool,
    timeout: Duration,
    token: Mutex<Option<Arc<Token>>>,
    clock: Clock,
    tokens_issued: AtomicU64,
    requests: AtomicU64,
}

/// A Keystone token and what it was issued with.
struct Token {
    value: Secret,
    /// The compute endpoint of its catalog, without a trailing slash (`http://…/v2.1`).
    compute: String,
    /// When it stops being used (our monotonic clock).
    renew_at: Instant,
    /// Its number among the tokens of this client: a 401 renews the token only if the one that
    /// got it is still the current one (another thread may have renewed it meanwhile).
    serial: u64,
}

impl fmt::Debug for Nova {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // try_lock: the lock is held while a token is being issued.
        let token = match self.token.try_lock() {
            Ok(slot) => slot.as_ref().map(|t| format!("<redacted>, compute {}", redact_url(&t.compute))),
            Err(_) => Some("<being issued>".to_string()),
        };
        f.debug_struct("Nova")
            .field("unusable", &self.unusable)
            .field("identity", &redact_url(&self.identity))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("project_name", &self.project_name)
            .field("user_domain_name", &self.user_domain_name)
            .field("project_domain_name", &self.project_domain_name)
            .field("region_name", &self.region_name)
            .field("interface", &self.interface)
            .field("all_tenants", &self.all_tenants)
            .field("timeout", &self.timeout)
            .field("token", &token)
            .finish()
    }
}

impl Nova {
    /// A client for the `nova:` section; no request is sent before the first probe. When Nova
    /// is not configured (empty `auth_url`) every probe is no answer `nova.auth_url is not
    /// configured`. Fails for what the configuration's checks refuse too: an `auth_url` that is
    /// not http(s)://, a zero timeout, a `ca_file` without certificates.
    pub fn new(config: &config::Nova) -> Result<Nova, String> {
        let unusable = (!config.configured()).then(|| "nova.auth_url is not configured".to_string());
        let rest = config.auth_url.strip_prefix("http://").or_else(|| config.auth_url.strip_prefix("https://"));
        if unusable.is_none() && rest.map_or(true, |r| r.is_empty() || r.starts_with('/')) {
            return Err(format!("nova.auth_url {}: not an http(s):// URL", redact_url(&config.auth_url)));
        }
        let roots = match config.ca_file.as_str() {
            "" => None,
            path => Some(super::tls_roots(path).map_err(|e| format!("nova.ca_file {path}: {e}"))?),
        };
        if config.timeout_ms == 0 {
            return Err("nova.timeout_ms: must be positive".into());
        }
        let timeout = config.timeout();
        let agent = super::http_agent(timeout, roots);
        Ok(Nova {
            unusable,
            agent,
            identity: identity_url(&config.auth_url),
            username: config.username.clone(),
            password: config.password.clone(),
            project_name: config.project_name.clone(),
            user_domain_name: config.user_domain_name.clone(),
            project_domain_name: config.project_domain_name.clone(),
            region_name: config.region_name.clone(),
            interface: config.catalog_interface().to_string(),
            all_tenants: config.all_tenants,
            timeout,
            token: Mutex::new(None),
            clock: Arc::new(Instant::now),
            tokens_issued: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        })
    }

    /// The same client reading the time from `clock` instead of `Instant::now` (for tests: a
    /// token's reuse period then passes without waiting). Only token reuse reads it.
    pub fn with_clock(mut self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> Nova {
        self.clock = Arc::new(clock);
        self
    }

    /// Tokens Keystone issued to this client so far.
    pub fn tokens_issued(&self) -> u64 {
        self.tokens_issued.load(Ordering::Relaxed)
    }

    /// HTTP requests sent so far, to Keystone and to Nova (answered or not).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Keystone's v3 root this client authenticates at (`<auth_url>` with `/v3`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One probe per id, in input order, from ONE paged listing of the servers: ACTIVE → Up,
    /// another status → Down, not listed → Down; if the listing fails (Keystone or Nova
    /// unreachable, an HTTP error, a bad answer), every id gets the same NoAnswer.
    pub fn servers(&self, ids: &[String]) -> Vec<Probe> {
        if let Some(why) = &self.unusable {
            return ids.iter().map(|id| no_answer(id, why)).collect();
        }
        if ids.is_empty() {
            return Vec::new();
        }
        let listed = match self.list() {
            Ok(listed) => listed,
            Err(why) => return ids.iter().map(|id| no_answer(id, &why)).collect(),
        };
        ids.iter()
            .map(|id| match listed.get(id.as_str()) {
                Some(Some(status)) => status_probe(status),
                Some(None) => no_answer(id, "Nova listed the server without a status"),
                None => Probe::Down,
            })
            .collect()
    }

    /// Verify mode: `GET <compute>/servers/<id>`: 200 → the status rule, 404 → Down, anything
    /// else → NoAnswer.
    pub fn server(&self, id: &str) -> Probe {
        self.server_detailed(id).0
    }

    /// [`Nova::server`] with what Nova answered, for the probe runner (`status SHUTOFF (GET …)`).
    pub fn server_detailed(&self, id: &str) -> (Probe, String) {
        let failed = |why: String| (no_answer(id, &why), why);
        if let Some(why) = &self.unusable {
            return failed(why.clone());
        }
        if id.trim().is_empty() {
            return failed("empty server_id".into());
        }
        let mut call = match self.call() {
            Ok(call) => call,
            Err(why) => return failed(why),
        };
        let (status, body, url) = match call.get(&format!("/servers/{}", encode(id))) {
            Ok(answer) => answer,
            Err(why) => return failed(why),
        };
        match status {
            200..=299 => match serde_json::from_slice::<One>(&body) {
                Ok(One { server: Listed { status: Some(status), .. } }) => {
                    (status_probe(&status), format!("status {status} (GET {url})"))
                }
                Ok(_) => failed(format!("Nova answered GET {url} without a status")),
                Err(e) => failed(format!("bad JSON from Nova GET {url}: {e}")),
            },
            404 => (Probe::Down, self.scrub(&http_error("Nova", "GET", &url, status, &body))),
            _ => failed(self.scrub(&http_error("Nova", "GET", &url, status, &body))),
        }
    }

    /// Every listed server: id → status (None when the listing had none).
    fn list(&self) -> Result<HashMap<String, Option<String>>, String> {
        let mut call = self.call()?;
        let mut listed = HashMap::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = String::from("/servers/detail?");
            if self.all_tenants {
                query.push_str("all_tenants=1&");
            }
            query.push_str(&format!("limit={PAGE_SIZE}"));
            if let Some(marker) = &marker {
                query.push_str(&format!("&marker={}", encode(marker)));
            }
            let (status, body, url) = call.get(&query)?;
            if !(200..300).contains(&status) {
                let why = http_error("Nova", "GET", &url, status, &body);
                if status == 403 && self.all_tenants {
                    return Err(self.scrub(&format!(
                        "{why} (the user may not list the servers of all projects: give nova.username the admin \
                         role, or set nova.all_tenants: false to poll the servers of nova.project_name only)"
                    )));
                }
                return Err(self.scrub(&why));
            }
            let page: Page = serde_json::from_slice(&body).map_err(|e| format!("bad JSON from Nova GET {url}: {e}"))?;
            let next = page.servers_links.iter().find(|l| l.rel == "next");
            let last = page.servers.last().map(|s| s.id.clone());
            let full = page.servers.len() >= PAGE_SIZE;
            let empty = page.servers.is_empty();
            let next_marker = match next {
                Some(link) => query_param(&link.href, "marker").or(last),
                None if full => last,
                None => None,
            };
            for server in page.servers {
                listed.insert(server.id, server.status);
            }
            match next_marker {
                Some(next) if !empty => {
                    if marker.as_deref() == Some(next.as_str()) {
                        return Err(format!("Nova GET {url} sent the same page again (marker {next})"));
                    }
                    marker = Some(next);
                }
                _ => return Ok(listed),
            }
        }
        Err(format!("Nova's server listing did not end after {MAX_PAGES} pages"))
    }

    /// A call (one listing or one verify request) with a usable token.
    fn call(&self) -> Result<Call<'_>, String> {
        Ok(Call { nova: self, token: self.token(None)?, renewed: false })
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<Token>>> {
        self.token.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current token if it is still to be used (and is not number `refused`, which Nova
    /// answered 401 to), else a new one. The lock is held while Keystone is asked, so that
    /// threads needing a token at the same time wait for one instead of asking for one each.
    fn token(&self, refused: Option<u64>) -> Result<Arc<Token>, String> {
        let mut slot = self.slot();
        if let Some(token) = slot.as_ref() {
            if Some(token.serial) != refused && (self.clock)() < token.renew_at {
                return Ok(token.clone());
            }
        }
        *slot = None;
        let token = Arc::new(self.issue()?);
        *slot = Some(token.clone());
        Ok(token)
    }

    /// Keystone v3 password authentication, scoped to the project.
    fn issue(&self) -> Result<Token, String> {
        let url = format!("{}/auth/tokens", self.identity);
        let shown = redact_url(&url);
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.username,
                "domain": {"name": self.user_domain_name},
                "password": self.password.expose(),
            }}},
            "scope": {"project": {"name": self.project_name, "domain": {"name": self.project_domain_name}}},
        }});
        self.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.agent.post(&url).header("Accept", "application/json").send_json(&body);
        let (status, headers, answer) = self.answer(result, "Keystone", "POST", &shown)?;
        let received = (self.clock)();
        let received_wall = SystemTime::now();
        if status == 401 {
            let why = http_error("Keystone", "POST", &shown, status, &answer);
            return Err(self.scrub(&format!(
                "{why} (check nova.username {:?} of nova.user_domain_name {:?}, nova.password, and \
                 nova.project_name {:?} of nova.project_domain_name {:?})",
                self.username, self.user_domain_name, self.project_name, self.project_domain_name
            )));
        }
        if !(200..300).contains(&status) {
            return Err(self.scrub(&http_error("Keystone", "POST", &shown, status, &answer)));
        }
        let value = headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("Keystone POST {shown} answered HTTP {status} without an X-Subject-Token header"))?;
        let value = Secret::new(value);
        let answer: Value = serde_json::from_slice(&answer)
            .map_err(|e| format!("bad JSON from Keystone POST {shown}: {e}"))?;
        let token = answer.get("token").ok_or_else(|| format!("Keystone POST {shown} answered no \"token\""))?;
        let time = |key: &str| token.get(key).and_then(Value::as_str).and_then(parse_time);
        let expires = time("expires_at")
            .ok_or_else(|| format!("Keystone POST {shown}: the token has no valid expires_at"))?;
        // Issued when Keystone says so (its own clock, as expires_at: no skew), else when received.
        let issued = time("issued_at").filter(|t| *t <= expires).unwrap_or(received_wall);
        let lifetime = expires.duration_since(issued).unwrap_or(Duration::ZERO);
        let catalog = token.get("catalog").ok_or_else(|| {
            format!(
                "Keystone POST {shown}: the token has no catalog (is nova.project_name {:?} a project of \
                 nova.project_domain_name {:?} on which the user has a role?)",
                self.project_name, self.project_domain_name
            )
        })?;
        let compute = compute_endpoint(catalog, &self.interface, &self.region_name)
            .map_err(|why| format!("Keystone POST {shown}: {why}"))?;
        let serial = self.tokens_issued.fetch_add(1, Ordering::Relaxed) + 1;
        log::debug!(
            "nova: Keystone token #{serial} for {}@{}, compute endpoint {}, used for {} s",
            self.username,
            self.project_name,
            redact_url(&compute),
            reuse_for(lifetime).as_secs()
        );
        Ok(Token { value, compute, renew_at: received + reuse_for(lifetime), serial })
    }

    /// Status, headers and body of one answer, or why there is none.
    fn answer(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        service: &str,
        method: &str,
        url: &str,
    ) -> Result<(u16, ureq::http::HeaderMap, Vec<u8>), String> {
        let mut response = result.map_err(|e| self.describe(&e, service, method, url))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| self.describe(&e, service, method, url))?;
        Ok((status, headers, body))
    }

    /// A reason for a transport error, naming the service and the URL (without userinfo).
    fn describe(&self, e: &ureq::Error, service: &str, method: &str, url: &str) -> String {
        let within = || format!("no answer from {service} {method} {url} within {} ms", self.timeout.as_millis());
        let text = match e {
            ureq::Error::Timeout(_) => within(),
            ureq::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
                within()
            }
            ureq::Error::Io(io) => format!("{service} unreachable ({method} {url}): {io}"),
            ureq::Error::HostNotFound => format!("{service} host not found ({method} {url})"),
            ureq::Error::ConnectionFailed => format!("connection to {service} failed ({method} {url})"),
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => format!("bad {service} URL {url}"),
            ureq::Error::BodyExceedsLimit(_) => format!("{service} {method} {url}: answer larger than {MAX_BODY} bytes"),
            other => format!("{service} {method} {url}: {other}"),
        };
        self.scrub(&text)
    }

    /// `text` without the password or the current token, whatever quoted it.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        if !self.password.is_empty() {
            text = text.replace(self.password.expose(), "***");
        }
        if let Ok(slot) = self.token.try_lock() {
            if let Some(token) = slot.as_ref().filter(|t| !t.value.is_empty()) {
                text = text.replace(token.value.expose(), "***");
            }
        }
        text
    }
}


/// The requests of one call, with at most one token renewal after a 401.
struct Call<'a> {
    nova: &'a Nova,
    token: Arc<Token>,
    renewed: bool,
}

impl Call<'_> {
    /// `GET <compute><path_and_query>`: status, body and the URL as shown in messages. A 401
    /// renews the token once per call and sends the request again.
    fn get(&mut self, path_and_query: &str) -> Result<(u16, Vec<u8>, String), String> {
        loop {
            let url = format!("{}{path_and_query}", self.token.compute);
            let shown = redact_url(&url);
            self.nova.requests.fetch_add(1, Ordering::Relaxed);
            let result = self
                .nova
                .agent
                .get(&url)
                .header("X-Auth-Token", self.token.value.expose())
                .header("Accept", "application/json")
                .header("OpenStack-API-Version", "compute 2.1")
                .call();
            let (status, _, body) = self.nova.answer(result, "Nova", "GET", &shown)?;
            if status == 401 {
                if self.renewed {
                    let why = http_error("Nova", "GET", &shown, status, &body);
                    return Err(self.nova.scrub(&format!("{why} (refused again with a new token)")));
                }
                self.renewed = true;
                self.token = self.nova.token(Some(self.token.serial))?;
                continue;
            }
            return Ok((status, body, shown));
        }
    }
}

#[derive(Deserialize)]
struct Page {
    servers: Vec<Listed>,
    #[serde(default)]
    servers_links: Vec<Link>,
}

#[derive(Deserialize)]
struct Listed {
    id: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    rel: String,
    #[serde(default)]
    href: String,
}

#[derive(Deserialize)]
struct One {
    server: Listed,
}

/// The status rule: `ACTIVE` → Up, any other status → Down.
fn status_probe(status: &str) -> Probe {
    if status.eq_ignore_ascii_case("ACTIVE") {
        Probe::Up
    } else {
        Probe::Down
    }
}

fn no_answer(id: &str, why: &str) -> Probe {
    Probe::NoAnswer(format!("server {id}: {why}"))
}

/// `HTTP 403 from Nova GET <url>: <the message of its error body>`.
fn http_error(service: &str, method: &str, url: &str, status: u16, body: &[u8]) -> String {
    match error_message(body) {
        Some(message) => format!("HTTP {status} from {service} {method} {url}: {message}"),
        None => format!("HTTP {status} from {service} {method} {url}"),
    }
}

/// The message of an OpenStack error body: Keystone's `{"error": {"message"}}`, Nova's
/// `{"itemNotFound": {"message"}}` (any single key), shortened.
fn error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let message = value.as_object()?.values().find_map(|v| v.get("message")?.as_str())?.trim();
    if message.is_empty() {
        return None;
    }
    let mut end = message.len().min(MAX_QUOTE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Some(if end < message.len() { format!("{}…", &message[..end]) } else { message.to_string() })
}

/// Keystone's v3 root from a clouds.yaml `auth_url`, which may be written with or without its
/// `/v3` suffix and a trailing slash: `http://k:5000/` → `http://k:5000/v3`.
pub fn identity_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        base.to_string()
    } else {
        format!("{base}/v3")
    }
}

/// How long a token with this lifetime is used: until `RENEW_MARGIN` before it expires, or
/// until half its lifetime is left if that is shorter (a 1 h token: 58 min; a 3 s one: 1.5 s).
pub fn reuse_for(lifetime: Duration) -> Duration {
    lifetime - RENEW_MARGIN.min(lifetime / 2)
}

/// The URL of the compute endpoint of a Keystone v3 catalog: service type `compute`, endpoint
/// of this interface, in this region (`region_id` or `region`) unless `region` is empty.
pub fn compute_endpoint(catalog: &Value, interface: &str, region: &str) -> Result<String, String> {
    let services = catalog.as_array().ok_or("the token's catalog is not a list")?;
    let computes: Vec<&Value> =
        services.iter().filter(|s| s.get("type").and_then(Value::as_str) == Some("compute")).collect();
    if computes.is_empty() {
        let types: Vec<&str> = services.iter().filter_map(|s| s.get("type")?.as_str()).collect();
        return Err(format!("the token's catalog has no compute service (it has: {})", list_or_none(&types)));
    }
    let mut seen = Vec::new();
    for endpoint in computes.iter().filter_map(|s| s.get("endpoints")?.as_array()).flatten() {
        let text = |key: &str| endpoint.get(key).and_then(Value::as_str).unwrap_or("");
        let (this_interface, url) = (text("interface"), text("url"));
        let regions = [text("region_id"), text("region")];
        seen.push(format!("{this_interface} {}", if regions[0].is_empty() { regions[1] } else { regions[0] }));
        let in_region = region.is_empty() || regions.contains(&region);
        if this_interface == interface && in_region && !url.is_empty() {
            return Ok(url.trim_end_matches('/').to_string());
        }
    }
    let where_ = if region.is_empty() { String::new() } else { format!(" in region {region:?} (nova.region_name)") };
    let seen: Vec<&str> = seen.iter().map(|s| s.trim()).collect();
    Err(format!(
        "the compute service of the token's catalog has no {interface:?} endpoint (nova.interface){where_}; it has: {}",
        list_or_none(&seen)
    ))
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// An RFC 3339 time as Keystone writes it (`2026-12-02T10:00:00.000000Z`; an offset such as
/// `+01:00` or none, taken as UTC, are accepted too).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let zone_at = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60 && second <= 60;
    if !valid || !fraction.bytes().all(|b| b.is_ascii_digit()) || hour < 0 || minute < 0 || second < 0 {
        return None;
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let nanos = format!("{fraction:0<9}").get(..9)?.parse::<u32>().ok()?;
    let since = Duration::new(u64::try_from(seconds).ok()?, nanos);
    UNIX_EPOCH.checked_add(since)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Percent-encodes everything but RFC 3986's unreserved characters (a path segment or a query value).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The decoded value of `key` in the query of `url`.
fn query_param(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v)).filter(|v| !v.is_empty())
    })
}

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
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL without its userinfo (`http://u:p@h/x` → `http://h/x`), fit for messages.
fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..authority_end],
        None => &rest[..authority_end],
    };
    format!("{}{host}{}", &url[..start], &rest[authority_end..])
}

/// `nova_vm`: every server of the configured cloud in one unit, answered by ONE paged
/// listing per interval.
pub static NOVA: super::Prober = super::Prober {
    label: "nova",
    unit: Some(|o, _| Ok((super::UnitKey::new(&NOVA, String::new(), String::new(), String::new()), o.text("server_id")))),
    poll: |c, _, ids| c.nova.servers(ids),
    probe: |c, o| c.nova.server_detailed(&o.text("server_id")),
    bulk: 1,
    device: None,
    options: "--config FILE (nova:)",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auth_url: &str) -> config::Nova {
        config::Nova {
            auth_url: auth_url.into(),
            username: "esi".into(),
            password: Secret::new("s3cret-pw"),
            project_name: "admin".into(),
            ..config::Nova::default()
        }
    }

    #[test]
    fn auth_url_gets_its_v3_suffix_once() {
        for url in ["http://k:5000", "http://k:5000/", "http://k:5000/v3", "http://k:5000/v3/", "http://k:5000//"] {
            assert_eq!(identity_url(url), "http://k:5000/v3", "{url}");
        }
        assert_eq!(identity_url("http://k/identity/"), "http://k/identity/v3");
        assert_eq!(identity_url("http://k/identity/v3"), "http://k/identity/v3");
        assert_eq!(Nova::new(&config("http://k:5000/")).unwrap().identity(), "http://k:5000/v3");
    }

    #[test]
    fn new_refuses_what_it_cannot_use() {
        let unconfigured = Nova::new(&config::Nova::default()).unwrap();
        let probes = unconfigured.servers(&["a".into()]);
        assert_eq!(probes, vec![Probe::NoAnswer("server a: nova.auth_url is not configured".into())]);
        assert_eq!(unconfigured.server("a"), Probe::NoAnswer("server a: nova.auth_url is not configured".into()));
        assert_eq!(unconfigured.requests(), 0);
        assert!(Nova::new(&config("https://u:pw@k:5000/v3")).is_ok(), "https:// with the Mozilla roots");
        let e = Nova::new(&config::Nova { ca_file: "/nonexistent/ca.pem".into(), ..config("http://k") }).unwrap_err();
        assert!(e.starts_with("nova.ca_file /nonexistent/ca.pem: "), "{e}");
        let e = Nova::new(&config("k:5000")).unwrap_err();
        assert!(e.starts_with("nova.auth_url k:5000: not an http(s)"), "{e}");
    }

    #[test]
    fn reuse_rule() {
        let s = Duration::from_secs;
        assert_eq!(reuse_for(s(3600)), s(3480));
        assert_eq!(reuse_for(s(240)), s(120));
        assert_eq!(reuse_for(s(200)), s(100));
        assert_eq!(reuse_for(s(3)), Duration::from_millis(1500));
        assert_eq!(reuse_for(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn keystone_times_are_parsed() {
        let at = |s: &str| parse_time(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(at("2026-12-02T10:00:00.000000Z"), Some(1_796_205_600.0));
        assert_eq!(at("2026-12-02T10:00:00.250000Z"), Some(1_796_205_600.25));
        assert_eq!(at("2026-12-02T11:00:00+01:00"), Some(1_796_205_600.0));
        assert_eq!(at("2026-12-02T10:00:00"), Some(1_796_205_600.0));
        assert_eq!(at("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        for bad in ["", "tomorrow", "2026-13-02T10:00:00Z", "2026-12-02T25:00:00Z", "2026-12-02T10:00Z", "1969-12-31T23:59:59Z"]
        {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    fn catalog() -> Value {
        let endpoint = |interface: &str, region: &str, url: &str| {
            json!({"id": "e", "interface": interface, "region": region, "region_id": region, "url": url})
        };
        json!([
            {"type": "identity", "name": "keystone", "endpoints": [endpoint("public", "RegionOne", "http://k:5000")]},
            {"type": "compute", "name": "nova", "endpoints": [
                endpoint("internal", "RegionOne", "http://nova-int:8774/v2.1"),
                endpoint("public", "RegionOne", "http://nova:8774/v2.1/"),
                endpoint("public", "RegionTwo", "http://nova2:8774/v2.1"),
                {"interface": "admin", "region": "RegionThree", "url": "http://nova3:8774/v2.1"},
            ]},
        ])
    }

    #[test]
    fn compute_endpoint_is_chosen_by_interface_and_region() {
        let c = catalog();
        assert_eq!(compute_endpoint(&c, "public", "").unwrap(), "http://nova:8774/v2.1");
        assert_eq!(compute_endpoint(&c, "internal", "").unwrap(), "http://nova-int:8774/v2.1");
        assert_eq!(compute_endpoint(&c, "public", "RegionTwo").unwrap(), "http://nova2:8774/v2.1");
        assert_eq!(compute_endpoint(&c, "admin", "RegionThree").unwrap(), "http://nova3:8774/v2.1");
        let e = compute_endpoint(&c, "internal", "RegionTwo").unwrap_err();
        assert!(e.contains("no \"internal\" endpoint (nova.interface) in region \"RegionTwo\" (nova.region_name)"), "{e}");
        assert!(e.contains("it has: internal RegionOne, public RegionOne, public RegionTwo, admin RegionThree"), "{e}");
        let e = compute_endpoint(&json!([{"type": "identity", "endpoints": []}]), "public", "").unwrap_err();
        assert_eq!(e, "the token's catalog has no compute service (it has: identity)");
        assert!(compute_endpoint(&json!({}), "public", "").is_err());
        assert!(compute_endpoint(&json!([{"type": "compute", "endpoints": 7}]), "public", "").unwrap_err().contains("none"));
    }

    #[test]
    fn tokens_are_reused_until_their_renewal_time() {
        let base = Instant::now();
        let nova = Nova::new(&config("http://127.0.0.1:1")).unwrap();
        let token = Arc::new(Token {
            value: Secret::new("gAAAAAtoken"),
            compute: "http://nova/v2.1".into(),
            renew_at: base + Duration::from_secs(10),
            serial: 1,
        });
        *nova.slot() = Some(token);
        let nova = nova.with_clock(move || base + Duration::from_secs(9));
        assert_eq!(nova.token(None).unwrap().serial, 1);
        // Refused by Nova: renewed (here: Keystone unreachable, so an error naming it).
        let e = nova.token(Some(1)).err().unwrap();
        assert!(e.contains("Keystone") && e.contains("POST http://127.0.0.1:1/v3/auth/tokens"), "{e}");
        assert!(nova.slot().is_none());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_messages() {
        let nova = Nova::new(&config("http://u:pw@127.0.0.1:1/v3")).unwrap();
        *nova.slot() = Some(Arc::new(Token {
            value: Secret::new("gAAAAAtoken"),
            compute: "http://nova/v2.1".into(),
            renew_at: Instant::now(),
            serial: 1,
        }));
        let text = format!("{nova:?}");
        assert!(!text.contains("s3cret-pw") && !text.contains("gAAAAAtoken") && !text.contains("pw@"), "{text}");
        assert!(text.contains("password: \"<redacted>\"") && text.contains("<redacted>, compute http://nova/v2.1"));
        assert_eq!(nova.scrub("a s3cret-pw b gAAAAAtoken"), "a *** b ***");
        let probes = nova.servers(&["a".into(), "b".into()]);
        assert_eq!(probes.len(), 2);
        for p in probes {
            let Probe::NoAnswer(why) = p else { panic!("{p:?}") };
            assert!(why.contains("127.0.0.1:1/v3/auth/tokens") && !why.contains("pw"), "{why}");
        }
        assert_eq!(nova.tokens_issued(), 0);
        assert_eq!(nova.requests(), 1);
    }

    #[test]
    fn helpers() {
        assert_eq!(status_probe("ACTIVE"), Probe::Up);
        assert_eq!(status_probe("SHUTOFF"), Probe::Down);
        assert_eq!(status_probe("ERROR"), Probe::Down);
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(query_param("http://n/v2.1/servers/detail?limit=2&marker=a%2Db#x", "marker").as_deref(), Some("a-b"));
        assert_eq!(query_param("http://n/servers/detail?limit=2", "marker"), None);
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(redact_url("http://u:p@h:1/x?token=1"), "http://h:1/x?token=1");
        let body = br#"{"forbidden": {"code": 403, "message": "Policy doesn't allow it."}}"#;
        assert_eq!(http_error("Nova", "GET", "u", 403, body), "HTTP 403 from Nova GET u: Policy doesn't allow it.");
        assert_eq!(http_error("Nova", "GET", "u", 502, b"<html>"), "HTTP 502 from Nova GET u");
        let long = format!(r#"{{"error": {{"message": "{}"}}}}"#, "é".repeat(400));
        assert!(error_message(long.as_bytes()).unwrap().ends_with('…'));
    }

    #[test]
    fn nova_is_shareable() {
        fn assert_traits<T: Send + Sync>() {}
        assert_traits::<Nova>();
    }
}
