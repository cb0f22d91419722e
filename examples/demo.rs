//! `make demo`: shows esi-monitor doing the original monitoring_worker's job, end to end, on
//! one machine and in a few seconds, for an operator who wants to see what it writes.
//!
//! It starts a throwaway etcd and the Contrail analytics simulator (both on loopback), loads
//! the 23 recorded templates, starts `esi-monitor run` the way the original job manager
//! setup ran the worker (`jobs: {cleanup: false}`), then replays three recorded flows by
//! applying the writes of gohan, the job manager and heat_worker in their recorded order:
//!
//! - `igw/port-7abe783f…`: the seed 002 modify flow (create v1, then delete v2 → modify heat
//!   → create v2),
//! - `cfg/ese_device-9f05b260…`: heat job, then monitoring job,
//! - `cfg/network-f2de53ae…`: output_key params and a db_mappings row.
//!
//! Wherever the original monitoring_worker claimed a job, the replay waits until esi-monitor
//! has finished that job (`/jobs/finished/<id>`) before going on, as the job manager did;
//! otherwise the manager's later deletes would remove jobs before they run. At the end it
//! prints every job state, `/state` record (embedded JSON strings parsed), registry entry,
//! resource-mapping row and `/monitoring` record, and the last lines of esi-monitor's log.
//! Everything it started is stopped by drop guards, also on error. Exit code 1 when a wait
//! timed out or anything else failed.

mod support;

use esi_monitor::store::Store;
use serde_json::Value;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::fixtures::{self, Flow};
use support::process::Proc;

/// The seed flows, as (run, file-name prefix).
const FLOWS: &[(&str, &str)] = &[
    ("igw", "port-7abe783f"),
    ("cfg", "ese_device-9f05b260"),
    ("cfg", "network-f2de53ae"),
];

/// How long one monitoring job may take before the demo gives up.
const JOB_WAIT: Duration = Duration::from_secs(10);
/// How long the demo waits for the first poll results (not an error when missing).
const MONITORING_WAIT: Duration = Duration::from_secs(4);
const POLL: Duration = Duration::from_millis(20);

