//! Ports of one device: the cached ifName → ifIndex table (a GETBULK walk) and the one
//! multi-varbind GET that reads them all.
//!
//! The GET carries, besides every port's ifOperStatus, sysUpTime.0 and every port's
//! ifName: so a reboot (sysUpTime back) or a renumbering (the cached ifIndex no longer
//! carries the name, e.g. it now belongs to another interface) is seen in the same packet,
//! and the table is walked again before anything is reported. Without that check a stale
//! ifIndex could report another interface's status.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::ber::{self, Val};
use super::wire::{Failure, Session, IF_NAME, IF_OPER_STATUS, SYS_UPTIME};
use super::{lock, Device, Devices, Entry, IfTable, PortReading, Probe, State};

/// Repetitions asked per GETBULK round of the ifName walk.
pub(super) const WALK_REPETITIONS: u32 = 40;
/// Bound on GETBULK rounds of one walk (40 × 2000 = 80 000 interfaces).
const WALK_MAX_ROUNDS: usize = 2000;

/// See [`Devices::ports_detailed`].
pub(super) fn read(devices: &Devices, device: &Device, names: &[String]) -> Vec<PortReading> {
    if names.is_empty() {
        return Vec::new();
    }
    let entry = devices.entry(device);
    let credential = devices.profiles().resolve(&device.community);
    let mut guard = lock(&entry.state);
    let state: &mut State = &mut guard;
    if entry.restarted.swap(false, Ordering::Relaxed) {
        state.table = None;
    }
    let mut session = match devices.session(device, &entry, &credential, &mut state.engine) {
        Ok(s) => s,
        Err(why) => return all_failed(device, names, "read ifOperStatus", &why),
    };
    let stale = match &state.table {
        None => true,
        Some(t) => {
            t.walked_at.elapsed() >= devices.settings.rewalk
                || names.iter().any(|n| !t.by_name.contains_key(n))
        }
    };
    let mut walked = false;
    if stale {
        match walk(devices, &mut session, device, &entry) {
            Ok(t) => state.table = Some(t),
            Err(why) => return all_failed(device, names, "walk ifName", &why),
        }
        walked = true;
    }
    // At most twice: once with the cached table, once more after walking it again.
    loop {
        let Some(table) = state.table.as_ref() else {
            return Vec::new(); // unreachable: a table was just set or was there
        };
        let indexes = unique_indexes(table, names);
        let values = match get_split(&mut session, &port_oids(&indexes)) {
            Ok(v) => v,
            Err(why) => return all_failed(device, names, "read ifOperStatus", &why),
        };
        let got = interpret(table, names, &indexes, &values, state.ports_uptime);
        if got.uptime.is_some() {
            state.ports_uptime = got.uptime;
        }
        if (got.rebooted || !got.moved.is_empty()) && !walked {
            if got.rebooted {
                log::info!(
                    "SNMP {device}: sysUpTime went back (the device restarted): \
                     reading its ifName table again"
                );
            } else {
                log::info!(
                    "SNMP {device}: ifIndex {:?} no longer carries its ifName: \
                     reading the ifName table again",
                    got.moved
                );
            }
            match walk(devices, &mut session, device, &entry) {
                Ok(t) => state.table = Some(t),
                Err(why) => {
                    state.table = None;
                    return all_failed(device, names, "walk ifName", &why);
                }
            }
            walked = true;
            continue;
        }
        let readings = readings(device, table, names, &got);
        if !got.moved.is_empty() {
            // Renumbered between the walk and the GET: walk again on the next call.
            state.table = None;
        }
        return readings;
    }
}

/// The ifIndexes of the names found in the table, each once, in first-seen order.
fn unique_indexes(table: &IfTable, names: &[String]) -> Vec<u32> {
    let mut indexes = Vec::with_capacity(names.len());
    for name in names {
        if let Some(&i) = table.by_name.get(name) {
            if !indexes.contains(&i) {
                indexes.push(i);
            }
        }
    }
    indexes
}

