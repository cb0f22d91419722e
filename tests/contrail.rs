//! The Contrail probes (`esi_monitor::plugins::contrail`) against the analytics simulator,
//! and the simulator's own fidelity to the recorded API shapes in `tests/fixtures/contrail/`.
//!
//! These tests exist because no real analytics server runs here: the probes are only as
//! trustworthy as the simulator, so both sides are checked against the recorded samples.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use esi_monitor::plugins::contrail::Contrail;
use esi_monitor::plugins::uve_stream::{follow, L2Change, StreamEvent};
use esi_monitor::plugins::Probe;
use serde_json::{json, Value};
use support::contrail_sim::{ContrailSim, VMI_SAMPLE_NAME, VN_SAMPLE_NAME};
use support::wait_for;

const TIMEOUT: Duration = Duration::from_secs(5);
const BULK_SAMPLE_NAMES: [&str; 2] = [
    "default-domain:admin:c4045ee4-a2cf-4ca7-854b-f695e0b5be53",
    "default-domain:admin:e718d077-f828-4c67-955e-e11e9c664e27",
];

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is valid JSON")
}

fn no_answer(probe: &Probe) -> &str {
    match probe {
        Probe::NoAnswer(why) => why,
        other => panic!("expected NoAnswer, got {other:?}"),
    }
}

/// A raw GET through a plain agent: the simulator's answer as status + JSON.
fn get(sim: &ContrailSim, path_and_query: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .get(format!("{}{path_and_query}", sim.url()))
        .call()
        .expect("simulator answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn post(sim: &ContrailSim, path: &str, body: &Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .post(format!("{}{path}", sim.url()))
        .send_json(body)
        .expect("simulator answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Sends raw bytes, returns the raw answer (read until the server closes or 2 s pass).
fn raw(sim: &ContrailSim, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(sim.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    stream.write_all(request).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

// ----------------------------------------------------------------------------- probe_vmi

#[test]
fn vmi_follows_l2_active() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    let name = "default-domain:esi:vmi-1";
    sim.set_l2_active(name, true);
    assert_eq!(contrail.probe_vmi(name), Probe::Up);
    sim.set_l2_active(name, false);
    assert_eq!(contrail.probe_vmi(name), Probe::Down);
    sim.set_l2_active(name, true);
    assert_eq!(contrail.probe_vmi(name), Probe::Up);
}

#[test]
fn recorded_vmis_answer_as_recorded() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&format!("{}/", sim.url()), TIMEOUT);
    assert_eq!(contrail.probe_vmi(VMI_SAMPLE_NAME), Probe::Up);
    for name in BULK_SAMPLE_NAMES {
        assert_eq!(contrail.probe_vmi(name), Probe::Up);
    }
}

#[test]
fn unknown_vmi_is_no_answer() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    let probe = contrail.probe_vmi("default-domain:esi:nobody");
    assert!(
        no_answer(&probe).contains("default-domain:esi:nobody"),
        "{probe:?}"
    );
    sim.set_l2_active("default-domain:esi:gone", true);
    sim.remove("default-domain:esi:gone");
    no_answer(&contrail.probe_vmi("default-domain:esi:gone"));
}

#[test]
fn http_error_is_no_answer() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    sim.set_l2_active("default-domain:esi:vmi-1", true);
    sim.set_fail(Some(500));
    let probe = contrail.probe_vmi("default-domain:esi:vmi-1");
    let why = no_answer(&probe);
    assert!(
        why.contains("HTTP 500") && why.contains("default-domain:esi:vmi-1"),
        "{why}"
    );
    let probe = contrail.probe_vn(VN_SAMPLE_NAME);
    assert!(no_answer(&probe).contains("HTTP 500"));
    sim.set_fail(Some(404));
    assert!(no_answer(&contrail.probe_vmi("default-domain:esi:vmi-1")).contains("HTTP 404"));
    // The same connection serves normally again afterwards.
    sim.set_fail(None);
    assert_eq!(contrail.probe_vmi("default-domain:esi:vmi-1"), Probe::Up);
}