fn main() -> ExitCode {
    let started = Instant::now();
    match run() {
        Ok(()) => {
            println!("\ndemo finished in {:.1} s; everything it started is stopped", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo FAILED after {:.1} s: {e}", started.elapsed().as_secs_f64());
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let esi_monitor = support::sibling_binary("esi-monitor")?;
    let contrail_sim = support::sibling_binary("examples/contrail_sim")?;
    let flows: Vec<Flow> = FLOWS.iter().map(|(run, prefix)| fixtures::find_flow(run, prefix)).collect::<Result<_, _>>()?;

    println!("== starting a throwaway etcd {} on loopback", Etcd::version());
    let etcd = Etcd::start();
    let store = etcd.store();
    println!("   {} (pid {})", etcd.endpoint, etcd.pid());
    let n = fixtures::load_templates(&store)?;
    println!("   loaded {n} monitoring templates under /config/v2.0/heat_templates/");

    // The simulator answers for the port's interface (up) and the network, so that the
    // poller has something to report; the switch of the ese_device (10.x) stays unreachable.
    let sim_args = simulator_objects(&flows);
    let (sim, sim_url) = Proc::contrail_sim(&contrail_sim, &format!("127.0.0.1:{}", support::free_port()), &sim_args)?;
    println!("== Contrail analytics simulator on {sim_url} (pid {}), serving {}", sim.pid(), sim_args.join(" "));

    let config = format!(
        "etcd: {{endpoints: [\"{}\"], lease_ttl_s: 10}}\n\
         jobs: {{handler: monitoring_worker, cleanup: false, verify: false}}\n\
         worker: {{threads: 4, queue: 1024}}\n\
         contrail: {{analytics_url: \"{sim_url}\", timeout_ms: 2000}}\n\
         log: {{level: debug}}\n\
         metrics: {{listen: \"\"}}\n",
        etcd.endpoint
    );
    let mut monitor = Proc::esi_monitor(&esi_monitor, &config)?;
    println!("== esi-monitor run (pid {}), jobs.cleanup false (the original job manager cleans up)", monitor.pid());

    for flow in &flows {
        replay(&store, &mut monitor, flow)?;
    }

    // First poll results: the poller probes new objects right after registration.
    let wanted: Vec<String> = flows
        .iter()
        .filter(|f| f.resource_type == "port" || f.resource_type == "network")
        .map(|f| format!("/monitoring/v2.0/{}/{}", f.plural, f.resource_id))
        .collect();
    let polled = support::wait_until("the first /monitoring records", MONITORING_WAIT, POLL, || {
        wanted.iter().all(|k| matches!(store.get(k), Ok(Some(_)))).then_some(())
    });
    if let Err(e) = polled {
        println!("\n(note: {e}; the poller may not have confirmed every status yet)");
    }

    print_results(&store)?;

    println!("\n== last lines of esi-monitor's log ({})", monitor.log.display());
    for line in monitor.log_tail(15) {
        println!("   {line}");
    }
    if !monitor.is_running() {
        return Err("esi-monitor exited during the demo (see its log above)".into());
    }
    monitor.stop();
    drop(sim);
    drop(etcd);
    Ok(())
}

/// `--vmi-up <fq_name>` / `--vn <fq_name>` for the ports and networks of the flows, from the
/// heat outputs heat_worker recorded.
fn simulator_objects(flows: &[Flow]) -> Vec<String> {
    let mut args = Vec::new();
    for flow in flows {
        let flag = match flow.resource_type.as_str() {
            "port" => "--vmi-up",
            "network" => "--vn",
            _ => continue,
        };
        let fq_name = flow
            .events
            .iter()
            .rev()
            .filter(|e| e.writer == "heat_worker" && e.key.starts_with("/esi-worker/job_state/"))
            .filter_map(|e| e.value.as_ref()?.get("heat_outputs")?.as_array().cloned())
            .flatten()
            .find(|o| o["output_key"] == "fq_name")
            .and_then(|o| o["output_value"].as_str().map(str::to_string));
        if let Some(name) = fq_name {
            args.push(flag.to_string());
            args.push(name);
        }
    }
    args
}

/// Applies the recorded writes of one flow; at each job the original monitoring_worker
/// claimed, waits for esi-monitor to finish it.
fn replay(store: &Store, monitor: &mut Proc, flow: &Flow) -> Result<(), String> {
    println!("\n== replaying {}/{} ({} {}, {} recorded writes)", flow.run, flow.file, flow.resource_type, flow.resource_id, flow.events.len());
    let (mut applied, mut jobs) = (0, 0);
    for ev in &flow.events {
        match ev.writer.as_str() {
            // esi-monitor does the monitoring_worker's part; the poller the collectors'.
            "collector" => {}
            "monitoring_worker" => {
                let Some(id) = ev.key.strip_prefix("/jobs/working/") else { continue };
                if ev.action != "create" {
                    continue;
                }
                let t = Instant::now();
                // A prefix read also finds a job whose recorded key was cut short.
                let finished_prefix = format!("/jobs/finished/{id}");
                let finished = support::wait_until(&format!("esi-monitor to finish job {id}"), JOB_WAIT, POLL, || {
                    if !monitor.is_running() {
                        return Some(Err("esi-monitor exited".to_string()));
                    }
                    match store.range(&finished_prefix) {
                        Ok((kvs, _)) => kvs.into_iter().next().map(Ok),
                        Err(e) => Some(Err(e.to_string())),
                    }
                })??;
                let outcome = match finished.value_str() {
                    "" => "done".to_string(),
                    other => format!("FAILED {other}"),
                };
                println!("   job {id}: {outcome} (seen {} ms after its turn came)", t.elapsed().as_millis());
                jobs += 1;
            }
            _ => {
                let result = if ev.is_delete() { store.delete(&ev.key) } else { store.put(&ev.key, ev.text()) };
                result.map_err(|e| format!("replaying {} of {}: {e}", ev.action, ev.key))?;
                applied += 1;
            }
        }
    }
    println!("   applied {applied} writes of gohan, job_manager and heat_worker; esi-monitor ran {jobs} jobs");
    Ok(())
}

/// Prints what esi-monitor left in etcd, readable for an operator.
fn print_results(store: &Store) -> Result<(), String> {
    let sections: &[(&str, &str, &str)] = &[
        ("/esi-worker/job_state/", "job states", "(none left: the last job of each workflow removes its job state)"),
        ("/state/", "workflow results (/state; JSON strings inside `state` shown parsed)", "(none)"),
        ("/esi-worker/monitoring/", "registry of monitored objects (secrets masked)", "(none)"),
        ("/esi-worker/resource_mappings/", "resource mappings (db_mappings rows)", "(none)"),
        ("/monitoring/", "live status written by the poller", "(none yet)"),
    ];
    for (prefix, title, empty) in sections {
        let (kvs, _) = store.range(prefix).map_err(|e| e.to_string())?;
        println!("\n== {title}: {prefix}");
        if kvs.is_empty() {
            println!("   {empty}");
        }
        for kv in kvs {
            let value: Value = match serde_json::from_slice(&kv.value) {
                Ok(v) => v,
                Err(_) => Value::String(kv.value_str().to_string()),
            };
            if *prefix == "/esi-worker/resource_mappings/" {
                println!("   {}", mapping_line(&value));
                continue;
            }
            let shown = match *prefix {
                "/state/" => parse_state_strings(value),
                "/esi-worker/monitoring/" => mask_secrets(value),
                _ => value,
            };
            println!("   {}", kv.key);
            let pretty = serde_json::to_string_pretty(&shown).unwrap_or_default();
            for line in pretty.lines() {
                println!("      {line}");
            }
        }
    }
    Ok(())
}

/// `/state` records hold every job-state key as a JSON string: show them parsed.
fn parse_state_strings(mut v: Value) -> Value {
    if let Some(state) = v.get_mut("state").and_then(Value::as_object_mut) {
        for item in state.values_mut() {
            if let Value::String(s) = item {
                if let Ok(parsed @ (Value::Array(_) | Value::Object(_))) = serde_json::from_str::<Value>(s) {
                    *item = parsed;
                }
            }
        }
    }
    v
}

fn mask_secrets(mut v: Value) -> Value {
    if let Some(objects) = v.get_mut("objects").and_then(Value::as_object_mut) {
        for props in objects.values_mut().filter_map(Value::as_object_mut) {
            for secret in ["password", "community_name"] {
                if let Some(s) = props.get_mut(secret) {
                    *s = Value::String("***".into());
                }
            }
        }
    }
    v
}

fn mapping_line(row: &Value) -> String {
    let f = |k: &str| match &row[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    format!(
        "{} {} → mapped {} ({}), tenant {}, created {}, deleted {}  [row {}]",
        f("resource_type"),
        f("resource_id"),
        f("mapped_id"),
        f("relation"),
        f("tenant_id"),
        f("created"),
        f("deleted"),
        f("id")
    )
}
