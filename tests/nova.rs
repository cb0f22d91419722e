//! The `nova_vm` client (`esi_monitor::plugins::nova`) against the Keystone + Nova simulator,
//! and the simulator's own fidelity to the real APIs' semantics (status codes, error bodies,
//! paging) that the client relies on.

mod support;

use support::nova_sim;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esi_monitor::config::{self, Secret};
use esi_monitor::plugins::nova::{Nova, PAGE_SIZE};
use esi_monitor::plugins::Probe;
use nova_sim::{NovaSim, ADMIN, INTERNAL, PASSWORD, PROJECT, PUBLIC, REGION_TWO, USERNAME};
use serde_json::{json, Value};

fn settings(auth_url: &str) -> config::Nova {
    config::Nova {
        auth_url: auth_url.into(),
        username: USERNAME.into(),
        password: Secret::new(PASSWORD),
        project_name: PROJECT.into(),
        ..config::Nova::default()
    }
}

fn client(sim: &NovaSim) -> Nova {
    Nova::new(&settings(&sim.url())).expect("nova client")
}

fn no_answer(probe: &Probe) -> &str {
    match probe {
        Probe::NoAnswer(why) => why,
        other => panic!("expected NoAnswer, got {other:?}"),
    }
}

/// Every probe is NoAnswer; the reasons (they are all the same but for the server id).
fn all_no_answer(probes: &[Probe]) -> Vec<String> {
    probes.iter().map(|p| no_answer(p).to_string()).collect()
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A client whose clock the test moves forward (`advance`) instead of waiting.
fn client_with_clock(sim: &NovaSim) -> (Nova, impl Fn(Duration)) {
    let offset = Arc::new(AtomicU64::new(0));
    let base = Instant::now();
    let read = offset.clone();
    let nova = client(sim).with_clock(move || base + Duration::from_millis(read.load(Ordering::SeqCst)));
    (nova, move |d: Duration| {
        offset.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    })
}

// ------------------------------------------------------------------------- polling

#[test]
fn thousands_of_servers_are_three_pages_and_one_token() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(2500);
    assert_eq!(PAGE_SIZE, 1000);
    let nova = client(&sim);
    let probes = nova.servers(&servers);
    assert_eq!(probes.len(), 2500);
    assert!(probes.iter().all(|p| *p == Probe::Up), "{:?}", probes.iter().find(|p| **p != Probe::Up));
    assert_eq!((sim.detail_pages(), sim.tokens_issued(), sim.server_gets()), (3, 1, 0));
    assert_eq!((nova.tokens_issued(), nova.requests()), (1, 4));
    // The next interval reuses the token.
    assert_eq!(nova.servers(&servers).len(), 2500);
    assert_eq!((sim.detail_pages(), sim.tokens_issued(), sim.unauthorized()), (6, 1, 0));
    assert!(sim.connections() <= 2, "connections are kept alive: {}", sim.connections());
}

#[test]
fn statuses_follow_the_servers() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(4);
    let nova = client(&sim);
    let mut asked = servers.clone();
    asked.push("00000000-0000-4000-8000-00000000dead".into());
    assert_eq!(nova.servers(&asked), vec![Probe::Up, Probe::Up, Probe::Up, Probe::Up, Probe::Down]);
    assert!(sim.set_status(&servers[0], "SHUTOFF"));
    assert!(sim.set_status(&servers[1], "ERROR"));
    assert!(sim.delete(&servers[2]));
    assert_eq!(nova.servers(&asked), vec![Probe::Down, Probe::Down, Probe::Down, Probe::Up, Probe::Down]);
    assert!(sim.set_status(&servers[0], "ACTIVE"));
    sim.add_server(&servers[2], "ACTIVE");
    assert_eq!(nova.servers(&asked), vec![Probe::Up, Probe::Down, Probe::Up, Probe::Up, Probe::Down]);
    // Duplicates and order are the caller's.
    let twice = vec![servers[1].clone(), servers[0].clone(), servers[1].clone()];
    assert_eq!(nova.servers(&twice), vec![Probe::Down, Probe::Up, Probe::Down]);
}