/// sysUpTime.0, then ifName.i and ifOperStatus.i for each index.
fn port_oids(indexes: &[u32]) -> Vec<Vec<u32>> {
    let mut oids = Vec::with_capacity(1 + 2 * indexes.len());
    oids.push(SYS_UPTIME.to_vec());
    for &i in indexes {
        oids.push([IF_NAME, &[i]].concat());
        oids.push([IF_OPER_STATUS, &[i]].concat());
    }
    oids
}

/// What one ports GET says.
#[derive(Debug, PartialEq, Eq)]
struct Interpreted {
    /// sysUpTime read, when the agent has it.
    uptime: Option<u32>,
    /// sysUpTime is below the previous ports reading.
    rebooted: bool,
    /// ifOperStatus per ifIndex (None: not an INTEGER, e.g. noSuchInstance).
    status: HashMap<u32, Option<i64>>,
    /// ifIndexes that no longer carry the name the table gives them.
    moved: Vec<u32>,
}

fn interpret(
    table: &IfTable,
    names: &[String],
    indexes: &[u32],
    values: &[Val],
    previous_uptime: Option<u32>,
) -> Interpreted {
    let uptime = match values.first() {
        Some(Val::Ticks(t)) => Some(*t),
        _ => None,
    };
    let rebooted = matches!((uptime, previous_uptime), (Some(now), Some(before)) if now < before);
    let mut status = HashMap::with_capacity(indexes.len());
    let mut moved = Vec::new();
    for (k, &i) in indexes.iter().enumerate() {
        let still_named = match values.get(1 + 2 * k) {
            Some(Val::Bytes(b)) => {
                let now = String::from_utf8_lossy(b);
                names
                    .iter()
                    .any(|n| table.by_name.get(n) == Some(&i) && *n == now)
            }
            _ => false,
        };
        if !still_named {
            moved.push(i);
        }
        let oper = match values.get(2 + 2 * k) {
            Some(Val::Int(v)) => Some(*v),
            _ => None,
        };
        status.insert(i, oper);
    }
    Interpreted {
        uptime,
        rebooted,
        status,
        moved,
    }
}

/// One reading per name, in order.
fn readings(
    device: &Device,
    table: &IfTable,
    names: &[String],
    got: &Interpreted,
) -> Vec<PortReading> {
    names
        .iter()
        .map(|name| {
            let Some(&i) = table.by_name.get(name) else {
                let why = format!("interface {name} not found in the ifName table of {device}");
                log::warn!("SNMP {why}");
                return PortReading { probe: Probe::NoAnswer(why), if_index: None, oper_status: None };
            };
            let oper = got.status.get(&i).copied().flatten();
            let probe = match oper {
                _ if got.moved.contains(&i) => {
                    let why = format!(
                        "interface {name} (ifIndex {i}) on {device}: its ifIndex changed while it was read"
                    );
                    log::warn!("SNMP {why}");
                    Probe::NoAnswer(why)
                }
                Some(1) => Probe::Up,
                Some(_) => Probe::Down,
                None => {
                    let why =
                        format!("interface {name} (ifIndex {i}) on {device}: no ifOperStatus in the answer");
                    log::warn!("SNMP {why}");
                    Probe::NoAnswer(why)
                }
            };
            PortReading { probe, if_index: Some(i), oper_status: oper }
        })
        .collect()
}

/// ifName → ifIndex with GETBULK, from the start of the column to its end.
fn walk(
    devices: &Devices,
    session: &mut Session<'_>,
    device: &Device,
    entry: &Entry,
) -> Result<IfTable, Failure> {
    entry.counters.walks.fetch_add(1, Ordering::Relaxed);
    devices.totals.walks.fetch_add(1, Ordering::Relaxed);
    let mut by_name = HashMap::new();
    let mut last = IF_NAME.to_vec();
    let mut repetitions = WALK_REPETITIONS;
    for _ in 0..WALK_MAX_ROUNDS {
        let varbinds = match session.getbulk(&last, repetitions) {
            Ok(v) => v,
            Err(Failure::TooBig) if repetitions > 1 => {
                repetitions /= 2;
                continue;
            }
            Err(e) => return Err(e),
        };
        if varbinds.is_empty() {
            return Ok(walked(entry, by_name));
        }
        for (oid, value) in varbinds {
            if value == Val::EndOfMibView || !oid.starts_with(IF_NAME) {
                return Ok(walked(entry, by_name));
            }
            if oid <= last {
                return Err(Failure::Malformed(format!(
                    "the ifName walk went backwards at {}",
                    ber::dotted(&oid)
                )));
            }
            if let ([index], Val::Bytes(name)) = (&oid[IF_NAME.len()..], &value) {
                by_name
                    .entry(String::from_utf8_lossy(name).into_owned())
                    .or_insert(*index);
            }
            last = oid;
        }
    }
    log::warn!("SNMP {device}: the ifName walk did not end after {WALK_MAX_ROUNDS} rounds");
    Err(Failure::Malformed(format!(
        "the ifName walk did not end after {WALK_MAX_ROUNDS} rounds"
    )))
}

