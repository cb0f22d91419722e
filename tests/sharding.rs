//! Three esi-monitor instances sharing the polling (SPEC §6) on a 3-member etcd cluster,
//! with 30 real snmpd agents (300 ports) and the Contrail simulator (30 VMIs): every object
//! polled by exactly one instance, the shards split as rendezvous hashing says, and no flip
//! lost nor stale write accepted when an instance is killed, frozen past its lease, or
//! restarted, or when etcd loses its leader or restarts altogether.
//!
//! Stale and flapping writes are caught by the records' etcd versions: a record is written
//! once when it first appears and once per confirmed change, and never otherwise (a new
//! owner reads the record and writes only what differs), so every extra write shows.

mod support;

use esi_monitor::shards;
use esi_monitor::store::Store;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;
use support::contrail_sim::ContrailSim;
use support::etcd::Cluster;
use support::monitor::Monitor;
use support::snmpd::{Interface, Snmpd};
use support::wait_for;

const AGENTS: usize = 30;
const PORTS: usize = 10;
const VMIS: usize = 30;
const COMMUNITY: &str = "sh4rd-c0mm";
const LIMIT: Duration = Duration::from_secs(60);
/// The instances' lease: failover comes within it (and one interval).
const TTL_S: u64 = 3;

fn port_name(p: usize) -> String {
    format!("xe-0/0/{p}")
}

/// The agents, the simulator, the cluster and three instances, with every resource registered.
struct Fleet {
    etcd: Cluster,
    store: Store,
    agents: Vec<Snmpd>,
    sim: ContrailSim,
    instances: Vec<(Monitor, SocketAddr)>,
    config: String,
}

impl Fleet {
    /// `base` is the second octet's block of agent addresses (127.<base>.0.x): each test its own.
    fn start(base: u8) -> Fleet {
        let etcd = Cluster::start(3);
        let store = etcd.store();
        let interfaces: Vec<Interface> = (0..PORTS).map(|p| Interface::new(500 + p as u32, &port_name(p), true)).collect();
        let first = Snmpd::start(&format!("127.{base}.0.1"), COMMUNITY, &interfaces);
        let port = first.port();
        let mut agents = vec![first];
        for a in 1..AGENTS {
            agents.push(Snmpd::start_on(&format!("127.{base}.0.{}", a + 1), port, COMMUNITY, &interfaces));
        }
        let sim = ContrailSim::start();
        for v in 0..VMIS {
            sim.set_l2_active(&vmi_fq(v), true);
        }
        let config = format!(
            "snmp: {{port: {port}, timeout_ms: 300, retries: 0}}\ncontrail: {{analytics_url: \"{}\"}}\n\
             monitoring: {{interval_s: 1, down_after: 2}}\nlog: {{level: info}}",
            sim.url()
        );
        let mut fleet = Fleet { etcd, store, agents, sim, instances: Vec::new(), config };
        fleet.register();
        for _ in 0..3 {
            fleet.start_instance();
        }
        fleet
    }

    fn start_instance(&mut self) -> usize {
        let instance = self.spawn();
        self.instances.push(instance);
        self.instances.len() - 1
    }

    fn spawn(&self) -> (Monitor, SocketAddr) {
        let listen = support::free_listen();
        let etcd = format!("lease_ttl_s: {TTL_S}, timeout_ms: 1000");
        let text = Monitor::config_on(&self.etcd.endpoints(), &etcd, &format!("{}\nmetrics: {{listen: \"{listen}\"}}", self.config));
        (Monitor::start_with(&text), listen)
    }

    fn register(&self) {
        for (a, agent) in self.agents.iter().enumerate() {
            for p in 0..PORTS {
                let entry = json!({"resource_type": "ese_physical_port", "resource_id": port_id(a, p), "version": 1,
                    "objects": {"port": {"type": "physical_port", "device_ip": agent.addr(),
                        "community_name": COMMUNITY, "name": port_name(p)}}});
                self.store.put(&registry_key("ese_physical_ports", &port_id(a, p)), entry.to_string()).unwrap();
            }
        }
        for v in 0..VMIS {
            let entry = json!({"resource_type": "port", "resource_id": vmi_id(v), "version": 1,
                "objects": {"vmi": {"type": "virtual_machine_interface", "fq_name": vmi_fq(v)}}});
            self.store.put(&registry_key("ports", &vmi_id(v)), entry.to_string()).unwrap();
        }
    }