#[test]
fn no_objects_no_request() {
    let sim = NovaSim::start();
    let nova = client(&sim);
    assert!(nova.servers(&[]).is_empty());
    assert_eq!((nova.requests(), sim.requests()), (0, 0));
}

#[test]
fn a_capped_page_size_is_followed_by_next_links() {
    let sim = NovaSim::start();
    sim.set_max_limit(400);
    let servers = sim.add_servers(1000);
    let nova = client(&sim);
    assert!(nova.servers(&servers).iter().all(|p| *p == Probe::Up));
    assert_eq!(sim.detail_pages(), 3, "400 + 400 + 200, each full page with its next link");
}

// ------------------------------------------------------------------------- tokens

#[test]
fn a_token_refused_by_nova_is_renewed_once_within_the_same_call() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(3);
    let nova = client(&sim);
    assert_eq!(nova.servers(&servers), vec![Probe::Up; 3]);
    sim.set_status(&servers[1], "SHUTOFF");
    sim.expire_tokens();
    assert_eq!(nova.servers(&servers), vec![Probe::Up, Probe::Down, Probe::Up], "no missed poll");
    assert_eq!((sim.unauthorized(), sim.tokens_issued(), nova.tokens_issued()), (1, 2, 2));
    assert_eq!(sim.detail_pages(), 2);
    // Verify mode too.
    sim.expire_tokens();
    assert_eq!(nova.server(&servers[1]), Probe::Down);
    assert_eq!((sim.unauthorized(), sim.tokens_issued()), (2, 3));
}

#[test]
fn a_second_refusal_is_no_answer_not_a_loop() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(1);
    // Tokens that are already expired when Nova sees them.
    sim.set_token_lifetime(Duration::ZERO);
    let nova = client(&sim);
    let why = all_no_answer(&nova.servers(&servers));
    assert!(why[0].contains("HTTP 401 from Nova GET") && why[0].contains("refused again with a new token"), "{why:?}");
    assert_eq!((sim.tokens_issued(), sim.unauthorized()), (2, 2));
}

#[test]
fn a_token_near_its_expiry_is_renewed_before_use() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(2);
    sim.set_token_lifetime(Duration::from_secs(3));
    let (nova, advance) = client_with_clock(&sim);
    assert_eq!(nova.servers(&servers), vec![Probe::Up; 2]);
    // A 3 s token is used for half its lifetime.
    advance(Duration::from_millis(1400));
    assert_eq!(nova.servers(&servers), vec![Probe::Up; 2]);
    assert_eq!(sim.tokens_issued(), 1);
    advance(Duration::from_millis(200));
    assert_eq!(nova.servers(&servers), vec![Probe::Up; 2]);
    assert_eq!(nova.server(&servers[0]), Probe::Up);
    assert_eq!((sim.tokens_issued(), sim.unauthorized()), (2, 0));
    // A long-lived token is used until 120 s before it expires.
    sim.set_token_lifetime(Duration::from_secs(3600));
    advance(Duration::from_secs(2));
    nova.servers(&servers);
    assert_eq!(sim.tokens_issued(), 3);
    advance(Duration::from_secs(3479));
    nova.servers(&servers);
    assert_eq!(sim.tokens_issued(), 3);
    advance(Duration::from_secs(2));
    nova.servers(&servers);
    assert_eq!((sim.tokens_issued(), sim.unauthorized()), (4, 0));
}

#[test]
fn a_short_lived_token_is_renewed_in_real_time_without_a_401() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(1);
    sim.set_token_lifetime(Duration::from_millis(400));
    let nova = client(&sim);
    for _ in 0..3 {
        assert_eq!(nova.servers(&servers), vec![Probe::Up]);
        std::thread::sleep(Duration::from_millis(450));
    }
    assert_eq!((sim.tokens_issued(), sim.unauthorized()), (3, 0));
}

