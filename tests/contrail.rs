//! The Contrail probes (`esi_monitor::plugins::contrail`) against the analytics simulator,
//! and the simulator's own fidelity to the recorded API shapes in `tests/fixtures/contrail/`.
//!
//! These tests exist because no real analytics server runs here: the probes are only as
//! trustworthy as the simulator, so both sides are checked against the recorded samples.

#[path = "support/contrail_sim.rs"]
mod contrail_sim;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use contrail_sim::{ContrailSim, VMI_SAMPLE_NAME, VN_SAMPLE_NAME};
use esi_monitor::plugins::contrail::Contrail;
use esi_monitor::plugins::Probe;
use serde_json::{json, Value};

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