    /// Every resource's record key and the status it must show.
    fn expected(&self, down: &[(usize, usize)]) -> BTreeMap<String, Value> {
        let mut want = BTreeMap::new();
        for a in 0..AGENTS {
            for p in 0..PORTS {
                let status = if down.contains(&(a, p)) { "DOWN" } else { "UP" };
                want.insert(record_key("ese_physical_ports", &port_id(a, p)), json!({"port": status, "version": 1}));
            }
        }
        for v in 0..VMIS {
            want.insert(record_key("ports", &vmi_id(v)), json!({"vmi": "UP", "version": 1}));
        }
        want
    }

    /// Waits until every record shows what `down` says.
    fn wait_records(&self, what: &str, down: &[(usize, usize)]) {
        let want = self.expected(down);
        wait_for(what, LIMIT, || {
            let got = records(&self.store);
            let wrong: Vec<&String> = want.keys().filter(|k| got.get(*k).map(|(v, _)| v) != want.get(*k)).collect();
            wrong.is_empty().then_some(())
        });
    }

    /// The live members' ids, and each instance's id by its pid.
    fn members(&self) -> BTreeMap<String, u32> {
        let (kvs, _) = self.store.range("/esi-worker/members/").unwrap();
        kvs.iter()
            .map(|kv| {
                let v: Value = serde_json::from_slice(&kv.value).unwrap();
                (kv.key["/esi-worker/members/".len()..].to_string(), v["pid"].as_u64().unwrap() as u32)
            })
            .collect()
    }

    /// Shard → owner id, as claimed in etcd.
    fn claims(&self) -> HashMap<u16, String> {
        let (kvs, _) = self.store.range("/esi-worker/shards/").unwrap();
        kvs.iter().map(|kv| (kv.key["/esi-worker/shards/".len()..].parse().unwrap(), kv.value_str().to_string())).collect()
    }

    /// The id of instance `i` (from the member keys).
    fn id_of(&self, i: usize) -> String {
        let pid = self.instances[i].0.child.id();
        wait_for("the instance's member key", LIMIT, || {
            self.members().into_iter().find(|(_, p)| *p == pid).map(|(id, _)| id)
        })
    }