#[test]
fn threads_share_one_token() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(50);
    let nova = client(&sim);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..3 {
                    assert!(nova.servers(&servers).iter().all(|p| *p == Probe::Up));
                }
            });
        }
    });
    assert_eq!((sim.tokens_issued(), sim.detail_pages()), (1, 18));
}

// ------------------------------------------------------------------------- failures

#[test]
fn a_wrong_password_is_no_answer_for_every_object_without_the_password() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(3);
    let wrong = "Wr0ng-pass-w0rd";
    let nova = Nova::new(&config::Nova { password: Secret::new(wrong), ..settings(&sim.url()) }).unwrap();
    let why = all_no_answer(&nova.servers(&servers));
    assert_eq!(why.len(), 3);
    for (reason, id) in why.iter().zip(&servers) {
        assert!(reason.starts_with(&format!("server {id}: HTTP 401 from Keystone POST {}/auth/tokens", sim.url())), "{reason}");
        assert!(reason.contains("nova.password") && reason.contains(USERNAME), "{reason}");
        assert!(!reason.contains(wrong), "{reason}");
    }
    assert!(!format!("{nova:?}").contains(wrong));
    assert_eq!((sim.auth_requests(), sim.tokens_issued(), sim.detail_pages()), (1, 0, 0));
    let why = no_answer(&nova.server(&servers[0])).to_string();
    assert!(why.contains("HTTP 401 from Keystone") && !why.contains(wrong), "{why}");
    // A wrong project or domain is refused the same way.
    for config in [
        config::Nova { project_name: "nobody".into(), ..settings(&sim.url()) },
        config::Nova { user_domain_name: "Elsewhere".into(), ..settings(&sim.url()) },
        config::Nova { username: "mallory".into(), ..settings(&sim.url()) },
    ] {
        let why = all_no_answer(&Nova::new(&config).unwrap().servers(&servers));
        assert!(why[0].contains("HTTP 401 from Keystone") && !why[0].contains(PASSWORD), "{why:?}");
    }
}

#[test]
fn domains_other_than_default_are_sent() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(1);
    sim.set_domains("ldap", "ops");
    let config = config::Nova { user_domain_name: "ldap".into(), project_domain_name: "ops".into(), ..settings(&sim.url()) };
    assert_eq!(Nova::new(&config).unwrap().servers(&servers), vec![Probe::Up]);
    assert!(no_answer(&client(&sim).servers(&servers)[0]).contains("HTTP 401 from Keystone"));
}

#[test]
fn an_unreachable_cloud_is_no_answer() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(2);
    let nova = client(&sim);
    assert_eq!(nova.servers(&servers), vec![Probe::Up; 2]);
    let url = sim.url();
    drop(sim);
    // The token is still fresh: Nova is asked, and is not there.
    let why = all_no_answer(&nova.servers(&servers));
    assert!(why[0].contains("Nova") && why[0].contains("/v2.1/servers/detail"), "{why:?}");
    assert!(!why[0].contains(PASSWORD), "{why:?}");
    let why = no_answer(&nova.server(&servers[0])).to_string();
    assert!(why.contains("Nova"), "{why}");
    // A new client asks Keystone first.
    let why = all_no_answer(&Nova::new(&settings(&url)).unwrap().servers(&servers));
    assert!(why[0].contains("Keystone") && why[0].contains(&format!("POST {url}/auth/tokens")), "{why:?}");
}

#[test]
fn nova_http_errors_are_no_answer() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(2);
    let nova = client(&sim);
    sim.set_nova_fail(Some(503));
    let why = all_no_answer(&nova.servers(&servers));
    let url = format!("http://{}{PUBLIC}/servers/detail?all_tenants=1&limit=1000", sim.addr());
    assert!(why[0].starts_with(&format!("server {}: HTTP 503 from Nova GET {url}: ", servers[0])), "{why:?}");
    let why = no_answer(&nova.server(&servers[0])).to_string();
    assert!(why.contains("HTTP 503 from Nova GET") && why.contains(&servers[0]), "{why}");
    sim.set_nova_fail(None);
    assert_eq!(nova.servers(&servers), vec![Probe::Up; 2]);
}

