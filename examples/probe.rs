//! The operators' probe runner: checks one device or object by hand, with the same plugin
//! code the service uses, and prints the status, the raw values read and the time taken.
//!
//! ```text
//! cargo run --example probe -- physical_port device_ip=127.0.0.1 port=16100 community_name=public name=xe-0/0/4
//! cargo run --example probe -- switch ip=10.0.0.1 community_name=public --repeat 5 --interval 2
//! cargo run --example probe -- virtual_machine_interface fq_name=default-domain:admin:p1 --analytics http://127.0.0.1:8081
//! cargo run --example probe -- etcd_reader etcd_type=ha_interface etcd_id=X --etcd http://127.0.0.1:2379
//! ```
//! `--config FILE` takes the analytics URL, etcd endpoints and SNMP settings from an
//! esi-monitor configuration file. Community strings and passwords are never printed.

use esi_monitor::config::Config;
use esi_monitor::keys::Plurals;
use esi_monitor::plugins::contrail::Contrail;
use esi_monitor::plugins::snmp::{Device, Devices, SnmpSettings};
use esi_monitor::plugins::{etcd_reader, Kind, Object, Probe};
use esi_monitor::store::Store;
use serde_json::{Map, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: probe TYPE key=value... [--repeat N] [--interval S] [--config FILE]
             [--analytics URL] [--etcd URL] [--snmp-timeout-ms MS] [--snmp-retries N]
types: virtual_machine_interface virtual_network physical_port logical_port switch router etcd_reader";

struct Args {
    object: Object,
    repeat: u32,
    interval: Duration,
    config: Config,
}

fn parse_args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    let type_name = argv.next().ok_or(USAGE)?;
    let mut props = Map::new();
    props.insert("type".into(), Value::String(type_name.clone()));
    let (mut repeat, mut interval, mut config) = (1, Duration::from_secs(1), Config::default());
    let mut overrides: Vec<(String, String)> = Vec::new();
    while let Some(arg) = argv.next() {
        if let Some(flag) = arg.strip_prefix("--") {
            let value = argv.next().ok_or_else(|| format!("--{flag} needs a value\n{USAGE}"))?;
            match flag {
                "repeat" => repeat = value.parse().map_err(|_| format!("--repeat {value:?} is not a count"))?,
                "interval" => {
                    let s: f64 = value.parse().map_err(|_| format!("--interval {value:?} is not seconds"))?;
                    interval = Duration::from_secs_f64(s.max(0.0));
                }
                "config" => config = Config::load(std::path::Path::new(&value))?,
                _ => overrides.push((flag.to_string(), value)),
            }
        } else if let Some((k, v)) = arg.split_once('=') {
            props.insert(k.to_string(), typed(v));
        } else {
            return Err(format!("{arg:?} is neither key=value nor an option\n{USAGE}"));
        }
    }
    for (flag, value) in overrides {
        match flag.as_str() {
            "analytics" => config.contrail.analytics_url = value,
            "etcd" => config.etcd.endpoints = vec![value],
            "snmp-timeout-ms" => config.snmp.timeout_ms = value.parse().map_err(|_| format!("--{flag} {value:?}"))?,
            "snmp-retries" => config.snmp.retries = value.parse().map_err(|_| format!("--{flag} {value:?}"))?,
            _ => return Err(format!("unknown option --{flag}\n{USAGE}")),
        }
    }
    let object = Object::check(&type_name, &props)?;
    Ok(Args { object, repeat: repeat.max(1), interval, config })
}

/// `port=161` is a number, `flag=true` a boolean, anything else text (as YAML would read it).
fn typed(v: &str) -> Value {
    if let Ok(n) = v.parse::<i64>() {
        return Value::from(n);
    }
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(v.to_string()),
    }
}

/// Probes once; returns the status and the raw values behind it.
struct Prober {
    contrail: Contrail,
    snmp: Devices,
    store: Option<Store>,
    plurals: Plurals,
}

impl Prober {
    fn new(config: &Config, kind: Kind) -> Result<Prober, String> {
        let store = match kind {
            Kind::EtcdReader => Some(Store::connect(&config.etcd).map_err(|e| e.to_string())?),
            _ => None,
        };
        Ok(Prober {
            contrail: Contrail::new(&config.contrail.analytics_url, config.contrail_timeout()),
            snmp: Devices::new(SnmpSettings::from_config(config)),
            store,
            plurals: Plurals::new(&config.plurals),
        })
    }

    fn probe(&self, o: &Object) -> Result<(Probe, String), String> {
        Ok(match o.kind {
            Kind::VirtualMachineInterface => {
                let raw = self.contrail.vmi_uve(&o.text("fq_name"));
                (self.contrail.probe_vmi(&o.text("fq_name")), describe_uve(raw))
            }
            Kind::VirtualNetwork => {
                let raw = self.contrail.vn_uve(&o.text("fq_name"));
                (self.contrail.probe_vn(&o.text("fq_name")), describe_uve(raw))
            }
            Kind::PhysicalPort | Kind::LogicalPort => {
                let device = Device::of(o, self.snmp.settings())?;
                let r = self.snmp.ports_detailed(&device, &[o.text("name")]).remove(0);
                (r.probe, format!("ifIndex {}, ifOperStatus {}", opt(r.if_index), opt(r.oper_status)))
            }
            Kind::Switch | Kind::Router => {
                let device = Device::of(o, self.snmp.settings())?;
                let r = self.snmp.uptime_detailed(&device);
                let reboot = if r.rebooted { " (went back: the device restarted)" } else { "" };
                (r.probe, format!("sysUpTime {} ticks, previous {}{reboot}", opt(r.ticks), opt(r.previous)))
            }
            Kind::EtcdReader => {
                let store = self.store.as_ref().ok_or("no etcd connection")?;
                let p = etcd_reader::probe(store, &self.plurals, &o.text("etcd_type"), &o.text("etcd_id"));
                (p, "read /monitoring, then /state".into())
            }
            _ => return Err(format!("type {} cannot be probed by this version", o.text("type"))),
        })
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn describe_uve(raw: Result<Value, String>) -> String {
    match raw {
        Ok(v) => {
            let text = v.to_string();
            if text.len() > 300 { format!("UVE {}… ({} bytes)", &text[..300], text.len()) } else { format!("UVE {text}") }
        }
        Err(e) => format!("no UVE: {e}"),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("probe: {e}");
            return ExitCode::from(2);
        }
    };
    let prober = match Prober::new(&args.config, args.object.kind) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut last = None;
    for i in 1..=args.repeat {
        let started = Instant::now();
        match prober.probe(&args.object) {
            Ok((p, raw)) => {
                println!("#{i} {:<10} {raw}  [{:.1} ms]", p.to_string(), started.elapsed().as_secs_f64() * 1000.0);
                last = Some(p);
            }
            Err(e) => {
                eprintln!("probe: {e}");
                return ExitCode::FAILURE;
            }
        }
        if i < args.repeat {
            std::thread::sleep(args.interval);
        }
    }
    match last {
        Some(Probe::Up) | Some(Probe::State(_)) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