/// The table a walk found; its ifIndex → ifName view is published for the trap receiver.
fn walked(entry: &Entry, by_name: HashMap<String, u32>) -> IfTable {
    let names = by_name.iter().map(|(n, i)| (*i, n.clone())).collect();
    *lock(&entry.names) = std::sync::Arc::new(names);
    IfTable { by_name, walked_at: Instant::now() }
}

/// GET of all `oids`, in halves (recursively) while the agent answers tooBig.
fn get_split(session: &mut Session<'_>, oids: &[Vec<u32>]) -> Result<Vec<Val>, Failure> {
    let refs: Vec<&[u32]> = oids.iter().map(Vec::as_slice).collect();
    match session.get(&refs) {
        Err(Failure::TooBig) if oids.len() > 1 => {
            let (a, b) = oids.split_at(oids.len() / 2);
            let mut values = get_split(session, a)?;
            values.extend(get_split(session, b)?);
            Ok(values)
        }
        other => other,
    }
}

/// Every name NoAnswer for one failed request, with one log line for all of them.
fn all_failed(device: &Device, names: &[String], what: &str, why: &Failure) -> Vec<PortReading> {
    log::warn!("SNMP {device}: {what} of {}: {why}", names.join(", "));
    names
        .iter()
        .map(|name| PortReading {
            probe: Probe::NoAnswer(format!("interface {name} on {device}: {what}: {why}")),
            if_index: None,
            oper_status: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, u32)]) -> IfTable {
        IfTable {
            by_name: entries.iter().map(|(n, i)| (n.to_string(), *i)).collect(),
            walked_at: Instant::now(),
        }
    }

    #[test]
    fn oids_of_a_ports_get() {
        let t = table(&[("a", 7), ("b", 9), ("c", 7)]);
        let names: Vec<String> = ["b", "a", "c", "zz"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let indexes = unique_indexes(&t, &names);
        assert_eq!(indexes, [9, 7]);
        let oids = port_oids(&indexes);
        assert_eq!(oids.len(), 5);
        assert_eq!(oids[0], SYS_UPTIME);
        assert_eq!(oids[3], [IF_NAME, &[7]].concat());
        assert_eq!(oids[4], [IF_OPER_STATUS, &[7]].concat());
    }

    #[test]
    fn interpretation_of_a_ports_get() {
        let t = table(&[("a", 7), ("b", 9)]);
        let names = vec!["a".to_string(), "b".to_string()];
        let values = [
            Val::Ticks(50),
            Val::Bytes(b"a".to_vec()),
            Val::Int(2),
            Val::Bytes(b"other".to_vec()),
            Val::Int(1),
        ];
        let got = interpret(&t, &names, &[7, 9], &values, Some(100));
        assert_eq!((got.uptime, got.rebooted), (Some(50), true));
        assert_eq!(got.moved, [9]);
        assert_eq!(got.status.get(&7), Some(&Some(2)));
        let values = [Val::NoSuchObject, Val::NoSuchInstance, Val::NoSuchInstance];
        let got = interpret(&t, &names, &[7], &values, Some(100));
        assert_eq!(
            (got.uptime, got.rebooted, got.moved.as_slice()),
            (None, false, &[7][..])
        );
        assert_eq!(got.status.get(&7), Some(&None));
    }
}