#[test]
fn a_slow_cloud_is_no_answer_within_the_timeout() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(1);
    let nova = Nova::new(&config::Nova { timeout_ms: 300, ..settings(&sim.url()) }).unwrap();
    sim.set_delay(Duration::from_millis(1500));
    let started = Instant::now();
    let why = all_no_answer(&nova.servers(&servers));
    assert!(started.elapsed() < Duration::from_millis(1400), "{:?}", started.elapsed());
    assert!(why[0].contains("no answer from Keystone POST") && why[0].contains("within 300 ms"), "{why:?}");
}

#[test]
fn a_forbidden_all_tenants_listing_names_the_key() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(2);
    sim.add_foreign_server("99999999-0000-4000-8000-000000000001", "ACTIVE");
    let mut asked = servers.clone();
    asked.push("99999999-0000-4000-8000-000000000001".into());
    let nova = client(&sim);
    assert_eq!(nova.servers(&asked), vec![Probe::Up; 3], "all_tenants lists other projects' servers");
    sim.deny_all_tenants(true);
    for why in all_no_answer(&nova.servers(&asked)) {
        assert!(why.contains("HTTP 403 from Nova GET") && why.contains("nova.all_tenants"), "{why}");
    }
    // Without all_tenants: the project's servers only.
    let own = Nova::new(&config::Nova { all_tenants: false, ..settings(&sim.url()) }).unwrap();
    assert_eq!(own.servers(&asked), vec![Probe::Up, Probe::Up, Probe::Down]);
}

#[test]
fn unconfigured_nova_is_no_answer_naming_the_key() {
    let nova = Nova::new(&config::Nova::default()).unwrap();
    let why = all_no_answer(&nova.servers(&ids(&["a", "b"])));
    assert!(why.iter().all(|w| w.ends_with("nova.auth_url is not configured")), "{why:?}");
    assert!(no_answer(&nova.server("a")).ends_with("nova.auth_url is not configured"));
}

// ------------------------------------------------------------------------- endpoints

#[test]
fn auth_url_with_or_without_v3() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(1);
    for url in [sim.url(), format!("{}/", sim.url()), sim.root(), format!("{}/", sim.root())] {
        let nova = Nova::new(&settings(&url)).unwrap();
        assert_eq!(nova.identity(), sim.url());
        assert_eq!(nova.servers(&servers), vec![Probe::Up], "{url}");
    }
    assert_eq!(sim.tokens_issued(), 4);
}

#[test]
fn interface_and_region_choose_the_compute_endpoint() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(1);
    let poll = |interface: &str, region: &str| {
        let config = config::Nova { interface: interface.into(), region_name: region.into(), ..settings(&sim.url()) };
        Nova::new(&config).unwrap().servers(&servers)
    };
    assert_eq!(poll("public", ""), vec![Probe::Up]);
    assert_eq!(sim.compute_requests_via(PUBLIC), 1);
    assert_eq!(poll("internal", ""), vec![Probe::Up]);
    assert_eq!(sim.compute_requests_via(INTERNAL), 1);
    assert_eq!(poll("adminURL", "RegionOne"), vec![Probe::Up]);
    assert_eq!(sim.compute_requests_via(ADMIN), 1);
    assert_eq!(poll("public", "RegionTwo"), vec![Probe::Up]);
    assert_eq!(sim.compute_requests_via(REGION_TWO), 1);
    let why = all_no_answer(&poll("internal", "RegionTwo"));
    assert!(why[0].contains("no \"internal\" endpoint (nova.interface) in region \"RegionTwo\" (nova.region_name)"), "{why:?}");
    assert!(why[0].contains("public RegionTwo"), "{why:?}");
}

