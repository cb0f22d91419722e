//! `esi-monitor probe`: checks one device or object by hand, with the plugin code the
//! service polls with, and prints the status, the raw values read and the time taken. It
//! is in the shipped binary because operators on a controller have the package, not cargo;
//! `examples/probe` is the same command. Community strings and passwords are never printed.

use crate::config::Config;
use crate::keys::Plurals;
use crate::plugins::contrail::Contrail;
use crate::plugins::snmp::{Device, Devices, SnmpSettings};
use crate::plugins::{etcd_reader, Kind, Object, Probe};
use crate::store::Store;
use argh::FromArgs;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Probe one object the way the service polls it and print the status, the raw values
/// read and the time taken (never the community or a password). Exit code 0 for UP (or a
/// named state), 1 otherwise, 2 for a usage error.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "probe",
    example = "{command_name} physical_port device_ip=10.0.0.1 community_name=public name=xe-0/0/4",
    example = "{command_name} switch ip=10.0.0.1 community_name=public --repeat 10 --interval 5",
    example = "{command_name} virtual_machine_interface fq_name=default-domain:admin:UUID --analytics http://ANALYTICS:8081",
    example = "{command_name} etcd_reader etcd_type=ha_interface etcd_id=UUID --etcd http://127.0.0.1:2379",
    note = "Types: virtual_machine_interface virtual_network physical_port logical_port switch router etcd_reader.
The properties are the object's, as its monitoring template renders them; `port=161` is a number, `x=true` a boolean."
)]
pub struct ProbeArgs {
    /// the object's type (see Types below)
    #[argh(positional, arg_name = "type")]
    pub type_name: String,
    /// the object's properties, as key=value (device_ip=…, community_name=…, name=…)
    #[argh(positional, arg_name = "key=value")]
    pub props: Vec<String>,
    /// probe this many times (default 1)
    #[argh(option, default = "1")]
    pub repeat: u32,
    /// seconds between two probes (default 1)
    #[argh(option, default = "1.0")]
    pub interval: f64,
    /// take the analytics URL, etcd connection and SNMP settings from this configuration
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// the Contrail analytics URL (overrides the configuration)
    #[argh(option)]
    pub analytics: Option<String>,
    /// the etcd endpoint, for etcd_reader (overrides the configuration)
    #[argh(option)]
    pub etcd: Option<String>,
    /// wait this long for an SNMP answer (overrides snmp.timeout_ms)
    #[argh(option)]
    pub snmp_timeout_ms: Option<u64>,
    /// SNMP requests re-sent after a timeout (overrides snmp.retries)
    #[argh(option)]
    pub snmp_retries: Option<u32>,
}

/// What went wrong: the arguments (exit 2), or the probe itself (exit 1).
enum Failure {
    Usage(String),
    Probe(String),
}

/// Runs the probe; `name` starts every error line (`esi-monitor probe`, or `probe`).
pub fn main(name: &str, args: ProbeArgs) -> ExitCode {
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Failure::Usage(e)) => {
            eprintln!("{name}: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Probe(e)) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Probes `args.repeat` times and prints a line each; whether the last probe was good.
fn run(args: &ProbeArgs) -> Result<bool, Failure> {
    let config = config(args).map_err(Failure::Usage)?;
    let object = object(&args.type_name, &args.props).map_err(Failure::Usage)?;
    if !args.interval.is_finite() || args.interval < 0.0 {
        return Err(Failure::Usage(format!("--interval {} is not a number of seconds", args.interval)));
    }
    let prober = Prober::new(&config, object.kind).map_err(Failure::Probe)?;
    let repeat = args.repeat.max(1);
    let mut good = false;
    for i in 1..=repeat {
        let started = Instant::now();
        let (probe, raw) = prober.probe(&object).map_err(Failure::Probe)?;
        println!("#{i} {:<10} {raw}  [{:.1} ms]", probe.to_string(), started.elapsed().as_secs_f64() * 1000.0);
        good = matches!(probe, Probe::Up | Probe::State(_));
        if i < repeat {
            std::thread::sleep(Duration::from_secs_f64(args.interval));
        }
    }
    Ok(good)
}

/// The configuration file's settings (or the defaults), with the options on top.
fn config(args: &ProbeArgs) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(url) = &args.analytics {
        config.contrail.analytics_url = url.clone();
    }
    if let Some(endpoint) = &args.etcd {
        config.etcd.endpoints = vec![endpoint.clone()];
    }
    if let Some(ms) = args.snmp_timeout_ms {
        config.snmp.timeout_ms = ms;
    }
    if let Some(n) = args.snmp_retries {
        config.snmp.retries = n;
    }
    Ok(config)
}

/// The object the arguments describe, checked as a template's object is.
fn object(type_name: &str, pairs: &[String]) -> Result<Object, String> {
    let mut props = Map::new();
    props.insert("type".into(), Value::String(type_name.to_string()));
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not key=value"))?;
        props.insert(k.to_string(), typed(v));
    }
    Object::check(type_name, &props)
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
            match text.char_indices().nth(300) {
                Some((cut, _)) => format!("UVE {}… ({} bytes)", &text[..cut], text.len()),
                None => format!("UVE {text}"),
            }
        }
        Err(e) => format!("no UVE: {e}"),
    }
}
