//! The SNMP plugin types of SPEC §4 (`physical_port`, `logical_port`, `switch`, `router`),
//! SNMPv2c and SNMPv3 (the object's `community_name` may name a credential profile of
//! `snmp.credentials`, SPEC §4.3), for verify mode and for the poller.
//!
//! It exists so that the rest of the program only sees [`Probe`] values and one shared
//! [`Devices`] value, while the SNMP knowledge lives here: which OIDs, how an ifName is
//! turned into an ifIndex (a GETBULK walk, cached per device and refreshed when a name is
//! missing, when the device rebooted, when a cached ifIndex no longer carries its name, and
//! every `monitoring.rewalk_s`), how many ports of one device are read with ONE
//! multi-varbind GET (split in halves on tooBig), and how a sysUpTime reading becomes
//! UP/DOWN. Per device there is one mutex, held for the whole exchange: at most one request
//! is in flight per device, and a device that does not answer blocks only its own callers.
//!
//! Wire correctness (see `wire.rs`): every attempt carries a fresh request id, replies are
//! matched on it, and each call uses its own socket, so a reply that arrives after its
//! request timed out is dropped, never taken as the answer to a later question. Every
//! failure (timeout, error-status, noSuchObject/noSuchInstance, endOfMibView, wrong
//! community, which an agent answers with silence, or a v3 user the agent refuses) is a
//! [`Probe::NoAnswer`] naming the device and the object, plus one log line; community
//! strings, passwords and keys never appear in either.

mod ber;
pub mod credentials;
mod message;
mod ports;
pub mod traps;
pub mod usm;
mod wire;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Clients, Object, Probe, Prober, UnitKey};
use ber::Val;
use credentials::{Credential, Profiles};
use wire::{Counters, Engine, Failure, Security, Session, SYS_UPTIME};

/// Two sysUpTime readings compared must be at least this far apart.
const UPTIME_GAP: Duration = Duration::from_secs(1);

/// What the SNMP probes need from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnmpSettings {
    /// Agent port when the object has no `port` prop.
    pub port: u16,
    /// Wait for one attempt's answer.
    pub timeout: Duration,
    /// Extra attempts after the first: no answer after `timeout × (retries + 1)`.
    pub retries: u32,
    /// Age after which a device's ifName → ifIndex table is walked again.
    pub rewalk: Duration,
}

impl SnmpSettings {
    pub fn from_config(c: &crate::config::Config) -> SnmpSettings {
        SnmpSettings {
            port: c.snmp.port,
            timeout: Duration::from_millis(c.snmp.timeout_ms),
            retries: c.snmp.retries,
            rewalk: Duration::from_secs(c.monitoring.rewalk_s),
        }
    }
}

/// One SNMP agent as the objects name it. Two objects with the same address, port and
/// community (or profile) name share the device's cache and its one-request-at-a-time lock.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Device {
    pub ip: IpAddr,
    pub port: u16,
    pub community: String,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("ip", &self.ip)
            .field("port", &self.port)
            .field("community", &"***")
            .finish()
    }
}

/// `ip:port` (`[v6]:port`), never the community.
impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr())
    }
}