// ------------------------------------------------------------------------- verify mode

#[test]
fn verify_mode_asks_for_one_server() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(3);
    let nova = client(&sim);
    assert_eq!(nova.server(&servers[0]), Probe::Up);
    sim.set_status(&servers[0], "SHUTOFF");
    assert_eq!(nova.server(&servers[0]), Probe::Down);
    let (probe, raw) = nova.server_detailed(&servers[0]);
    assert_eq!(probe, Probe::Down);
    assert!(raw.starts_with("status SHUTOFF (GET http://"), "{raw}");
    sim.delete(&servers[1]);
    assert_eq!(nova.server(&servers[1]), Probe::Down);
    let (_, raw) = nova.server_detailed(&servers[1]);
    assert!(raw.starts_with("HTTP 404 from Nova GET") && raw.contains("could not be found"), "{raw}");
    assert_eq!(nova.server("no/such server"), Probe::Down);
    assert!(no_answer(&nova.server("")).contains("empty server_id"));
    assert_eq!((sim.server_gets(), sim.detail_pages(), sim.tokens_issued()), (6, 0, 1));
    sim.set_nova_fail(Some(500));
    assert!(no_answer(&nova.server(&servers[2])).contains("HTTP 500 from Nova GET"));
}

// ------------------------------------------------------------------------- the simulator

