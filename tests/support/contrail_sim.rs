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
//! * `GET /analytics/uve-stream?tablefilt=virtual-machine-interface,…` as opserver serves it
//!   (contrail-analytics `opserver.py` `_serve_streams`, `partition_handler.py` `sse_pack`,
//!   `UveStreamer`): `200`, `text/event-stream`, `Cache-Control: no-cache`, chunked, one event per
//!   chunk, no keepalives. `event: init`/`data: null`, then an `event: update` per struct of every
//!   UVE of the tables asked for (all without `tablefilt`; `virtual-machine-interface` and
//!   `virtual-network` map to `ObjectVMITable`/`ObjectVNTable`, other names are taken as table
//!   names), then one per struct that changes: `data: {"key": "ObjectVMITable:<fq_name>", "type":
//!   "<struct>", "value": {…}}` in `json.dumps` spacing, `"value": null` for a removed struct,
//!   `{"key": …, "type": null}` for a removed UVE. The stream ends when the client sends anything
//!   or hangs up; tests cut every stream, or turn the endpoint off (connections to it close at
//!   once, as to a server going down).
//! * anything else → 404.
//!
//! It answers over `http_sim.rs` (plain HTTP/1.1 on `std::net`, one thread per connection, with
//! keep-alive (ureq pools connections), `Content-Length` and chunked request bodies up to 16 MiB).
//! Errors are `text/plain` `"<status> <reason>\n"`. Tests flip a VMI's `l2_active`, add or remove
//! objects, make every answer fail with an HTTP status or arrive late, and count the requests
//! served. Whatever a client sends, the server answers 4xx or closes the connection; it never
//! panics on input.
//!
//! The file needs only std, serde_json, the crate's `records::python_dumps` (the stream's JSON is
//! Python's) and its sibling `http_sim.rs` (which it includes itself), so
//! that integration tests can include it with `#[path = "support/contrail_sim.rs"] mod contrail_sim;`
//! and the demo example with `#[path = "../tests/support/contrail_sim.rs"] mod contrail_sim;`.

#![allow(dead_code)]

// Its own copy, so that this file can be included alone; where `nova_sim.rs` is included too, the
// server is compiled twice.
#[path = "http_sim.rs"]
#[allow(clippy::duplicate_mod)]
mod http_sim;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use http_sim::{percent_decode, query_params, reason, Handler, HttpSim, Request, Response, Server};
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
/// The tables of the UVE keys on the stream (opserver's `UVE_MAP` of the two types).
const VMI_TABLE: &str = "ObjectVMITable";
const VN_TABLE: &str = "ObjectVNTable";
const STREAM_PATH: &str = "/analytics/uve-stream";

const MAX_BODY: usize = 16 * 1024 * 1024;

/// A running simulator; dropping it stops the server.
pub struct ContrailSim {
    http: HttpSim<Shared>,
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    vmis: BTreeMap<String, Value>,
    vns: BTreeMap<String, Value>,
    fail: Option<u16>,
    delay: Duration,
    /// The open streams.
    streams: Vec<Subscriber>,
    stream_enabled: bool,
    stream_connections: u64,
}

/// One open stream: the tables it asked for (`None`: all) and its connection's chunks.
struct Subscriber {
    tables: Option<Vec<String>>,
    chunks: Sender<Vec<u8>>,
}