#[test]
fn slow_answer_is_no_answer() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), Duration::from_millis(200));
    sim.set_l2_active("default-domain:esi:vmi-1", true);
    sim.set_delay(Duration::from_secs(30));
    // Returning at all (instead of after 30 s) is the point; no wall-clock assertion.
    let probe = contrail.probe_vmi("default-domain:esi:vmi-1");
    assert!(no_answer(&probe).contains("within 200 ms"), "{probe:?}");
    let probes = contrail.probe_vmis(&["default-domain:esi:vmi-1".to_string()]);
    no_answer(&probes[0]);
    sim.set_delay(Duration::ZERO);
    assert_eq!(contrail.probe_vmi("default-domain:esi:vmi-1"), Probe::Up);
}

#[test]
fn unreachable_analytics_is_no_answer_without_credentials() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let contrail = Contrail::new(&format!("http://admin:s3cret@127.0.0.1:{port}"), TIMEOUT);
    for probe in [
        contrail.probe_vmi("default-domain:esi:vmi-1"),
        contrail.probe_vn("default-domain:esi:vn-1"),
    ]
    .iter()
    .chain(
        contrail
            .probe_vmis(&["default-domain:esi:vmi-1".into()])
            .iter(),
    ) {
        assert!(!no_answer(probe).contains("s3cret"), "{probe:?}");
    }
    assert!(!format!("{contrail:?}").contains("s3cret"));
}

#[test]
fn names_are_percent_encoded() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    let odd = "default-domain:my project:a/b?c#d%e";
    sim.set_l2_active(odd, true);
    assert_eq!(contrail.probe_vmi(odd), Probe::Up);
    sim.add_vn(odd);
    assert_eq!(contrail.probe_vn(odd), Probe::Up);
    // The unencoded prefix must not be confused with the full name.
    sim.set_l2_active("default-domain:my project:a", false);
    assert_eq!(contrail.probe_vmi(odd), Probe::Up);
}

// ------------------------------------------------------------------------------ probe_vn

#[test]
fn vn_is_up_while_known() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    assert_eq!(contrail.probe_vn(VN_SAMPLE_NAME), Probe::Up);
    assert_eq!(contrail.probe_vn("default-domain:esi:vn-1"), Probe::Down);
    sim.add_vn("default-domain:esi:vn-1");
    assert_eq!(contrail.probe_vn("default-domain:esi:vn-1"), Probe::Up);
    sim.remove("default-domain:esi:vn-1");
    assert_eq!(contrail.probe_vn("default-domain:esi:vn-1"), Probe::Down);
}

// ---------------------------------------------------------------------------- probe_vmis

#[test]
fn bulk_probe_is_one_request() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    sim.set_l2_active("default-domain:esi:up", true);
    sim.set_l2_active("default-domain:esi:down", false);
    let names: Vec<String> = [
        "default-domain:esi:down",
        "default-domain:esi:unknown",
        "default-domain:esi:up",
    ]
    .map(String::from)
    .to_vec();
    let before = sim.requests();
    let probes = contrail.probe_vmis(&names);
    assert_eq!(sim.requests(), before + 1);
    assert_eq!(probes.len(), 3);
    assert_eq!(probes[0], Probe::Down);
    let why = no_answer(&probes[1]);
    assert!(
        why.contains("default-domain:esi:unknown") && why.contains("not known to analytics"),
        "{why}"
    );
    assert_eq!(probes[2], Probe::Up);

    let before = sim.requests();
    assert!(contrail.probe_vmis(&[]).is_empty());
    assert_eq!(sim.requests(), before, "no names, no request");
}

#[test]
fn bulk_probe_request_error_is_no_answer_for_all() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    sim.set_l2_active("default-domain:esi:up", true);
    sim.set_fail(Some(503));
    let probes = contrail.probe_vmis(&["default-domain:esi:up".into(), VMI_SAMPLE_NAME.into()]);
    assert_eq!(probes.len(), 2);
    for probe in &probes {
        assert!(no_answer(probe).contains("HTTP 503"), "{probe:?}");
    }
}

