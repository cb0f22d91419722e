//! NETCONF over SSH (SPEC §4.1): `vrrp_session` and `bgp_session` objects. One persistent
//! session per `(host, port, login, password)`, at most one RPC in flight on it; all VRRP
//! objects of a session are answered by ONE `get-vrrp-information` per poll, all BGP objects
//! of a session and routing instance by ONE `get-bgp-summary-information`. A session that
//! failed is dropped and opened again on the next poll; one unused for three intervals is
//! closed by the pool's housekeeping after a poll task. Passwords never appear in logs, errors or metrics.

pub mod framing;
mod hostkeys;
pub mod reply;
mod session;

use super::{Clients, Object, Probe, Prober, UnitKey};
use session::{Login, RpcError, Session};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Port of NETCONF over SSH when an object names none.
const DEFAULT_PORT: u16 = 830;

/// The sessions to every NETCONF device, shared by the pool.
pub struct Netconf {
    timeout: Duration,
    /// Sessions unused this long are closed.
    idle: Duration,
    keys: hostkeys::HostKeys,
    sessions: Mutex<HashMap<Login, Arc<Mutex<Slot>>>>,
}

#[derive(Default)]
struct Slot {
    session: Option<Session>,
    used: Option<Instant>,
    /// A session of this login failed: the next one opened is a reconnect.
    failed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Netconf {
    pub fn new(config: &crate::config::Netconf, interval_s: u64) -> Result<Netconf, String> {
        Ok(Netconf {
            timeout: Duration::from_millis(config.timeout_ms),
            idle: Duration::from_secs(interval_s.max(1) * 3),
            keys: hostkeys::HostKeys::new(&config.known_hosts),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Sends one RPC on the session of `login` (opened first when there is none) and
    /// returns the reply. The session's lock is held for the whole exchange.
    fn rpc<T>(&self, login: &Login, body: &str, read: impl FnOnce(&roxmltree::Document) -> T) -> Result<T, String> {
        let slot = lock(&self.sessions).entry(login.clone()).or_default().clone();
        let mut slot = lock(&slot);
        slot.used = Some(Instant::now());
        if slot.session.is_none() {
            let opened = Session::open(login, self.timeout, &self.keys);
            crate::metrics::netconf_opened(opened.is_ok(), slot.failed);
            match opened {
                Ok(s) => slot.session = Some(s),
                Err(why) => {
                    slot.failed = true;
                    return Err(format!("NETCONF {login}: {why}"));
                }
            }
        }
        let session = slot.session.as_mut().expect("opened above");
        match session.rpc(body, read) {
            Ok(data) => {
                slot.failed = false;
                Ok(data)
            }
            Err(RpcError::Answer(why)) => Err(format!("NETCONF {login}: {why}")),
            Err(RpcError::Broken(why)) => {
                slot.session = None;
                slot.failed = true;
                crate::metrics::netconf_closed();
                Err(format!("NETCONF {login}: {why}; the session is closed and opened again on the next poll"))
            }
        }
    }

    /// Closes (with `<close-session/>`) the sessions unused for three intervals; skips those
    /// in use. The pool calls it after every poll task (`Clients::tidy`).
    pub fn close_idle(&self) {
        let mut idle = Vec::new();
        lock(&self.sessions).retain(|_, slot| {
            let Ok(mut s) = slot.try_lock() else { return true };
            if s.used.is_some_and(|t| t.elapsed() < self.idle) {
                return true;
            }
            idle.extend(s.session.take());
            false
        });
        for session in idle {
            crate::metrics::netconf_closed();
            session.close();
        }
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        lock(&self.sessions).values().filter(|s| s.try_lock().map_or(true, |s| s.session.is_some())).count()
    }
}

/// The login an object's props name (`port` defaults to 830).
fn login(o: &Object) -> Result<Login, String> {
    let port = match o.props.get("port") {
        None | Some(serde_json::Value::Null) => DEFAULT_PORT,
        Some(_) => o.text("port").trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            format!("object {:?}: port {} is not a TCP port", o.name, o.text("port"))
        })?,
    };
    Ok(Login { host: o.text("host").trim().to_string(), port, user: o.text("login"), password: o.text("password") })
}

/// The unit key of a session (and a scope within it); the login and password are its auth.
fn key(prober: &'static Prober, login: &Login, scope: String) -> UnitKey {
    UnitKey::new(prober, format!("{}:{}", login.host, login.port), format!("{}\n{}", login.user, login.password), scope)
}

fn login_of(key: &UnitKey) -> Result<Login, String> {
    let (host, port) = key.addr.rsplit_once(':').ok_or("no port")?;
    let (user, password) = key.auth.split_once('\n').unwrap_or((&key.auth, ""));
    let port = port.parse().map_err(|_| "bad port")?;
    Ok(Login { host: host.to_string(), port, user: user.to_string(), password: password.to_string() })
}

/// What a VRRP member asks for: `interface group`.
fn vrrp_ask(o: &Object) -> String {
    format!("{} {}", o.text("interface").trim(), o.text("vrid").trim())
}

/// One `get-vrrp-information` answers every group asked for.
fn poll_vrrp(c: &Clients, key: &UnitKey, asks: &[String]) -> Vec<Probe> {
    let states = match login_of(key).and_then(|l| c.netconf.rpc(&l, "<get-vrrp-information/>", reply::vrrp_states)) {
        Ok(states) => states,
        Err(why) => return no_answer(asks, &why, vrrp_named),
    };
    asks.iter()
        .map(|ask| {
            let (interface, group) = ask.split_once(' ').unwrap_or((ask, ""));
            match reply::vrrp_state(&states, interface, group) {
                Some(state) => Probe::State(state.to_string()),
                None => {
                    let why = format!("NETCONF {}: VRRP group {group} on {interface} is not in the reply", key.addr);
                    log::warn!("{why}");
                    Probe::NoAnswer(why)
                }
            }
        })
        .collect()
}

/// One `get-bgp-summary-information` of the unit's routing instance answers every peer.
fn poll_bgp(c: &Clients, key: &UnitKey, asks: &[String]) -> Vec<Probe> {
    let body = format!(
        "<get-bgp-summary-information><exact-instance>{}</exact-instance></get-bgp-summary-information>",
        escape(&key.scope)
    );
    let states = match login_of(key).and_then(|l| c.netconf.rpc(&l, &body, reply::bgp_states)) {
        Ok(states) => states,
        Err(why) => return no_answer(asks, &why, |peer| format!("BGP peer {peer} of instance {}", key.scope)),
    };
    asks.iter()
        .map(|peer| match reply::bgp_state(&states, peer) {
            Some(state) => Probe::State(state.to_string()),
            None => {
                let why = format!("NETCONF {}: BGP peer {peer} of instance {} is not in the reply", key.addr, key.scope);
                log::warn!("{why}");
                Probe::NoAnswer(why)
            }
        })
        .collect()
}

/// Every ask gets no answer, and one log line names the device, the objects (by `named`)
/// and why; never the password.
fn no_answer(asks: &[String], why: &str, named: impl Fn(&str) -> String) -> Vec<Probe> {
    let objects: Vec<String> = asks.iter().map(|a| named(a)).collect();
    log::warn!("{why} (no answer for {})", objects.join(", "));
    super::each(asks, Probe::NoAnswer(why.to_string()))
}

/// A VRRP ask (`interface group`) as a log line names it.
fn vrrp_named(ask: &str) -> String {
    let (interface, group) = ask.split_once(' ').unwrap_or((ask, ""));
    format!("VRRP group {group} on {interface}")
}

/// Text as XML character data.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Verify mode and the probe runner: the unit of one object, polled.
fn probe_one(o: &Object, c: &Clients, prober: &'static Prober) -> (Probe, String) {
    match (prober.unit.expect("NETCONF probers group objects"))(o, c) {
        Ok((key, ask)) => {
            let probe = (prober.poll)(c, &key, &[ask]).pop().unwrap_or(Probe::NoAnswer("no reading".into()));
            let raw = format!("{} on {} (one session: {} open)", probe, key.addr, c.netconf.open_sessions());
            (probe, raw)
        }
        Err(why) => (Probe::NoAnswer(why.clone()), why),
    }
}

/// `vrrp_session`: the group's `vrrp-state`, upper-cased.
pub static VRRP: Prober = Prober {
    label: "netconf_vrrp",
    unit: Some(|o, _| Ok((key(&VRRP, &login(o)?, String::new()), vrrp_ask(o)))),
    poll: poll_vrrp,
    probe: |c, o| probe_one(o, c, &VRRP),
    bulk: 1,
    device: Some("host"),
    options: "--config FILE (netconf:)",
};

/// `bgp_session`: the peer's `peer-state`, upper-cased.
pub static BGP: Prober = Prober {
    label: "netconf_bgp",
    unit: Some(|o, _| Ok((key(&BGP, &login(o)?, o.text("instance").trim().to_string()), o.text("peer_address")))),
    poll: poll_bgp,
    probe: |c, o| probe_one(o, c, &BGP),
    bulk: 1,
    device: Some("host"),
    options: "--config FILE (netconf:)",
};