impl Subscriber {
    fn wants(&self, table: &str) -> bool {
        self.tables.as_ref().map_or(true, |tables| tables.iter().any(|t| t == table))
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ContrailSim {
    /// Starts a simulator on a free port of 127.0.0.1.
    pub fn start() -> ContrailSim {
        ContrailSim::start_on("127.0.0.1:0").expect("contrail simulator: bind 127.0.0.1:0")
    }

    /// Starts a simulator listening on `addr` (e.g. `127.0.0.1:8081`).
    pub fn start_on(addr: &str) -> io::Result<ContrailSim> {
        let shared = Shared { state: Mutex::new(State::with_samples()) };
        Ok(ContrailSim { http: HttpSim::start(addr, "contrail-sim", MAX_BODY, shared)? })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.http.handler().state()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.http.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// Sets `UveVMInterfaceAgent.l2_active` (and `active`) of a VMI, creating its UVE
    /// from the recorded sample if the name is unknown.
    pub fn set_l2_active(&self, fq_name: &str, up: bool) {
        let mut state = self.state();
        let before = state.vmis.get(fq_name).cloned();
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
        let after = state.vmis.get(fq_name).cloned();
        state.publish_diff(VMI_TABLE, fq_name, before.as_ref(), after.as_ref());
    }

    /// Makes a VN known (its UVE is the recorded sample, renamed); keeps an existing one.
    pub fn add_vn(&self, fq_name: &str) {
        let mut state = self.state();
        if !state.vns.contains_key(fq_name) {
            let uve = new_vn(fq_name);
            state.publish_diff(VN_TABLE, fq_name, None, Some(&uve));
            state.vns.insert(fq_name.to_string(), uve);
        }
    }

    /// Forgets a VMI or VN: it answers `{}` from now on, and streams say the UVE went away.
    pub fn remove(&self, fq_name: &str) {
        let mut state = self.state();
        if let Some(uve) = state.vmis.remove(fq_name) {
            state.publish_diff(VMI_TABLE, fq_name, Some(&uve), None);
        }
        if let Some(uve) = state.vns.remove(fq_name) {
            state.publish_diff(VN_TABLE, fq_name, Some(&uve), None);
        }
    }

    /// Closes every open stream connection at once (no last chunk, as a cut), so that clients
    /// must connect again.
    pub fn cut_streams(&self) {
        self.state().streams.clear();
    }

    /// How many stream requests were answered with a stream.
    pub fn stream_connections(&self) -> u64 {
        self.state().stream_connections
    }

    /// Turns the stream endpoint off (open streams are cut, new connections to it close at once
    /// without an answer) or on again.
    pub fn set_stream_enabled(&self, enabled: bool) {
        let mut state = self.state();
        state.stream_enabled = enabled;
        if !enabled {
            state.streams.clear();
        }
    }

    /// Answers every request with this HTTP status (`None`: normal service again).
    pub fn set_fail(&self, status: Option<u16>) {
        self.state().fail = status;
    }

    /// Delays every answer by `d` (zero: no delay).
    pub fn set_delay(&self, d: Duration) {
        self.state().delay = d;
    }

    /// How many requests were received and answered (or are being answered).
    pub fn requests(&self) -> u64 {
        self.http.requests()
    }

    /// How many TCP connections were accepted (fewer than requests when kept alive).
    pub fn connections(&self) -> u64 {
        self.http.connections()
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
            streams: Vec::new(),
            stream_enabled: true,
            stream_connections: 0,
        }
    }

    /// Tells the streams what changed between two versions of a UVE (`None`: absent): each struct
    /// added or changed, each struct removed, or the UVE removed, as alarmgen publishes them.
    fn publish_diff(&mut self, table: &str, name: &str, before: Option<&Value>, after: Option<&Value>) {
        let structs = |uve: Option<&Value>| uve.and_then(Value::as_object).cloned().unwrap_or_default();
        let (before, after) = (structs(before), structs(after));
        if after.is_empty() {
            if !before.is_empty() {
                self.publish(table, sse_update(table, name, None));
            }
            return;
        }
        for (struct_name, value) in &after {
            if before.get(struct_name) != Some(value) {
                self.publish(table, sse_update(table, name, Some((struct_name, value))));
            }
        }
        for struct_name in before.keys().filter(|s| !after.contains_key(*s)) {
            self.publish(table, sse_update(table, name, Some((struct_name, &Value::Null))));
        }
    }

    /// Sends a chunk to every stream of `table`, forgetting those whose connection ended.
    fn publish(&mut self, table: &str, chunk: Vec<u8>) {
        self.streams.retain(|s| !s.wants(table) || s.chunks.send(chunk.clone()).is_ok());
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
// The analytics API

impl Handler for Shared {
    fn answer(&self, request: &Request, server: &Server) -> Option<Response> {
        let (fail, delay) = {
            let state = self.state();
            (state.fail, state.delay)
        };
        if !delay.is_zero() && !server.sleep(delay) {
            return None;
        }
        if fail.is_none() && request.target.split('?').next() == Some(STREAM_PATH) {
            return uve_stream(self, request);
        }
        Some(match fail {
            Some(status) => error_body(status),
            None => route(self, request),
        })
    }

    fn unreadable(&self, status: u16) -> Response {
        error_body(status)
    }
}

fn json_body(status: u16, value: &Value) -> Response {
    Response::new(status, "application/json; charset=UTF-8", serde_json::to_vec(value).unwrap_or_default())
}

fn error_body(status: u16) -> Response {
    Response::new(status, "text/plain; charset=UTF-8", format!("{status} {}\n", reason(status)).into_bytes())
}

fn route(shared: &Shared, request: &Request) -> Response {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    let Some(rest) = path.strip_prefix("/analytics/uves/") else {
        return error_body(404);
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
            json_body(200, &uve)
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
                        "href": format!("http://{}/analytics/uves/{uve_type}/{name}?flat", request.host),
                        "name": name,
                    })
                })
                .collect();
            json_body(200, &Value::Array(list))
        }
        ("POST", VMI_TYPE | VN_TYPE, None) => {
            match bulk(state.table(kind), &request.body, &cfilt) {
                Some(answer) => json_body(200, &answer),
                None => error_body(400),
            }
        }
        _ => error_body(404),
    }
}