/// A request with a plain agent: status, headers of interest, JSON body.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let result = match (method, body) {
        ("POST", Some(body)) => agent.post(url).send_json(body),
        _ => {
            let mut request = agent.get(url);
            if let Some(token) = token {
                request = request.header("X-Auth-Token", token);
            }
            request.call()
        }
    };
    let mut response = result.expect("simulator answers");
    let status = response.status().as_u16();
    let subject = response.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = response.body_mut().read_to_string().expect("body");
    (status, subject, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn auth_body(password: &str, scoped: bool) -> Value {
    let mut body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": USERNAME, "domain": {"name": "Default"}, "password": password}}}}});
    if scoped {
        body["auth"]["scope"] = json!({"project": {"name": PROJECT, "domain": {"id": "default"}}});
    }
    body
}

#[test]
fn sim_keystone_answers_as_keystone() {
    let sim = NovaSim::start();
    let url = format!("{}/auth/tokens", sim.url());
    let (status, token, body) = call("POST", &url, None, Some(&auth_body(PASSWORD, true)));
    assert_eq!(status, 201);
    assert!(token.is_some_and(|t| t.starts_with("gAAAA")));
    let expires = body.pointer("/token/expires_at").and_then(Value::as_str).unwrap();
    assert!(esi_monitor::plugins::nova::parse_time(expires).is_some(), "{expires}");
    assert_eq!(expires.len(), "2026-12-02T10:00:00.000000Z".len());
    let catalog = body.pointer("/token/catalog").unwrap();
    let compute = esi_monitor::plugins::nova::compute_endpoint(catalog, "public", "RegionOne").unwrap();
    assert_eq!(compute, format!("http://{}{PUBLIC}", sim.addr()));
    // Unscoped: a token without a catalog.
    let (status, _, body) = call("POST", &url, None, Some(&auth_body(PASSWORD, false)));
    assert_eq!(status, 201);
    assert!(body.pointer("/token/catalog").is_none());
    let (status, token, body) = call("POST", &url, None, Some(&auth_body("nope", true)));
    assert_eq!((status, token), (401, None));
    assert_eq!(body, json!({"error": {"code": 401, "message": "The request you have made requires authentication.",
                                      "title": "Unauthorized"}}));
    let (status, _, body) = call("POST", &url, None, Some(&json!({"auth": {}})));
    assert_eq!((status, body.pointer("/error/code")), (400, Some(&json!(400))));
    assert_eq!(sim.tokens_issued(), 2);
}

#[test]
fn sim_nova_checks_tokens_limits_and_markers() {
    let sim = NovaSim::start();
    let servers = sim.add_servers(5);
    let (_, token, _) = call("POST", &format!("{}/auth/tokens", sim.url()), None, Some(&auth_body(PASSWORD, true)));
    let token = token.unwrap();
    let base = format!("http://{}{PUBLIC}", sim.addr());
    let (status, _, body) = call("GET", &format!("{base}/servers/detail"), Some("gAAAAbogus"), None);
    assert_eq!((status, body.pointer("/error/code")), (401, Some(&json!(401))));
    // Newest first, 2 per page, with a next link on full pages.
    let (status, _, body) = call("GET", &format!("{base}/servers/detail?limit=2"), Some(&token), None);
    assert_eq!(status, 200);
    let page: Vec<&str> = body["servers"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(page, vec![servers[4].as_str(), servers[3].as_str()]);
    let next = body.pointer("/servers_links/0/href").and_then(Value::as_str).unwrap();
    assert_eq!(body.pointer("/servers_links/0/rel"), Some(&json!("next")));
    assert_eq!(next, format!("{base}/servers/detail?limit=2&marker={}", servers[3]));
    let (_, _, body) = call("GET", &format!("{base}/servers/detail?limit=2&marker={}", servers[1]), Some(&token), None);
    let page: Vec<&str> = body["servers"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(page, vec![servers[0].as_str()]);
    assert!(body.get("servers_links").is_none());
    // A deleted server is still a valid marker: paging goes on from where it was.
    sim.delete(&servers[3]);
    let (status, _, body) = call("GET", &format!("{base}/servers/detail?limit=2&marker={}", servers[3]), Some(&token), None);
    let page: Vec<&str> = body["servers"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!((status, page), (200, vec![servers[2].as_str(), servers[1].as_str()]));
    let (status, _, body) = call("GET", &format!("{base}/servers/detail?marker=unknown-id"), Some(&token), None);
    assert_eq!((status, body.pointer("/badRequest/message")), (400, Some(&json!("marker [unknown-id] not found"))));
    let (status, _, _) = call("GET", &format!("{base}/servers/detail?limit=many"), Some(&token), None);
    assert_eq!(status, 400);
    sim.deny_all_tenants(true);
    let (status, _, body) = call("GET", &format!("{base}/servers/detail?all_tenants=1"), Some(&token), None);
    assert_eq!((status, body.pointer("/forbidden/code")), (403, Some(&json!(403))));
    let (status, _, body) = call("GET", &format!("{base}/servers/{}", servers[2]), Some(&token), None);
    assert_eq!((status, body.pointer("/server/status")), (200, Some(&json!("ACTIVE"))));
    sim.delete(&servers[2]);
    let (status, _, body) = call("GET", &format!("{base}/servers/{}", servers[2]), Some(&token), None);
    assert_eq!((status, body.pointer("/itemNotFound/code")), (404, Some(&json!(404))));
    sim.expire_tokens();
    let (status, _, _) = call("GET", &format!("{base}/servers/{}", servers[0]), Some(&token), None);
    assert_eq!(status, 401);
    assert_eq!(sim.unauthorized(), 2);
}

#[test]
fn sim_survives_garbage() {
    let sim = NovaSim::start();
    for junk in [&b"NONSENSE\r\n\r\n"[..], b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"\x00\xff\r\n\r\n"] {
        let mut stream = TcpStream::connect(sim.addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        stream.write_all(junk).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"), "{junk:?}");
    }
    let (status, _, _) = call("POST", &format!("{}/auth/tokens", sim.url()), None, Some(&json!("x")));
    assert_eq!(status, 400);
    let servers = sim.add_servers(1);
    assert_eq!(client(&sim).servers(&servers), vec![Probe::Up]);
}


/// The poller: every registered nova_vm object of every resource is answered by ONE listing
/// per interval; SHUTOFF and deleted servers turn DOWN after `down_after` polls, and a token
/// expired by Keystone is renewed in the same poll.
#[test]
fn the_poller_lists_the_servers_once_per_interval_and_follows_their_status() {
    use support::etcd::Etcd;
    use support::monitor::Monitor;
    let sim = NovaSim::start();
    let ids = sim.add_servers(3);
    let etcd = Etcd::start();
    let store = etcd.store();
    let _monitor = Monitor::start(
        &etcd.endpoint,
        &format!(
            "monitoring: {{interval_s: 1, down_after: 2}}\nnova: {{auth_url: \"{}\", username: {USERNAME}, \
             password: {PASSWORD}, project_name: {PROJECT}}}",
            sim.url()
        ),
    );
    for id in &ids {
        let entry = json!({"resource_type": "vnf_instance", "resource_id": id, "version": 1, "tenant_id": "t",
                           "objects": {"server": {"type": "nova_vm", "server_id": id}}});
        store.put(&format!("/esi-worker/monitoring/v2.0/vnf_instances/{id}"), entry.to_string()).unwrap();
    }
    let record = |id: &str| -> Option<Value> {
        let kv = store.get(&format!("/monitoring/v2.0/vnf_instances/{id}")).unwrap()?;
        serde_json::from_slice(&kv.value).ok()
    };
    let wait = |id: &str, want: &str| {
        let want = json!({"server": want, "version": 1});
        support::wait_for(&format!("{id} {want}"), Duration::from_secs(30), || (record(id) == Some(want.clone())).then_some(()));
    };
    for id in &ids {
        wait(id, "UP");
    }
    sim.set_status(&ids[0], "SHUTOFF");
    sim.delete(&ids[1]);
    wait(&ids[0], "DOWN");
    wait(&ids[1], "DOWN");
    // One listing per interval for the three servers of three resources: count over polls.
    let (pages, gets) = (sim.detail_pages(), sim.server_gets());
    sim.expire_tokens();
    sim.set_status(&ids[0], "ACTIVE");
    wait(&ids[0], "UP");
    let polls = sim.detail_pages() - pages;
    assert!(polls >= 1 && sim.server_gets() == gets, "listings, never one request per server");
    assert!(sim.unauthorized() >= 1 && sim.tokens_issued() >= 2, "the expired token was renewed");
    wait(&ids[2], "UP");
}

/// `https://` Keystone and Nova, verified against `nova.ca_file`; a client without that CA
/// (the Mozilla roots only) refuses the certificate.
#[test]
fn https_keystone_and_nova_are_verified_against_the_ca_file() {
    let pki = support::etcd::Pki::new();
    let sim = NovaSim::start();
    sim.set_https(true);
    let ids = sim.add_servers(2);
    let proxy = support::tls_proxy::TlsProxy::start(&pki, sim.addr());
    let url = format!("{}/v3", proxy.url());
    let checked = esi_monitor::config::Config::parse(&format!(
        "nova: {{auth_url: \"{url}\", username: {USERNAME}, password: {PASSWORD}, project_name: {PROJECT}, ca_file: {:?}}}",
        pki.path("ca.pem")
    ));
    assert!(checked.is_ok(), "the configuration check takes an https:// URL and a CA: {:?}", checked.err());
    let nova = Nova::new(&config::Nova { ca_file: pki.path("ca.pem"), ..settings(&url) }).expect("nova client");
    assert_eq!(nova.servers(&ids), vec![Probe::Up, Probe::Up]);
    assert_eq!(nova.server(&ids[0]), Probe::Up);
    assert!(sim.detail_pages() >= 1 && sim.tokens_issued() == 1, "through TLS to the simulator");
    let untrusting = Nova::new(&settings(&url)).expect("nova client");
    let why = all_no_answer(&untrusting.servers(&ids));
    assert!(why[0].to_lowercase().contains("certificate") || why[0].contains("tls"), "{why:?}");
    assert_eq!(sim.tokens_issued(), 1, "no token for a server whose certificate is refused");
}