#[test]
fn bulk_probe_agrees_with_single_probes() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    let mut names: Vec<String> = (0..50)
        .map(|i| format!("default-domain:esi:vmi-{i}"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        if i % 7 != 3 {
            sim.set_l2_active(name, i % 2 == 0);
        }
    }
    names.push(VMI_SAMPLE_NAME.into());
    names.push(names[0].clone()); // a duplicate keeps its place
    let bulk = contrail.probe_vmis(&names);
    let single: Vec<Probe> = names.iter().map(|n| contrail.probe_vmi(n)).collect();
    assert_eq!(bulk.len(), names.len());
    for ((name, b), s) in names.iter().zip(&bulk).zip(&single) {
        match (b, s) {
            (Probe::NoAnswer(_), Probe::NoAnswer(_)) => {}
            _ => assert_eq!(b, s, "{name}"),
        }
    }
}

// ----------------------------------------------------------------------- connections

#[test]
fn keep_alive_survives_many_sequential_probes() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    for i in 0..100 {
        let up = i % 3 != 0;
        sim.set_l2_active("default-domain:esi:vmi-1", up);
        let expected = if up { Probe::Up } else { Probe::Down };
        assert_eq!(
            contrail.probe_vmi("default-domain:esi:vmi-1"),
            expected,
            "probe {i}"
        );
    }
    assert_eq!(sim.requests(), 100);
    assert!(
        sim.connections() <= 2,
        "connections were not reused: {}",
        sim.connections()
    );
}

#[test]
fn one_client_serves_many_threads() {
    let sim = ContrailSim::start();
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    for t in 0..8 {
        sim.set_l2_active(&format!("default-domain:esi:t{t}"), t % 2 == 0);
    }
    std::thread::scope(|scope| {
        for t in 0..8 {
            let contrail = &contrail;
            scope.spawn(move || {
                let expected = if t % 2 == 0 { Probe::Up } else { Probe::Down };
                for _ in 0..20 {
                    assert_eq!(
                        contrail.probe_vmi(&format!("default-domain:esi:t{t}")),
                        expected
                    );
                }
            });
        }
    });
    let clone = contrail.clone();
    std::thread::spawn(move || assert_eq!(clone.probe_vn(VN_SAMPLE_NAME), Probe::Up))
        .join()
        .expect("probe thread");
}

// ------------------------------------------------------------- the simulator's fidelity