/// `GET /analytics/uve-stream`: the stream's head and the current state of the tables asked for;
/// the changes follow through [`State::publish`]. `None` (the connection closes) when turned off.
fn uve_stream(shared: &Shared, request: &Request) -> Option<Response> {
    if request.method != "GET" {
        return Some(error_body(405));
    }
    let query = request.target.split_once('?').map_or("", |(_, query)| query);
    // As opserver's `_uve_filter_set`: the last `tablefilt`, split on commas, type names mapped to
    // their tables; none or empty: every table.
    let tables = query_params(query)
        .into_iter()
        .rev()
        .find(|(key, _)| key == "tablefilt")
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
        .map(|value| {
            value
                .split(',')
                .map(|t| match t {
                    VMI_TYPE => VMI_TABLE.to_string(),
                    VN_TYPE => VN_TABLE.to_string(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
        });
    let mut state = shared.state();
    if !state.stream_enabled {
        return None;
    }
    let (chunks, receiver) = mpsc::channel();
    let subscriber = Subscriber { tables, chunks };
    let _ = subscriber.chunks.send(sse_event("init", "null"));
    for (table, uves) in [(VMI_TABLE, &state.vmis), (VN_TABLE, &state.vns)] {
        if !subscriber.wants(table) {
            continue;
        }
        for (name, uve) in uves {
            for (struct_name, value) in uve.as_object().into_iter().flatten() {
                let _ = subscriber.chunks.send(sse_update(table, name, Some((struct_name, value))));
            }
        }
    }
    state.streams.push(subscriber);
    state.stream_connections += 1;
    let mut response = Response::stream(200, "text/event-stream", receiver);
    response.headers.push(("Cache-Control".into(), "no-cache".into()));
    Some(response)
}

/// One event as opserver's `sse_pack` writes it.
fn sse_event(event: &str, data: &str) -> Vec<u8> {
    format!("event: {event}\ndata: {data}\n\n").into_bytes()
}

/// An `update` event: a struct's new value (`Value::Null`: removed), or (`None`) the UVE removed.
fn sse_update(table: &str, name: &str, change: Option<(&String, &Value)>) -> Vec<u8> {
    let key = format!("{table}:{name}");
    let data = match change {
        Some((struct_name, value)) => json!({ "key": key, "type": struct_name, "value": value }),
        None => json!({ "key": key, "type": null }),
    };
    sse_event("update", &esi_monitor::records::python_dumps(&data))
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
    query_params(query)
        .into_iter()
        .filter(|(key, _)| key == "cfilt")
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}