    /// Waits until the claims are exactly what rendezvous hashing over the running instances
    /// gives (each shard claimed once, by its owner), and returns them.
    fn wait_settled(&self, running: &[usize]) -> HashMap<u16, String> {
        let ids: Vec<String> = running.iter().map(|i| self.id_of(*i)).collect();
        let live: Vec<&str> = ids.iter().map(String::as_str).collect();
        let deadline = std::time::Instant::now() + LIMIT;
        let last = loop {
            let claims = self.claims();
            let members = self.members();
            let wrong: Vec<(u16, Option<&String>)> = (0..shards::SHARDS)
                .filter(|s| claims.get(s).map(String::as_str) != shards::owner(*s, live.iter().copied()))
                .map(|s| (s, claims.get(&s)))
                .collect();
            if members.len() == ids.len() && wrong.is_empty() {
                return claims;
            }
            if std::time::Instant::now() > deadline {
                break format!("{} members; shards not (yet) with their owner (shard, claimed by): {wrong:?}", members.len());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        panic!("timed out after {LIMIT:?} waiting for every shard claimed by its rendezvous owner; ids {ids:?}: {last}");
    }

    /// The instance index owning the ports of agent `a` (their shard is the agent's).
    fn owner_of_agent(&self, a: usize) -> usize {
        let shard = shards::shard_of(self.agents[a].addr());
        let owner = self.claims().get(&shard).cloned().expect("the shard is claimed");
        let pid = self.members()[&owner];
        self.instances.iter().position(|(m, _)| m.child.id() == pid).expect("the owner is one of ours")
    }

    fn metric(&self, i: usize, series: &str) -> f64 {
        support::scrape::get(&support::scrape::scrape(self.instances[i].1).0, series)
    }
}

impl Drop for Fleet {
    /// A failed test shows the end of every instance's log.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (i, (m, _)) in self.instances.iter().enumerate() {
                let log = m.log_text();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- instance {i} (pid {}), last lines:", m.child.id());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn port_id(a: usize, p: usize) -> String {
    format!("pp-{a:02}-{p:02}")
}
fn vmi_id(v: usize) -> String {
    format!("vmi-{v:02}")
}
fn vmi_fq(v: usize) -> String {
    format!("default-domain:admin:shard-vmi-{v:02}")
}
fn registry_key(plural: &str, id: &str) -> String {
    format!("/esi-worker/monitoring/v2.0/{plural}/{id}")
}
fn record_key(plural: &str, id: &str) -> String {
    format!("/monitoring/v2.0/{plural}/{id}")
}

/// Every record: its value and its etcd version (how many times it was written).
fn records(store: &Store) -> BTreeMap<String, (Value, i64)> {
    let (kvs, _) = store.range("/monitoring/").unwrap();
    kvs.into_iter().map(|kv| (kv.key.clone(), (serde_json::from_slice(&kv.value).unwrap(), kv.version))).collect()
}

/// Every record was written exactly as often as `writes` says (1 when not listed: its first
/// record), so no write was stale, doubled or flapping.
fn assert_writes(store: &Store, writes: &[(String, i64)]) {
    let extra: Vec<(String, i64, i64)> = records(store)
        .into_iter()
        .filter_map(|(k, (_, version))| {
            let want = writes.iter().find(|(w, _)| *w == k).map_or(1, |(_, n)| *n);
            (version != want).then_some((k, version, want))
        })
        .collect();
    assert!(extra.is_empty(), "records written other than once per change (key, writes, expected): {extra:?}");
}

#[test]
fn three_instances_poll_every_object_exactly_once_as_rendezvous_hashing_says() {
    let mut fleet = Fleet::start(41);
    // Instance ids are random: about 1 draw in 140 gives some instance more than 25 % more
    // or fewer shards than 256/3. Such ids are drawn again (an instance restarted) before
    // the claims are checked against them, so the test checks the code, not the dice.
    for _ in 0..5 {
        let ids: Vec<String> = (0..3).map(|i| fleet.id_of(i)).collect();
        let live: Vec<&str> = ids.iter().map(String::as_str).collect();
        let split: Vec<usize> = live.iter().map(|id| shards::assigned(id, &live).len()).collect();
        let Some(lopsided) = split.iter().position(|n| !(64..=107).contains(n)) else { break };
        eprintln!("ids {ids:?} split the shards {split:?}: instance {lopsided} draws a new id");
        fleet.instances[lopsided].0.terminate(LIMIT);
        fleet.instances[lopsided] = fleet.spawn();
    }
    let claims = fleet.wait_settled(&[0, 1, 2]);
    fleet.wait_records("every record UP", &[]);
    let ids: Vec<String> = (0..3).map(|i| fleet.id_of(i)).collect();
    let split: Vec<usize> = ids.iter().map(|id| claims.values().filter(|o| *o == id).count()).collect();
    eprintln!("shards per instance: {split:?}");
    assert!(split.iter().all(|n| (64..=107).contains(n)), "the shards split within ±25 % of even: {split:?}");
    for (i, id) in ids.iter().enumerate() {
        let owned = fleet.metric(i, "esi_monitor_shards_owned");
        assert_eq!(owned as usize, split[i], "{id}: shards_owned is what it claimed");
        assert_eq!(fleet.metric(i, "esi_monitor_members"), 3.0);
    }

    // At the devices: over a window of polls, each port is read about as often as every
    // other one (once per interval), not twice as often as some (two instances polling it).
    let before: Vec<HashMap<u32, u64>> = fleet.agents.iter().map(Snmpd::status_reads).collect();
    let results_before: Vec<f64> =
        (0..3).map(|i| fleet.metric(i, "esi_monitor_probe_results_total{type=\"snmp_port\",outcome=\"up\"}")).collect();
    let reads = || -> Vec<u64> {
        let mut all = Vec::new();
        for (a, agent) in fleet.agents.iter().enumerate() {
            let now = agent.status_reads();
            for p in 0..PORTS {
                let index = 500 + p as u32;
                all.push(now.get(&index).copied().unwrap_or(0) - before[a].get(&index).copied().unwrap_or(0));
            }
        }
        all
    };
    let window = wait_for("every port read 4 times", LIMIT, || {
        let r = reads();
        (r.iter().min() >= Some(&4)).then_some(r)
    });
    let (min, max) = (window.iter().min().unwrap(), window.iter().max().unwrap());
    eprintln!("reads per port in the window: {min}..{max}");
    assert!(*max < 2 * min, "a port read {max} times while another was read {min} times: polled twice");
    // At the instances: every instance polled only its own ports (its results grew by as
    // many as the reads of the ports of its shards, within the polls of the window's edges).
    let reads_after = reads();
    for (i, id) in ids.iter().enumerate() {
        let polled = fleet.metric(i, "esi_monitor_probe_results_total{type=\"snmp_port\",outcome=\"up\"}") - results_before[i];
        let mine: u64 = (0..AGENTS)
            .filter(|a| claims[&shards::shard_of(fleet.agents[*a].addr())] == *id)
            .flat_map(|a| (0..PORTS).map(move |p| a * PORTS + p))
            .map(|k| reads_after[k])
            .sum();
        let ports = (0..AGENTS).filter(|a| claims[&shards::shard_of(fleet.agents[*a].addr())] == *id).count() * PORTS;
        eprintln!("instance {i}: {polled} port results, its agents read {mine} times ({ports} ports)");
        let slack = 2.0 * ports as f64 + 1.0;
        assert!((polled - mine as f64).abs() <= slack, "instance {i}: {polled} results against {mine} reads of its ports");
    }
    assert!(fleet.sim.requests() > 0, "the VMIs are polled");
    assert_writes(&fleet.store, &[]);

    // `esi-monitor status`, run with any member's configuration, names the poller and shows
    // its last results (asked at the poller's own listener).
    let owner = fleet.owner_of_agent(3);
    for (m, _) in &fleet.instances {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
            .args(["status", &format!("ese_physical_ports/{}", port_id(3, 4)), "--config"])
            .arg(&m.config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains(&format!("polled by instance {} on ", ids[owner])), "{text}");
        assert!(text.contains("last UP at"), "the poller's own results: {text}");
    }
}

#[test]
fn a_killed_instances_shards_are_taken_over_and_a_flip_at_that_moment_is_written() {
    let mut fleet = Fleet::start(42);
    fleet.wait_settled(&[0, 1, 2]);
    fleet.wait_records("every record UP", &[]);
    let victim = fleet.owner_of_agent(3);
    let victim_id = fleet.id_of(victim);
    fleet.instances[victim].0.kill9();
    fleet.agents[3].set_up(&port_name(4), false);
    let others: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    fleet.wait_settled(&others);
    assert!(!fleet.claims().values().any(|o| *o == victim_id), "no claim of the dead instance is left");
    fleet.wait_records("the flip written by the new owner", &[(3, 4)]);
    fleet.agents[3].set_up(&port_name(4), true);
    fleet.wait_records("and back", &[]);
    let taken: f64 = others.iter().map(|i| fleet.metric(*i, "esi_monitor_handovers_total{way=\"taken\"}")).sum();
    assert!(taken >= 1.0, "the survivors count shards taken over: {taken}");
    assert_writes(&fleet.store, &[(record_key("ese_physical_ports", &port_id(3, 4)), 3)]);
}

#[test]
fn a_frozen_instance_is_fenced_and_rejoins() {
    let fleet = Fleet::start(43);
    fleet.wait_settled(&[0, 1, 2]);
    fleet.wait_records("every record UP", &[]);
    let frozen = fleet.owner_of_agent(5);
    let frozen_id = fleet.id_of(frozen);
    let owned: Vec<(usize, usize)> = (0..AGENTS)
        .filter(|a| fleet.owner_of_agent(*a) == frozen)
        .flat_map(|a| [(a, 1), (a, 2)])
        .collect();
    fleet.instances[frozen].0.signal("STOP");
    let others: Vec<usize> = (0..3).filter(|i| *i != frozen).collect();
    // Its lease expires: the others hold every shard, and write the flips of its ports.
    wait_for("the frozen instance's claims to go", LIMIT, || {
        let claims = fleet.claims();
        (claims.len() == 256 && !claims.values().any(|o| *o == frozen_id)).then_some(())
    });
    for (a, p) in &owned {
        fleet.agents[*a].set_up(&port_name(*p), false);
    }
    fleet.wait_records("the flips written by the others", &owned);
    fleet.instances[frozen].0.signal("CONT");
    // It fences itself first, then joins again on a new lease.
    wait_for("the woken instance to fence itself and rejoin", LIMIT, || {
        let log = fleet.instances[frozen].0.log_text();
        let fenced = log.find("may have expired")?;
        log[fenced..].contains("joined the polling as member").then_some(())
    });
    fleet.wait_settled(&[0, 1, 2]);
    assert!(fleet.claims().values().any(|o| *o == frozen_id), "the woken instance holds shards again");
    // Nothing it did after waking undid the others' writes.
    fleet.wait_records("the flips still in place", &owned);
    let writes: Vec<(String, i64)> = owned.iter().map(|(a, p)| (record_key("ese_physical_ports", &port_id(*a, *p)), 2)).collect();
    assert_writes(&fleet.store, &writes);
    for (a, p) in &owned {
        fleet.agents[*a].set_up(&port_name(*p), true);
    }
    fleet.wait_records("back up, written by the owners", &[]);
    let withheld: f64 = fleet.metric(frozen, "esi_monitor_fenced_writes_total");
    eprintln!("writes the woken instance withheld or had refused: {withheld}; the others took {} shards over",
        others.iter().map(|i| fleet.metric(*i, "esi_monitor_handovers_total{way=\"taken\"}")).sum::<f64>());
}

#[test]
fn a_rolling_restart_loses_no_flip_and_flaps_no_record() {
    let mut fleet = Fleet::start(44);
    fleet.wait_settled(&[0, 1, 2]);
    fleet.wait_records("every record UP", &[]);
    let mut writes = Vec::new();
    let mut running = vec![0, 1, 2];
    for round in 0..3 {
        // Flip a port of the instance about to stop, as it stops.
        let a = (0..AGENTS).find(|a| fleet.owner_of_agent(*a) == running[0]).expect("it owns an agent");
        let p = round + 5;
        fleet.agents[a].set_up(&port_name(p), false);
        fleet.instances[running[0]].0.terminate(LIMIT);
        let restarted = fleet.start_instance();
        running.remove(0);
        running.push(restarted);
        fleet.wait_records("the flip made during the restart", &[(a, p)]);
        fleet.agents[a].set_up(&port_name(p), true);
        fleet.wait_settled(&running);
        fleet.wait_records("back up", &[]);
        writes.push((record_key("ese_physical_ports", &port_id(a, p)), 3));
    }
    assert_writes(&fleet.store, &writes);
}

#[test]
fn etcd_losing_its_leader_or_restarting_loses_no_status_and_the_instances_recover() {
    let mut fleet = Fleet::start(45);
    fleet.wait_settled(&[0, 1, 2]);
    fleet.wait_records("every record UP", &[]);
    let pids: Vec<u32> = fleet.instances.iter().map(|(m, _)| m.child.id()).collect();

    let leader = fleet.etcd.wait_leader();
    fleet.etcd.kill(leader);
    fleet.agents[7].set_up(&port_name(3), false);
    fleet.wait_records("a flip while the leader is gone", &[(7, 3)]);
    fleet.etcd.restart(leader);

    for i in 0..3 {
        fleet.etcd.kill(i);
    }
    fleet.agents[8].set_up(&port_name(6), false);
    for i in 0..3 {
        fleet.etcd.restart(i);
    }
    fleet.etcd.wait_leader();
    fleet.wait_records("a flip while etcd was down", &[(7, 3), (8, 6)]);
    fleet.agents[7].set_up(&port_name(3), true);
    fleet.agents[8].set_up(&port_name(6), true);
    fleet.wait_records("both back up", &[]);
    for (i, (m, _)) in fleet.instances.iter_mut().enumerate() {
        assert!(m.is_running(), "instance {i} still runs");
        assert_eq!(m.child.id(), pids[i]);
    }
    fleet.wait_settled(&[0, 1, 2]);
    // Ports that never flipped were never written again; the flipped ones show both changes
    // (an answer lost with etcd may have made one of them be written twice).
    let got = records(&fleet.store);
    for (key, (_, version)) in &got {
        let flipped = key.ends_with(&port_id(7, 3)) || key.ends_with(&port_id(8, 6));
        match flipped {
            true => assert!((3..=4).contains(version), "{key}: written {version} times for two changes"),
            false => assert_eq!(*version, 1, "{key}: written again though it never changed"),
        }
    }
}