#[test]
fn sim_get_serves_recorded_uves() {
    let sim = ContrailSim::start();
    let vmi = fixture(include_str!("fixtures/contrail/vmi-flat-wiki-R2.json"));
    let vn = fixture(include_str!(
        "fixtures/contrail/vn-flat-opserver-doc-R4.json"
    ));
    let vmi_path = format!("/analytics/uves/virtual-machine-interface/{VMI_SAMPLE_NAME}");
    assert_eq!(get(&sim, &format!("{vmi_path}?flat")), (200, vmi.clone()));
    assert_eq!(
        get(&sim, &vmi_path),
        (200, vmi),
        "?flat only needs to be present or not"
    );
    assert_eq!(
        get(
            &sim,
            &format!("/analytics/uves/virtual-network/{VN_SAMPLE_NAME}?flat")
        ),
        (200, vn)
    );
    let bulk = fixture(include_str!(
        "fixtures/contrail/vmi-bulk-post-webui-mock-R4.json"
    ));
    let (status, answer) = get(
        &sim,
        &format!(
            "/analytics/uves/virtual-machine-interface/{}?flat",
            BULK_SAMPLE_NAMES[1]
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(answer, bulk["value"][1]["value"]);
}

#[test]
fn sim_unknown_key_is_empty_object_not_404() {
    let sim = ContrailSim::start();
    let unknown = fixture(include_str!("fixtures/contrail/derived/unknown-key.json"));
    for path in [
        "/analytics/uves/virtual-machine-interface/default-domain:esi:nobody?flat",
        "/analytics/uves/virtual-machine-interface/default-domain:esi:nobody?flat&cfilt=UveVMInterfaceAgent:l2_active",
        "/analytics/uves/virtual-network/default-domain:esi:nobody?flat",
    ] {
        assert_eq!(get(&sim, path), (200, unknown.clone()), "{path}");
    }
    assert_eq!(get(&sim, "/analytics/uves/nothing-here/x?flat").0, 404);
    assert_eq!(get(&sim, "/analytics/other").0, 404);
    assert_eq!(get(&sim, "/").0, 404);
}

#[test]
fn sim_cfilt_restricts_the_answer() {
    let sim = ContrailSim::start();
    let up = fixture(include_str!(
        "fixtures/contrail/derived/vmi-cfilt-l2_active-up.json"
    ));
    let down = fixture(include_str!(
        "fixtures/contrail/derived/vmi-cfilt-l2_active-down.json"
    ));
    let path = format!("/analytics/uves/virtual-machine-interface/{VMI_SAMPLE_NAME}?flat&cfilt=UveVMInterfaceAgent:l2_active");
    assert_eq!(get(&sim, &path), (200, up));
    sim.set_l2_active(VMI_SAMPLE_NAME, false);
    assert_eq!(get(&sim, &path), (200, down));

    // A list of attributes, a whole struct, and a struct the UVE lacks.
    let (_, two) = get(
        &sim,
        &format!("/analytics/uves/virtual-machine-interface/{VMI_SAMPLE_NAME}?flat&cfilt=UveVMInterfaceAgent:l2_active,UveVMInterfaceAgent:vm_name"),
    );
    assert_eq!(
        two,
        json!({"UveVMInterfaceAgent": {"l2_active": false, "vm_name": "vn2vm-a7s37-3"}})
    );
    let vn = fixture(include_str!(
        "fixtures/contrail/vn-flat-opserver-doc-R4.json"
    ));
    let (_, config) = get(
        &sim,
        &format!(
            "/analytics/uves/virtual-network/{VN_SAMPLE_NAME}?flat&cfilt=UveVirtualNetworkConfig"
        ),
    );
    assert_eq!(
        config,
        json!({"UveVirtualNetworkConfig": vn["UveVirtualNetworkConfig"]})
    );
    let (_, none) = get(
        &sim,
        &format!(
            "/analytics/uves/virtual-network/{VN_SAMPLE_NAME}?flat&cfilt=UveVirtualNetworkAgent"
        ),
    );
    assert_eq!(none, json!({}));
}

#[test]
fn sim_bulk_post_answers_known_names_only() {
    let sim = ContrailSim::start();
    let path = "/analytics/uves/virtual-machine-interface";
    let expected = fixture(include_str!(
        "fixtures/contrail/derived/vmi-post-kfilt-cfilt.json"
    ));
    let body = json!({
        "kfilt": [VMI_SAMPLE_NAME, "default-domain:esi:nobody"],
        "cfilt": ["UveVMInterfaceAgent:l2_active", "UveVMInterfaceAgent:active"],
    });
    assert_eq!(post(&sim, path, &body), (200, expected));

    let nomatch = fixture(include_str!(
        "fixtures/contrail/derived/post-kfilt-nomatch.json"
    ));
    let body =
        json!({"kfilt": ["default-domain:esi:nobody"], "cfilt": ["UveVMInterfaceAgent:l2_active"]});
    assert_eq!(post(&sim, path, &body), (200, nomatch));

    // Without cfilt the whole UVEs come back, as in the recorded bulk answer.
    let recorded = fixture(include_str!(
        "fixtures/contrail/vmi-bulk-post-webui-mock-R4.json"
    ));
    assert_eq!(
        post(&sim, path, &json!({"kfilt": BULK_SAMPLE_NAMES})),
        (200, recorded)
    );

    assert_eq!(post(&sim, path, &json!({"kfilt": 7})).0, 400);
}

#[test]
fn sim_lists_objects_like_the_api() {
    let sim = ContrailSim::start();
    for name in BULK_SAMPLE_NAMES {
        sim.remove(name);
    }
    let recorded = include_str!("fixtures/contrail/derived/vmi-list.json")
        .replace("127.0.0.1:8081", &sim.addr().to_string());
    assert_eq!(
        get(&sim, "/analytics/uves/virtual-machine-interfaces"),
        (200, fixture(&recorded))
    );

    sim.add_vn("default-domain:esi:vn-1");
    let (status, list) = get(&sim, "/analytics/uves/virtual-networks");
    assert_eq!(status, 200);
    let recorded = fixture(include_str!(
        "fixtures/contrail/virtual-networks-list-opserver-doc-R4.json"
    ));
    let shape = |entry: &Value| -> Vec<String> {
        let mut keys: Vec<String> = entry.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        keys
    };
    let recorded_shape = shape(&recorded[0]);
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|e| {
            assert_eq!(shape(e), recorded_shape);
            let name = e["name"].as_str().expect("name");
            assert!(e["href"]
                .as_str()
                .expect("href")
                .ends_with(&format!("/analytics/uves/virtual-network/{name}?flat")));
            name
        })
        .collect();
    assert_eq!(
        names,
        ["default-domain:admin:vn1", "default-domain:esi:vn-1"]
    );
}

#[test]
fn sim_survives_bad_http() {
    let sim = ContrailSim::start();
    assert!(raw(&sim, b"GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(raw(
        &sim,
        b"POST /analytics/uves/virtual-machine-interface HTTP/1.1\r\nContent-Length: x\r\n\r\n"
    )
    .starts_with("HTTP/1.1 400 "));
    // Chunked request body, then HTTP/1.0 without keep-alive: answered and closed.
    let body = br#"{"kfilt": ["default-domain:admin:7322c95c-4a52-4496-b3a9-365de52e5dc7"], "cfilt": ["UveVMInterfaceAgent:l2_active"]}"#;
    let mut request = b"POST /analytics/uves/virtual-machine-interface HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw(&sim, &request);
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && answer.contains(r#""l2_active":true"#),
        "{answer}"
    );
    // A client that hangs up mid-request does no harm.
    drop(TcpStream::connect(sim.addr()).and_then(|mut s| s.write_all(b"GET /analytics/uves/virt")));
    let contrail = Contrail::new(&sim.url(), TIMEOUT);
    assert_eq!(contrail.probe_vmi(VMI_SAMPLE_NAME), Probe::Up);
}

// ---------------------------------------------------------------------------------------------
// The UVE stream (`esi_monitor::plugins::uve_stream::follow`) against the simulator's, and the
// simulator's stream against opserver's format.

/// Long enough for a reconnection's backoff (0.5 s, then 1 s) and a slow machine.
const STREAM_WAIT: Duration = Duration::from_secs(15);
/// What "promptly" means for stopping: `stop` is looked at every second.
const PROMPT: Duration = Duration::from_secs(3);

/// `follow` on a thread of its own, recording what it reports.
struct Follower {
    stop: Option<crossbeam_channel::Sender<()>>,
    events: Arc<Mutex<Vec<StreamEvent>>>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    fn start(url: &str) -> Follower {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let events = Arc::new(Mutex::new(Vec::new()));
        let (url, seen) = (url.to_string(), events.clone());
        let thread = std::thread::spawn(move || {
            follow(&url, TIMEOUT, &stopped, &mut |event| seen.lock().unwrap_or_else(|p| p.into_inner()).push(event))
        });
        Follower { stop: Some(stop), events, thread: Some(thread) }
    }

    fn events(&self) -> Vec<StreamEvent> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for an event equal to `wanted` at index `from` or later; returns its index.
    fn wait(&self, what: &str, from: usize, wanted: &StreamEvent) -> usize {
        wait_for(what, STREAM_WAIT, || self.events().iter().skip(from).position(|e| e == wanted).map(|i| from + i))
    }

    /// Waits until `n` events like `wanted` were recorded; returns the index of the n-th.
    fn wait_nth(&self, what: &str, n: usize, wanted: impl Fn(&StreamEvent) -> bool) -> usize {
        wait_for(what, STREAM_WAIT, || {
            self.events().iter().enumerate().filter(|(_, e)| wanted(e)).nth(n - 1).map(|(i, _)| i)
        })
    }

    /// The changes recorded from index `from` on.
    fn changes(&self, from: usize) -> Vec<L2Change> {
        let events = self.events();
        events
            .into_iter()
            .skip(from)
            .filter_map(|e| match e {
                StreamEvent::Change(change) => Some(change),
                _ => None,
            })
            .collect()
    }

    /// Fires `stop` (or, with `close`, drops its sender) and waits for `follow` to return; how long
    /// that took.
    fn stop(&mut self, close: bool) -> Duration {
        let started = Instant::now();
        match self.stop.take() {
            Some(stop) if !close => stop.send(()).expect("the follower holds the receiver"),
            other => drop(other),
        }
        let thread = self.thread.take().expect("not stopped yet");
        wait_for("follow to return once stopped", Duration::from_secs(10), || thread.is_finished().then_some(()));
        thread.join().expect("follow does not panic");
        started.elapsed()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn change(fq_name: &str, l2_active: Option<bool>) -> StreamEvent {
    StreamEvent::Change(L2Change { fq_name: fq_name.into(), l2_active })
}

fn l2(fq_name: &str, l2_active: Option<bool>) -> L2Change {
    L2Change { fq_name: fq_name.into(), l2_active }
}

fn is_connected(e: &StreamEvent) -> bool {
    *e == StreamEvent::Connected
}

fn is_disconnected(e: &StreamEvent) -> bool {
    matches!(e, StreamEvent::Disconnected(_))
}

/// The simulator's three VMIs, all up, in the order the stream sends them (by name).
fn initial_vmis() -> Vec<L2Change> {
    let mut names = vec![VMI_SAMPLE_NAME, BULK_SAMPLE_NAMES[0], BULK_SAMPLE_NAMES[1]];
    names.sort();
    names.into_iter().map(|name| l2(name, Some(true))).collect()
}

/// Starts a follower and waits for the first sighting of every VMI (each counts as a change).
fn follower_with_initial_state(sim: &ContrailSim) -> Follower {
    let follower = Follower::start(&sim.url());
    follower.wait_nth("the first sighting of the three VMIs", 3, |e| matches!(e, StreamEvent::Change(_)));
    assert_eq!(follower.events()[0], StreamEvent::Connected);
    assert_eq!(follower.changes(0), initial_vmis());
    follower
}

#[test]
fn uve_stream_flip_arrives_as_a_change() {
    let sim = ContrailSim::start();
    let follower = follower_with_initial_state(&sim);
    sim.set_l2_active(VMI_SAMPLE_NAME, false);
    let down = follower.wait("the flip to down", 0, &change(VMI_SAMPLE_NAME, Some(false)));
    sim.set_l2_active(VMI_SAMPLE_NAME, true);
    let up = follower.wait("the flip back up", down + 1, &change(VMI_SAMPLE_NAME, Some(true)));
    // A VN on the VMI stream's connection is filtered out by the server, a VMI removed is None.
    sim.add_vn("default-domain:esi:vn-stream");
    sim.remove(BULK_SAMPLE_NAMES[0]);
    follower.wait("the removal", up + 1, &change(BULK_SAMPLE_NAMES[0], None));
    let mut expected = initial_vmis();
    expected.extend([
        l2(VMI_SAMPLE_NAME, Some(false)),
        l2(VMI_SAMPLE_NAME, Some(true)),
        l2(BULK_SAMPLE_NAMES[0], None),
    ]);
    assert_eq!(follower.changes(0), expected);
    assert_eq!(follower.events().iter().filter(|e| !matches!(e, StreamEvent::Change(_))).count(), 1, "only Connected");
    assert_eq!(sim.stream_connections(), 1);
}

#[test]
fn uve_stream_reconnects_after_a_cut_and_reports_later_flips() {
    let sim = ContrailSim::start();
    let follower = follower_with_initial_state(&sim);
    sim.cut_streams();
    let again = follower.wait_nth("a second connection after the cut", 2, is_connected);
    let cut = follower.events().iter().position(is_disconnected).expect("a Disconnected before reconnecting");
    assert!(cut < again, "{:?}", follower.events());
    assert_eq!(sim.stream_connections(), 2);
    sim.set_l2_active(BULK_SAMPLE_NAMES[1], false);
    follower.wait("a flip after the reconnection", again + 1, &change(BULK_SAMPLE_NAMES[1], Some(false)));
    // The state sent again on the new connection was known already: no change for it.
    assert_eq!(follower.changes(again), vec![l2(BULK_SAMPLE_NAMES[1], Some(false))]);
}

#[test]
fn uve_stream_resent_state_reports_only_what_changed_while_down() {
    let sim = ContrailSim::start();
    let follower = follower_with_initial_state(&sim);
    sim.set_stream_enabled(false);
    // The cut, then at least one refused attempt: the stream stays down while the VMIs flip.
    follower.wait_nth("a refused reconnection", 2, is_disconnected);
    sim.set_l2_active(BULK_SAMPLE_NAMES[0], false);
    sim.set_l2_active(VMI_SAMPLE_NAME, true);
    assert_eq!(follower.events().iter().filter(|e| is_connected(e)).count(), 1);
    sim.set_stream_enabled(true);
    let again = follower.wait_nth("a second connection", 2, is_connected);
    // A VMI created after the state was sent again: once its change is in, the resent state was read.
    let marker = "default-domain:esi:marker";
    sim.set_l2_active(marker, true);
    follower.wait("the marker VMI", again + 1, &change(marker, Some(true)));
    assert_eq!(follower.changes(again), vec![l2(BULK_SAMPLE_NAMES[0], Some(false)), l2(marker, Some(true))]);
    assert_eq!(sim.stream_connections(), 2);
}

#[test]
fn uve_stream_stop_returns_promptly() {
    // On a quiet stream (opserver sends no keepalives), by a message.
    let sim = ContrailSim::start();
    let mut follower = follower_with_initial_state(&sim);
    let took = follower.stop(false);
    assert!(took < PROMPT, "stopping a quiet stream took {took:?}");
    assert_eq!(follower.events().last(), Some(&StreamEvent::Disconnected("stopped".into())));

    // Between attempts (backoff), by closing the channel.
    sim.set_stream_enabled(false);
    let mut follower = Follower::start(&sim.url());
    follower.wait_nth("two refused attempts", 2, is_disconnected);
    let took = follower.stop(true);
    assert!(took < PROMPT, "stopping during the backoff took {took:?}");
    assert!(!follower.events().iter().any(is_connected));

    // While waiting for the answer's head (the simulator answers after 30 s, the timeout is 5 s).
    sim.set_stream_enabled(true);
    sim.set_delay(Duration::from_secs(30));
    let requests = sim.requests();
    let mut follower = Follower::start(&sim.url());
    wait_for("the stream request to arrive", STREAM_WAIT, || (sim.requests() > requests).then_some(()));
    let took = follower.stop(false);
    assert!(took < PROMPT, "stopping while waiting for the answer took {took:?}");
    assert_eq!(follower.events(), vec![StreamEvent::Disconnected("stopped".into())]);
    sim.set_delay(Duration::ZERO);
}

#[test]
fn uve_stream_says_why_it_is_down_without_credentials() {
    let sim = ContrailSim::start();
    sim.set_fail(Some(503));
    let url = format!("http://esi:s3cret@{}", sim.addr());
    let follower = Follower::start(&url);
    follower.wait_nth("two failed attempts", 2, is_disconnected);
    let events = follower.events();
    assert!(events.iter().all(|e| *e == StreamEvent::Disconnected("HTTP 503 from analytics".into())), "{events:?}");
    sim.set_fail(None);
    follower.wait_nth("a connection once analytics answers", 1, is_connected);
    drop(follower);

    let port = support::free_listen().port();
    let follower = Follower::start(&format!("http://esi:s3cret@127.0.0.1:{port}"));
    follower.wait_nth("a refused connection", 1, is_disconnected);
    let why = format!("{:?}", follower.events());
    assert!(why.contains("unreachable") && !why.contains("s3cret") && !why.contains("esi:"), "{why}");
}

/// A raw stream request: its head, and a reader of its body's bytes as they come.
struct RawStream {
    stream: TcpStream,
    received: Vec<u8>,
}

impl RawStream {
    fn open(sim: &ContrailSim, path_and_query: &str) -> RawStream {
        let mut stream = TcpStream::connect(sim.addr()).expect("connect");
        stream.set_read_timeout(Some(Duration::from_millis(20))).expect("read timeout");
        let request = format!("GET {path_and_query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        RawStream { stream, received: Vec::new() }
    }

    /// Reads until what was received holds `text` (as many times as `n`); returns all received.
    fn until(&mut self, text: &str, n: usize) -> String {
        wait_for(&format!("{n} × {text:?} on the stream"), STREAM_WAIT, || {
            let mut buf = [0u8; 4096];
            if let Ok(got) = self.stream.read(&mut buf) {
                self.received.extend_from_slice(&buf[..got]);
            }
            let received = String::from_utf8_lossy(&self.received).into_owned();
            (received.matches(text).count() >= n).then_some(received)
        })
    }
}

#[test]
fn sim_stream_speaks_opserver_format() {
    let sim = ContrailSim::start();
    let mut raw = RawStream::open(&sim, "/analytics/uve-stream?tablefilt=virtual-machine-interface");
    // init, then the three VMIs' structs (the bulk ones have ContrailConfig too).
    let received = raw.until("\n\n\r\n", 6);
    let (head, body) = received.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for header in ["Content-Type: text/event-stream", "Cache-Control: no-cache", "Transfer-Encoding: chunked"] {
        assert!(head.contains(header), "{header} in {head}");
    }
    assert!(!head.to_ascii_lowercase().contains("content-length"), "{head}");
    // One event per chunk, as sse_pack writes them; the first is init.
    assert!(body.starts_with("18\r\nevent: init\ndata: null\n\n\r\n"), "{body}");
    let key = |name: &str| format!("{{\"key\": \"ObjectVMITable:{name}\", \"type\": ");
    let sample = format!("event: update\ndata: {}\"UveVMInterfaceAgent\", \"value\": {{", key(VMI_SAMPLE_NAME));
    assert!(body.contains(&sample) && body.contains("\"l2_active\": true"), "{body}");
    let config = format!("{}\"ContrailConfig\", \"value\": {{", key(BULK_SAMPLE_NAMES[0]));
    assert!(body.contains(&config), "{body}");
    assert!(!body.contains("ObjectVNTable"), "{body}");
    // Every data line is JSON, as a client parses it.
    for line in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "{line}");
    }

    // Changes as they happen: the changed struct whole, then the UVE removed.
    sim.set_l2_active(VMI_SAMPLE_NAME, false);
    let received = raw.until("\"l2_active\": false", 1);
    assert_eq!(received.matches(&sample).count(), 2, "{received}");
    sim.add_vn("default-domain:esi:vn-raw");
    sim.remove(VMI_SAMPLE_NAME);
    let removed = format!("event: update\ndata: {}null}}\n\n", key(VMI_SAMPLE_NAME));
    let received = raw.until(&removed, 1);
    assert!(!received.contains("ObjectVNTable"), "{received}");

    // Without tablefilt, every table; the client sending anything ends its stream.
    let mut all = RawStream::open(&sim, "/analytics/uve-stream");
    let received = all.until("{\"key\": \"ObjectVNTable:default-domain:esi:vn-raw\", \"type\": \"", 1);
    assert!(received.contains("ObjectVMITable:"), "{received}");
    all.stream.write_all(b"x").expect("send");
    wait_for("the stream to close", STREAM_WAIT, || {
        let mut buf = [0u8; 4096];
        matches!(all.stream.read(&mut buf), Ok(0)).then_some(())
    });
    assert_eq!(sim.stream_connections(), 2);
}

#[test]
fn sim_stream_cut_and_off() {
    let sim = ContrailSim::start();
    let mut cut = RawStream::open(&sim, "/analytics/uve-stream?tablefilt=virtual-machine-interface");
    cut.until("event: init", 1);
    sim.cut_streams();
    wait_for("the cut stream to close", STREAM_WAIT, || {
        let mut buf = [0u8; 4096];
        match cut.stream.read(&mut buf) {
            Ok(0) => Some(()),
            Ok(got) => {
                cut.received.extend_from_slice(&buf[..got]);
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => None,
            Err(_) => Some(()),
        }
    });
    // A cut, not an end: no last chunk.
    assert!(!String::from_utf8_lossy(&cut.received).contains("\r\n0\r\n\r\n"));
    sim.set_stream_enabled(false);
    let answer = raw(&sim, b"GET /analytics/uve-stream HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(answer, "", "turned off: closed without an answer");
    assert_eq!(sim.stream_connections(), 1);
    // The rest of the API still answers.
    assert_eq!(get(&sim, "/analytics/uves/virtual-machine-interfaces").0, 200);
}