impl Device {
    /// The device an SNMP object talks to: `device_ip` for ports, `ip` for switches and
    /// routers; the `port` prop overrides `settings.port`; the community is `community_name`.
    pub fn of(object: &Object, settings: &SnmpSettings) -> Result<Device, String> {
        let ip_prop = match object.kind.prober {
            Some(p) if std::ptr::eq(p, &PORTS) => "device_ip",
            Some(p) if std::ptr::eq(p, &UPTIME) => "ip",
            _ => return Err(format!("object {:?} is not an SNMP object", object.name)),
        };
        let text = object.text(ip_prop);
        let ip = text.trim().parse::<IpAddr>().map_err(|_| {
            format!(
                "object {:?}: {ip_prop} {text:?} is not an IP address",
                object.name
            )
        })?;
        let port = match object.props.get("port") {
            None | Some(Value::Null) => settings.port,
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
            Some(Value::String(s)) => s.trim().parse::<u16>().unwrap_or(0),
            Some(_) => 0,
        };
        if port == 0 {
            return Err(format!(
                "object {:?}: port {} is not a UDP port",
                object.name,
                object.text("port")
            ));
        }
        Ok(Device {
            ip,
            port,
            community: object.text("community_name"),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// Whether a unit is polled over SNMP (its address is a device that may send traps).
pub fn is_snmp(prober: &'static Prober) -> bool {
    std::ptr::eq(prober, &PORTS) || std::ptr::eq(prober, &UPTIME)
}

/// The unit of an SNMP object: its device (address, port, community).
fn device_unit(prober: &'static Prober, o: &Object, c: &Clients, ask: String) -> Result<(UnitKey, String), String> {
    let d = Device::of(o, c.snmp.settings())?;
    Ok((UnitKey::new(prober, d.addr().to_string(), d.community, String::new()), ask))
}

/// The device a unit key names (built by `device_unit`).
fn device_of(key: &UnitKey) -> Result<Device, String> {
    let addr: SocketAddr = key.addr.parse().map_err(|_| format!("{} is not an SNMP address", key.addr))?;
    Ok(Device { ip: addr.ip(), port: addr.port(), community: key.auth.clone() })
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// `physical_port`, `logical_port`: all polled ports of a device in one GET.
pub static PORTS: Prober = Prober {
    label: "snmp_port",
    unit: Some(|o, c| device_unit(&PORTS, o, c, o.text("name"))),
    poll: |c, key, names| match device_of(key) {
        Ok(d) => c.snmp.ports(&d, names),
        Err(why) => super::each(names, Probe::NoAnswer(why)),
    },
    probe: |c, o| {
        let device = match Device::of(o, c.snmp.settings()) {
            Ok(d) => d,
            Err(why) => return (Probe::NoAnswer(why.clone()), why),
        };
        let name = o.text("name");
        match c.snmp.ports_detailed(&device, std::slice::from_ref(&name)).pop() {
            Some(r) => (r.probe, format!("ifIndex {}, ifOperStatus {}", opt(r.if_index), opt(r.oper_status))),
            None => (Probe::NoAnswer(format!("{name} on {device}: no reading")), "no reading".into()),
        }
    },
    bulk: 1,
    device: Some("device_ip"),
    options: "--config FILE (snmp:), --snmp-timeout-ms, --snmp-retries",
};

/// `switch`, `router`: sysUpTime of the device.
pub static UPTIME: Prober = Prober {
    label: "snmp_uptime",
    unit: Some(|o, c| device_unit(&UPTIME, o, c, String::new())),
    poll: |c, key, asks| match device_of(key) {
        Ok(d) => super::each(asks, c.snmp.uptime(&d)),
        Err(why) => super::each(asks, Probe::NoAnswer(why)),
    },
    probe: |c, o| {
        let device = match Device::of(o, c.snmp.settings()) {
            Ok(d) => d,
            Err(why) => return (Probe::NoAnswer(why.clone()), why),
        };
        let r = c.snmp.uptime_detailed(&device);
        let reboot = if r.rebooted { " (went back: the device restarted)" } else { "" };
        (r.probe, format!("sysUpTime {} ticks, previous {}{reboot}", opt(r.ticks), opt(r.previous)))
    },
    bulk: 1,
    device: Some("ip"),
    options: "--config FILE (snmp:), --snmp-timeout-ms, --snmp-retries",
};

/// One port's probe with the raw values behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortReading {
    pub probe: Probe,
    /// The ifIndex the name maps to (when found).
    pub if_index: Option<u32>,
    /// The ifOperStatus read (1 up, 2 down, …), when the agent answered one.
    pub oper_status: Option<i64>,
}

/// A switch/router probe with the raw values behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UptimeReading {
    pub probe: Probe,
    /// sysUpTime read now (TimeTicks).
    pub ticks: Option<u32>,
    /// The reading it was compared with.
    pub previous: Option<u32>,
    /// sysUpTime went back: the device restarted.
    pub rebooted: bool,
}

/// Traffic counters, for the probe runner and the benchmark. `gets` and `bulks` are
/// requests (each may take up to `retries + 1` packets); `timeouts` counts attempts that
/// got no answer, `unanswered` requests that got none after all attempts; `discarded` are
/// datagrams dropped as not the reply awaited (late, other id, malformed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnmpStats {
    pub gets: u64,
    pub bulks: u64,
    pub packets: u64,
    pub timeouts: u64,
    pub unanswered: u64,
    pub discarded: u64,
    pub walks: u64,
}

impl SnmpStats {
    fn of(c: &Counters) -> SnmpStats {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        SnmpStats {
            gets: get(&c.gets),
            bulks: get(&c.bulks),
            packets: get(&c.packets),
            timeouts: get(&c.timeouts),
            unanswered: get(&c.unanswered),
            discarded: get(&c.discarded),
            walks: get(&c.walks),
        }
    }
}

/// Every device's SNMP state, shared by all pool threads (`Send + Sync`).
pub struct Devices {
    settings: SnmpSettings,
    /// The credential profiles; a reload replaces them.
    profiles: RwLock<Arc<Profiles>>,
    /// The devices polled here, for the trap receiver (published by the scheduler).
    senders: RwLock<Arc<traps::Senders>>,
    devices: Mutex<HashMap<Device, Arc<Entry>>>,
    totals: Counters,
}

struct Entry {
    /// Held for a device's whole exchange: one request in flight per device.
    state: Mutex<State>,
    counters: Counters,
    /// ifIndex → ifName of the last walk, readable while an exchange holds `state`
    /// (a linkDown trap names the ifIndex).
    names: Mutex<Arc<HashMap<u32, String>>>,
    /// Set by a coldStart/warmStart trap: the next exchange walks the ifName table again.
    restarted: AtomicBool,
}

#[derive(Default)]
struct State {
    table: Option<IfTable>,
    /// SNMPv3: the agent's engine, once discovered.
    engine: Option<Engine>,
    /// sysUpTime read with the last ports GET (reboot detection for the table).
    ports_uptime: Option<u32>,
    /// The last reading of `uptime()`.
    uptime: Option<Reading>,
}

struct IfTable {
    by_name: HashMap<String, u32>,
    walked_at: Instant,
}

#[derive(Clone, Copy)]
struct Reading {
    ticks: u32,
    at: Instant,
}

impl fmt::Debug for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Devices")
            .field("settings", &self.settings)
            .field("devices", &lock(&self.devices).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Devices {
    /// Devices without credential profiles: every `community_name` is a v2c community.
    pub fn new(settings: SnmpSettings) -> Devices {
        Devices::with_profiles(settings, Profiles::default())
    }

    pub fn with_profiles(settings: SnmpSettings, profiles: Profiles) -> Devices {
        Devices {
            settings,
            profiles: RwLock::new(Arc::new(profiles)),
            senders: RwLock::default(),
            devices: Mutex::new(HashMap::new()),
            totals: Counters::default(),
        }
    }

    /// The credential profiles now.
    pub fn profiles(&self) -> Arc<Profiles> {
        self.profiles.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the profiles of a reloaded configuration: the next request of every device
    /// uses them (a v3 engine already discovered keeps its ID; the keys are made again).
    pub fn set_profiles(&self, profiles: Profiles) {
        *self.profiles.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(profiles);
    }

    /// The devices whose traps are believed now.
    pub fn senders(&self) -> Arc<traps::Senders> {
        self.senders.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the devices polled here (by address, with their objects' `community_name`s).
    pub fn set_senders(&self, senders: traps::Senders) {
        *self.senders.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(senders);
    }

    /// The ifName of `if_index` on the devices at `ip` (any port or profile), from their
    /// last walk; `None` before one.
    pub fn if_name(&self, ip: IpAddr, if_index: u32) -> Option<String> {
        let entries: Vec<Arc<Entry>> =
            lock(&self.devices).iter().filter(|(d, _)| d.ip == ip).map(|(_, e)| Arc::clone(e)).collect();
        entries.iter().find_map(|e| lock(&e.names).get(&if_index).cloned())
    }

    /// A coldStart/warmStart from `ip`: its devices walk their ifName table again at their
    /// next exchange, and forget the sysUpTime reading a restart makes meaningless.
    pub fn restarted(&self, ip: IpAddr) {
        for (_, e) in lock(&self.devices).iter().filter(|(d, _)| d.ip == ip) {
            e.restarted.store(true, Ordering::Relaxed);
        }
    }

    pub fn settings(&self) -> &SnmpSettings {
        &self.settings
    }

    /// Counters over all devices.
    pub fn stats(&self) -> SnmpStats {
        SnmpStats::of(&self.totals)
    }

    /// Counters of one device (`None` before its first probe).
    pub fn device_stats(&self, device: &Device) -> Option<SnmpStats> {
        lock(&self.devices)
            .get(device)
            .map(|e| SnmpStats::of(&e.counters))
    }

    /// Drops a device's state (cache, readings, counters), e.g. when no object uses it any more.
    pub fn forget(&self, device: &Device) {
        lock(&self.devices).remove(device);
    }

    fn entry(&self, device: &Device) -> Arc<Entry> {
        let mut devices = lock(&self.devices);
        if let Some(e) = devices.get(device) {
            return Arc::clone(e);
        }
        let e = Arc::new(Entry {
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            names: Mutex::new(Arc::default()),
            restarted: AtomicBool::new(false),
        });
        devices.insert(device.clone(), Arc::clone(&e));
        e
    }

    /// A session with the credential `device.community` stands for; a v3 one keeps the
    /// engine it discovers in `engine` (the device's state).
    fn session<'a>(
        &'a self,
        device: &Device,
        entry: &'a Entry,
        credential: &'a Credential,
        engine: &'a mut Option<Engine>,
    ) -> Result<Session<'a>, Failure> {
        let security = match credential {
            Credential::Community(c) => Security::Community(c),
            Credential::V3(user) => Security::Usm { user, engine },
        };
        Session::open(device.addr(), security, self.settings.timeout, self.settings.retries, [&entry.counters, &self.totals])
    }

    /// Status of many ports of one device, in the order of `names`: the cached
    /// ifName → ifIndex table (walked with GETBULK when empty, stale, or a name is missing),
    /// then ONE GET with sysUpTime and the ifName and ifOperStatus of every port (split in
    /// halves on tooBig). A name not on the device is a NoAnswer naming it and the device.
    pub fn ports(&self, device: &Device, names: &[String]) -> Vec<Probe> {
        self.ports_detailed(device, names)
            .into_iter()
            .map(|r| r.probe)
            .collect()
    }

    /// [`Devices::ports`] with the ifIndex and ifOperStatus behind each probe.
    pub fn ports_detailed(&self, device: &Device, names: &[String]) -> Vec<PortReading> {
        ports::read(self, device, names)
    }

    /// switch/router: sysUpTime against this device's previous reading (≥ 1 s older;
    /// without one it reads, waits out the second and reads again): increased → Up, the
    /// same → Down, decreased → Down, logged as a restart, and the ifIndex table dropped.
    pub fn uptime(&self, device: &Device) -> Probe {
        self.uptime_detailed(device).probe
    }

    /// [`Devices::uptime`] with the readings behind it.
    pub fn uptime_detailed(&self, device: &Device) -> UptimeReading {
        let entry = self.entry(device);
        let credential = self.profiles().resolve(&device.community);
        let mut guard = lock(&entry.state);
        let state: &mut State = &mut guard;
        if entry.restarted.swap(false, Ordering::Relaxed) {
            state.table = None;
            state.uptime = None;
        }
        let failed = |why: &Failure, previous: Option<u32>| {
            let why = format!("sysUpTime of {device}: {why}");
            log::warn!("SNMP {why}");
            UptimeReading {
                probe: Probe::NoAnswer(why),
                ticks: None,
                previous,
                rebooted: false,
            }
        };
        let mut session = match self.session(device, &entry, &credential, &mut state.engine) {
            Ok(s) => s,
            Err(why) => return failed(&why, None),
        };
        let previous = match state.uptime {
            Some(r) => r,
            None => match read_uptime(&mut session) {
                Ok(r) => {
                    state.uptime = Some(r);
                    r
                }
                Err(why) => return failed(&why, None),
            },
        };
        // The lock stays held: the wait is part of this device's exchange.
        let wait = UPTIME_GAP.saturating_sub(previous.at.elapsed());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let now = match read_uptime(&mut session) {
            Ok(r) => r,
            Err(why) => return failed(&why, Some(previous.ticks)),
        };
        state.uptime = Some(now);
        let rebooted = now.ticks < previous.ticks;
        let probe = if now.ticks > previous.ticks {
            Probe::Up
        } else {
            if rebooted {
                log::warn!(
                    "SNMP {device}: sysUpTime went back from {} to {} ticks: the device restarted",
                    previous.ticks,
                    now.ticks
                );
                state.table = None;
            } else {
                log::warn!(
                    "SNMP {device}: sysUpTime did not advance ({} ticks)",
                    now.ticks
                );
            }
            Probe::Down
        };
        UptimeReading {
            probe,
            ticks: Some(now.ticks),
            previous: Some(previous.ticks),
            rebooted,
        }
    }
}

fn read_uptime(session: &mut Session<'_>) -> Result<Reading, Failure> {
    let values = session.get(&[SYS_UPTIME])?;
    match values.first() {
        Some(Val::Ticks(t)) => Ok(Reading {
            ticks: *t,
            at: Instant::now(),
        }),
        Some(other) => Err(Failure::Malformed(format!(
            "sysUpTime is {}",
            describe(other)
        ))),
        None => Err(Failure::Malformed("no sysUpTime in the answer".into())),
    }
}

fn describe(v: &Val) -> String {
    match v {
        Val::Null => "NULL".into(),
        Val::Int(_) => "an INTEGER".into(),
        Val::Ticks(_) => "TimeTicks".into(),
        Val::Bytes(_) => "an OCTET STRING".into(),
        Val::Oid(_) => "an OBJECT IDENTIFIER".into(),
        Val::NoSuchObject => "noSuchObject".into(),
        Val::NoSuchInstance => "noSuchInstance".into(),
        Val::EndOfMibView => "endOfMibView".into(),
        Val::Other(name) => (*name).into(),
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
