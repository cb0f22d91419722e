//! `esi-monitor probe`: checks one device or object by hand, with the plugin code the
//! service polls with, and prints the status, the raw values read and the time taken. It
//! is in the shipped binary because operators on a controller have the package, not cargo;
//! `examples/probe` is the same command. Community strings and passwords are never printed.

use crate::config::Config;
use crate::plugins::{etcd_reader, Clients, Object, Probe, Type, TYPES};
use crate::store::Store;
use argh::FromArgs;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Probe one object the way the service polls it and print the status, the raw values
/// read and the time taken (never the community or a password). Exit code 0 when healthy
/// (UP, the wanted_status, ESTABLISHED), 1 otherwise, 2 for a usage error.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "probe",
    example = "{command_name} physical_port device_ip=10.0.0.1 community_name=public name=xe-0/0/4",
    example = "{command_name} switch ip=10.0.0.1 community_name=public --repeat 10 --interval 5",
    example = "{command_name} virtual_machine_interface fq_name=default-domain:admin:UUID --analytics http://ANALYTICS:8081",
    example = "{command_name} etcd_reader etcd_type=ha_interface etcd_id=UUID --etcd http://127.0.0.1:2379",
    example = "{command_name} vrrp_session host=10.0.0.1 login=esi password=- interface=ae0.1025 vrid=20 wanted_status=master",
    example = "{command_name} nova_vm server_id=UUID --config /etc/esi-monitor/config.yaml",
    example = "{command_name} list",
    note = "`{command_name} list` prints every plugin type with example properties and the options that apply.
The properties are the object's, as its monitoring template renders them; `port=161` is a number, `x=true` a boolean;
`password=-` reads the value from standard input."
)]
pub struct ProbeArgs {
    /// the object's type, or `list` for the list of types
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
    /// take the analytics URL, etcd connection and the SNMP, NETCONF and Nova settings from this configuration
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
    if args.type_name == "list" {
        println!("{}", types());
        return Ok(true);
    }
    if Type::named(&args.type_name).is_none() {
        return Err(Failure::Usage(format!("unknown type {:?}; the types and example props:\n{}", args.type_name, types())));
    }
    let object = object(&args.type_name, &args.props).map_err(Failure::Usage)?;
    if !args.interval.is_finite() || args.interval < 0.0 {
        return Err(Failure::Usage(format!("--interval {} is not a number of seconds", args.interval)));
    }
    let Some(prober) = object.kind.prober else {
        return Err(Failure::Usage(format!("objects of type {} are never probed", object.kind.name)));
    };
    // Only etcd_reader reads etcd: no other probe needs (or waits for) a connection.
    let store = match std::ptr::eq(prober, &etcd_reader::READER) {
        true => Some(Store::connect(&config.etcd).map_err(|e| Failure::Probe(e.to_string()))?),
        false => None,
    };
    let clients = Clients::new(&config, store).map_err(Failure::Usage)?;
    let repeat = args.repeat.max(1);
    let mut good = false;
    for i in 1..=repeat {
        let started = Instant::now();
        let (probe, raw) = (prober.probe)(&clients, &object);
        println!("#{i} {:<10} {raw}  [{:.1} ms]", probe.to_string(), started.elapsed().as_secs_f64() * 1000.0);
        // Healthy: what the object waits for (UP, its wanted_status, ESTABLISHED); a named
        // state counts when the object names no wanted_status.
        good = object.is_success(&probe) || matches!(probe, Probe::State(_)) && object.wanted().is_empty();
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
        let value = match v {
            // `password=-`: read from standard input, so that it stays out of `ps` and history.
            "-" => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map_err(|e| format!("{k}=-: reading standard input: {e}"))?;
                Value::String(line.trim_end_matches(['\r', '\n']).to_string())
            }
            v => typed(v),
        };
        props.insert(k.to_string(), value);
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

/// Every type with example props and the options that apply to it.
fn types() -> String {
    TYPES
        .iter()
        .map(|t| match t.prober {
            Some(p) => format!("  {} {}    [{}]", t.name, t.example, p.options),
            None => format!("  {} (never probed)", t.name),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
