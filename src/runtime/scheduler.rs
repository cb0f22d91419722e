//! The scheduler thread (SPEC §5): keeps the registry of monitored objects (a range read,
//! then a watch), groups the objects into poll units (one per device for SNMP, VMIs in bulk),
//! hands due units to the pool, confirms the results, and has the writer store a
//! resource's `/monitoring` record whenever a status changes, and never otherwise. It polls
//! only the resources of the shards the membership thread says this instance holds (SPEC
//! §6), and every write it makes is fenced by that shard's claim.

use super::membership::{Back, Shards};
use super::poll::{Member, Task};
use super::writer::{Pending, Writer};
use crate::keys;
use crate::plugins::{Clients, Object, Probe, UnitKey};
use std::sync::Arc;
use crate::status::{self, Confirmed};
use super::follow::Change;
use crate::metrics::Watched;
use crate::store::{Cmp, Kv, Op, Range, Store, Txn};
use crossbeam_channel::{select, Receiver, Sender};
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A batch of units the pool polls as one task.
pub type Batch = (Vec<UnitKey>, Task);
/// What the pool hands back for a batch.
pub type Results = (Vec<UnitKey>, Vec<(Member, Probe)>);

struct Unit {
    id: u64,
    /// Polls in a row in which an object was still being confirmed DOWN.
    fails: u32,
    /// Members and what to ask for each (port name, fq_name).
    members: Vec<(Member, String)>,
    due: Instant,
    started: Option<Instant>,
    /// Members joined while it was being polled: asked again as soon as that poll ends.
    joined: bool,
    /// An event came while it was being polled: polled again at this time.
    trigger: Option<Instant>,
}

struct Polled {
    /// A fingerprint of the object's props: an object that did not change when its
    /// resource is registered again keeps its confirmed status.
    props: u64,
    reported: bool,
    /// The status confirmed by one reading (`UP`, or the named state it wants).
    wanted: String,
    state: Confirmed,
    /// The last result and when it came.
    last: Option<(SystemTime, Probe)>,
    /// The last event (trap, UVE change) that touched it, and when.
    event: Option<(SystemTime, Arc<str>)>,
}

/// What an unregistered resource leaves for its next registration.
struct Gone {
    objects: Vec<(String, Polled)>,
    written: Option<String>,
    shard: u16,
}

/// Something a device or API told us before a poll asked (SPEC §5.1): the units it names are
/// polled at once (at most once a second each), and what it says counts as one reading.
#[derive(Debug)]
pub enum Event {
    /// A trap or inform believed, with the ifName its ifIndex stands for (when known).
    Trap(crate::plugins::snmp::traps::Trap, Option<String>),
    /// A VMI's `l2_active` changed on the UVE stream (`None`: its UVE went away).
    Uve { fq_name: String, l2_active: Option<bool> },
}

/// Most triggered polls of one device (or VMI) per this time.
const TRIGGER_GAP: Duration = Duration::from_secs(1);
/// The devices polled here are published to the trap receiver at most this often.
const SENDERS_EVERY: Duration = Duration::from_millis(200);

/// A question from the status listener: what the scheduler knows of one resource.
pub struct Query {
    /// The resource's registry key.
    pub key: String,
    pub reply: Sender<Option<Value>>,
}

struct Resource {
    /// Its shard (SPEC §6): polled only while this instance holds it.
    shard: u16,
    /// Each polled object's unit and what its member asks for.
    plan: Vec<(String, UnitKey, String)>,
    /// The units its objects are polled in now (none while its shard is not held).
    units: Vec<UnitKey>,
    version: Value,
    registry_rev: i64,
    monitoring_key: String,
    objects: Vec<(String, Polled)>,
    /// The record last written (or found in etcd at start), as JSON text.
    written: Option<String>,
}

/// The channels the scheduler serves.
pub struct Channels {
    pub tasks: Sender<Batch>,
    pub results: Receiver<Results>,
    pub queries: Receiver<Query>,
    /// Reloaded configurations (interval, down_after, unreported).
    pub settings: Receiver<crate::config::Config>,
    /// The shards to poll, from the membership thread; and what goes back to it.
    pub shards: Receiver<Shards>,
    pub back: Sender<Back>,
    /// Traps and UVE changes (SPEC §5.1).
    pub events: Receiver<Event>,
    pub ready: super::supervisor::Ready,
    pub stop: Receiver<()>,
}

/// What the scheduler needs from the rest of the service.
pub struct Scheduler {
    pub store: Store,
    pub writer: Writer,
    pub clients: Arc<Clients>,
    pub interval: Duration,
    pub down_after: u32,
    pub unreported: Vec<(String, String)>,
    /// Whether traps are received (the devices polled here are then published to the receiver).
    pub traps: bool,
}

struct State {
    resources: HashMap<String, Resource>,
    units: HashMap<UnitKey, Unit>,
    /// Unit ids → keys, and the due times in order (entries whose unit changed are skipped).
    ids: HashMap<u64, UnitKey>,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
    /// The origin of every unit's poll slots.
    epoch: Instant,
    /// The shards held, with the create revision of each claim (the fence of its writes).
    owned: HashMap<u16, i64>,
    /// Held shards being given up: not polled, released once `inflight` says so.
    releasing: HashSet<u16>,
    /// Poll tasks in flight with members of each shard.
    inflight: HashMap<u16, usize>,
    /// Writes sent and not answered yet: the resource, its shard and the claim compared.
    writes: Vec<(String, u16, i64, Pending)>,
    /// Units held per bulk prober (their slots depend on it).
    bulk_units: HashMap<&'static str, usize>,
    /// Resources whose record in etcd is not known for sure (their shard was just taken
    /// over, or a write of theirs got no answer): read before their next write.
    unsure: HashSet<String>,
    /// The SNMP units of each device address (traps name devices by address).
    by_ip: HashMap<std::net::IpAddr, Vec<UnitKey>>,
    /// When `by_ip` changed and was not published to the trap receiver yet, and when it last was.
    senders_dirty: bool,
    senders_at: Instant,
    /// The last triggered poll of each device address or VMI (at most one per TRIGGER_GAP).
    triggered: HashMap<String, Instant>,
}

impl State {
    /// Whether the resources of `shard` are polled here now.
    fn polls(&self, shard: u16) -> bool {
        self.owned.contains_key(&shard) && !self.releasing.contains(&shard)
    }
}

impl Scheduler {
    /// Runs until `stop` fires or closes.
    pub fn run(mut self, channels: Channels) {
        let Channels { tasks, results, mut queries, mut settings, shards, back, mut events, ready, stop } = channels;
        let mut st = State {
            resources: HashMap::new(),
            units: HashMap::new(),
            ids: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            epoch: Instant::now(),
            owned: HashMap::new(),
            releasing: HashSet::new(),
            inflight: HashMap::new(),
            writes: Vec::new(),
            unsure: HashSet::new(),
            bulk_units: HashMap::new(),
            by_ip: HashMap::new(),
            senders_dirty: false,
            senders_at: Instant::now(),
            triggered: HashMap::new(),
        };
        let changes = match super::follow::start(self.store.clone(), keys::REGISTRY, Watched::Registry, stop.clone()) {
            Ok(c) => c,
            Err(e) => return log::error!("{e}"),
        };
        loop {
            self.dispatch(&mut st, &tasks);
            self.answered(&mut st, &back);
            self.publish_senders(&mut st);
            // With the pool's queue full, due units wait for a slot: a result (or 100 ms, as
            // a thread may take a task after a job) wakes the loop, which must not spin; so do
            // writes waiting for their answers.
            let wait = match tasks.is_full() || !st.writes.is_empty() {
                true => Duration::from_millis(100),
                false => next_due(&st).saturating_duration_since(Instant::now()).min(Duration::from_secs(1)),
            };
            select! {
                recv(changes) -> batch => match batch {
                    Ok(batch) => {
                        for change in batch {
                            match change {
                                Change::Reset(range) => {
                                    self.reset(&mut st, &range);
                                    ready.mark("registry");
                                }
                                Change::Put(kv) => self.register(&mut st, kv),
                                Change::Delete(key, _) => self.unregister(&mut st, &key),
                                Change::NotText(key) => log::warn!("{key}: a registry key that is not UTF-8 text; ignored"),
                            }
                        }
                    }
                    Err(_) => return, // the follower stopped
                },
                recv(results) -> r => match r {
                    Ok(r) => {
                        self.apply(&mut st, r);
                        self.release(&mut st, &back);
                    }
                    Err(_) => return,
                },
                recv(shards) -> s => match s {
                    Ok(s) => {
                        self.shards(&mut st, s);
                        self.release(&mut st, &back);
                    }
                    Err(_) => return,
                },
                recv(queries) -> q => match q {
                    Ok(q) => {
                        let _ = q.reply.send(st.resources.get(&q.key).map(describe));
                    }
                    // The listener is gone: stop listening to it (a closed channel is
                    // always ready, and would spin this loop).
                    Err(_) => queries = crossbeam_channel::never(),
                },
                recv(settings) -> c => match c {
                    Ok(c) => {
                        if self.apply_settings(&c) {
                            // Registered anew with the new settings, from a fresh read (the
                            // changes queued meanwhile follow it, in order).
                            match self.store.read_range(keys::REGISTRY) {
                                Ok(range) => self.reset(&mut st, &range),
                                Err(e) => log::warn!("reading the registry to apply the reload: {e}"),
                            }
                        }
                    }
                    Err(_) => settings = crossbeam_channel::never(),
                },
                recv(events) -> e => match e {
                    Ok(e) => self.event(&mut st, e),
                    Err(_) => events = crossbeam_channel::never(),
                },
                recv(stop) -> _ => return,
                default(wait) => {}
            }
        }
    }

    /// Takes the settings a reload can change; true when the resources must be registered
    /// again (what is reported changed).
    fn apply_settings(&mut self, c: &crate::config::Config) -> bool {
        self.interval = Duration::from_secs(c.monitoring.interval_s);
        self.down_after = c.monitoring.down_after;
        let unreported = c.unreported();
        let changed = unreported != self.unreported;
        self.unreported = unreported;
        changed
    }

    /// Takes the registry as read at one revision: what is gone is unregistered, the rest
    /// registered or updated.
    fn reset(&self, st: &mut State, range: &Range) {
        let present: HashSet<&str> = range.kvs.iter().map(|kv| kv.key.as_str()).collect();
        let gone: Vec<String> = st.resources.keys().filter(|k| !present.contains(k.as_str())).cloned().collect();
        for key in gone {
            self.unregister(st, &key);
        }
        for kv in &range.kvs {
            self.register(st, kv.clone());
        }
        for key in &range.not_text {
            log::warn!("{key}: a registry key that is not UTF-8 text; ignored");
        }
        log::info!(
            "registry read at revision {}: {} resources, {} poll units",
            range.revision,
            st.resources.len(),
            st.units.len()
        );
    }

    /// Adds or updates a resource; objects that did not change keep their confirmed status.
    fn register(&self, st: &mut State, kv: Kv) {
        let Some((plural, id)) = keys::suffix(&kv.key, keys::REGISTRY).and_then(|s| s.split_once('/')) else {
            return;
        };
        let entry: Value = match serde_json::from_slice(&kv.value) {
            Ok(v) => v,
            Err(e) => {
                log::error!("{}: registry entry is not JSON ({e}); not polled", kv.key);
                return;
            }
        };
        let resource_type = entry.get("resource_type").and_then(Value::as_str).unwrap_or("").to_string();
        let gone = self.unregister_keep(st, &kv.key);
        let was = gone.as_ref().map(|g| (g.written.clone(), g.shard));
        let mut previous = gone.map(|g| g.objects).unwrap_or_default();
        let mut objects = Vec::new();
        let mut plan = Vec::new();
        for (name, props) in entry.get("objects").and_then(Value::as_object).into_iter().flatten() {
            let Some(props) = props.as_object() else { continue };
            let object = match Object::check(name, props) {
                Ok(o) => o,
                Err(e) => {
                    log::error!("{}: {e}; not polled", kv.key);
                    continue;
                }
            };
            if !object.kind.polled() {
                continue;
            }
            let type_name = object.text("type");
            let reported = status::is_reported(&resource_type, &type_name, &self.unreported);
            let fingerprint = fingerprint(props);
            let state = match previous.iter().position(|(n, p)| n == name && p.props == fingerprint) {
                Some(i) => previous.swap_remove(i).1.state,
                None => Confirmed::default(),
            };
            match object.kind.prober.and_then(|p| p.unit).map(|unit| unit(&object, &self.clients)) {
                Some(Ok((unit, ask))) => plan.push((name.clone(), unit, ask)),
                Some(Err(why)) => log::error!("{}: {why}; not polled", kv.key),
                None => {}
            }
            crate::metrics::objects_held(state.status.as_deref(), 1);
            let wanted = object.wanted();
            objects.push((name.clone(), Polled { props: fingerprint, reported, wanted, state, last: None, event: None }));
        }
        let shard = crate::shards::shard_of(&crate::shards::affinity(&kv.key, &entry));
        // The record last written stays known while the resource stays in its shard; else
        // it is read before the first write.
        let written = match was {
            Some((written, in_shard)) if in_shard == shard => written,
            _ => {
                st.unsure.insert(kv.key.clone());
                None
            }
        };
        let resource = Resource {
            shard,
            plan,
            units: Vec::new(),
            version: entry.get("version").cloned().unwrap_or(Value::Null),
            registry_rev: kv.mod_revision,
            monitoring_key: keys::monitoring(plural, id),
            objects,
            written,
        };
        let polled = st.polls(resource.shard);
        st.resources.insert(kv.key.clone(), resource);
        if polled {
            Self::activate(st, &kv.key);
        }
    }

    /// Adds a resource's objects to their units, polled at once (also when a unit is being
    /// polled: it is asked again as soon as that poll ends).
    fn activate(st: &mut State, key: &str) {
        let Some(resource) = st.resources.get_mut(key) else { return };
        let now = Instant::now();
        for (name, unit, ask) in &resource.plan {
            let member = Member { resource: key.to_string(), object: name.clone(), shard: resource.shard };
            let u = st.units.entry(unit.clone()).or_insert_with(|| {
                st.next_id += 1;
                st.ids.insert(st.next_id, unit.clone());
                if unit.prober.bulk > 1 {
                    *st.bulk_units.entry(unit.prober.label).or_default() += 1;
                }
                if let Some(ip) = snmp_ip(unit) {
                    st.by_ip.entry(ip).or_default().push(unit.clone());
                    st.senders_dirty = true;
                }
                Unit { id: st.next_id, fails: 0, members: Vec::new(), due: now, started: None, joined: false, trigger: None }
            });
            u.members.push((member, ask.clone()));
            u.due = now; // polled right after registration
            u.joined |= u.started.is_some();
            st.heap.push(Reverse((now, u.id)));
            if !resource.units.contains(unit) {
                resource.units.push(unit.clone());
            }
        }
    }

    /// Takes a resource's objects out of their units (a unit left empty goes).
    fn deactivate(st: &mut State, key: &str) {
        let Some(resource) = st.resources.get_mut(key) else { return };
        for unit in std::mem::take(&mut resource.units) {
            if let Some(u) = st.units.get_mut(&unit) {
                u.members.retain(|(m, _)| m.resource != key);
                if u.members.is_empty() {
                    st.ids.remove(&u.id);
                    st.units.remove(&unit);
                    if let Some(n) = st.bulk_units.get_mut(unit.prober.label) {
                        *n = n.saturating_sub(1);
                    }
                    if let Some(ip) = snmp_ip(&unit) {
                        if let Some(list) = st.by_ip.get_mut(&ip) {
                            list.retain(|k| *k != unit);
                            if list.is_empty() {
                                st.by_ip.remove(&ip);
                            }
                        }
                        st.senders_dirty = true;
                    }
                }
            }
        }
    }

    /// Applies what the membership thread says of the shards.
    fn shards(&self, st: &mut State, s: Shards) {
        let of = |st: &State, list: &[u16]| -> Vec<String> {
            st.resources.iter().filter(|(_, r)| list.contains(&r.shard)).map(|(k, _)| k.clone()).collect()
        };
        match s {
            Shards::Own(list) => {
                let numbers: Vec<u16> = list.iter().map(|(n, _)| *n).collect();
                st.owned.extend(list);
                st.releasing.retain(|n| !numbers.contains(n));
                let keys = of(st, &numbers);
                for key in &keys {
                    st.unsure.insert(key.clone());
                    // A new owner confirms every status again, from its own readings.
                    if let Some(r) = st.resources.get_mut(key) {
                        for (_, p) in &mut r.objects {
                            crate::metrics::objects_held(p.state.status.as_deref(), -1);
                            p.state = Confirmed::default();
                            crate::metrics::objects_held(None, 1);
                        }
                    }
                    Self::activate(st, key);
                }
            }
            Shards::Release(list) => {
                st.releasing.extend(list.iter().filter(|n| st.owned.contains_key(n)));
                for key in of(st, &list) {
                    Self::deactivate(st, &key);
                }
            }
            Shards::Lost(list) => {
                for n in &list {
                    st.owned.remove(n);
                    st.releasing.remove(n);
                }
                for key in of(st, &list) {
                    Self::deactivate(st, &key);
                }
            }
        }
    }

    /// Reads the `/monitoring` records of the unsure resources among `keys`, so that only
    /// what differs is written (another instance may have written them). Those that cannot
    /// be read now stay unsure, and are not written this time.
    fn read_unsure(&self, st: &mut State, keys: &[String]) {
        let unsure: Vec<&String> = keys.iter().filter(|k| st.unsure.contains(*k)).collect();
        for chunk in unsure.chunks(256) {
            let records: Vec<&str> = chunk.iter().filter_map(|k| st.resources.get(*k)).map(|r| r.monitoring_key.as_str()).collect();
            if records.len() != chunk.len() {
                continue; // unregistered meanwhile: nothing to write
            }
            match self.store.get_many(&records) {
                Ok(read) => {
                    for (key, kv) in chunk.iter().zip(read) {
                        let text = kv.and_then(|kv| Some(serde_json::from_slice::<Value>(&kv.value).ok()?.to_string()));
                        if let Some(r) = st.resources.get_mut(*key) {
                            r.written = text;
                        }
                        st.unsure.remove(*key);
                    }
                }
                Err(e) => log::warn!("reading /monitoring records before writing them: {e}; written later"),
            }
        }
    }

    /// Acts on a trap or UVE change: what it says counts as one reading of the objects it
    /// names, and the units it names are polled at once (at most once a second each; one
    /// inside that second is deferred to its end, never dropped).
    fn event(&self, st: &mut State, event: Event) {
        let now = SystemTime::now();
        // The object an event names (the port of a link trap, the VMI), if it names one:
        // that object's event is set and a "down" counts as its reading; an event that names
        // no object (a restart, a trap without ifIndex) is set on every object of the device.
        let (key, units, text, named, down) = match &event {
            Event::Trap(trap, name) => {
                use crate::plugins::snmp::traps::Kind;
                if matches!(trap.kind, Kind::ColdStart | Kind::WarmStart) {
                    self.clients.snmp.restarted(trap.from);
                }
                if trap.kind == Kind::Other {
                    return;
                }
                let units = st.by_ip.get(&trap.from).cloned().unwrap_or_default();
                // A link trap names its port by ifIndex; one not known as a polled port's
                // names none of ours (the poll still comes: the table may be stale).
                let named = match (&trap.kind, trap.if_index, name.as_deref()) {
                    (Kind::LinkDown | Kind::LinkUp, Some(_), n) => Some(n),
                    _ => None,
                };
                (trap.from.to_string(), units, trap.describe(), named, trap.kind == Kind::LinkDown)
            }
            Event::Uve { fq_name, l2_active } => {
                let unit = crate::plugins::contrail::vmi_unit(fq_name);
                let units = if st.units.contains_key(&unit) { vec![unit] } else { Vec::new() };
                let text = match l2_active {
                    Some(a) => format!("UVE stream: l2_active {a}"),
                    None => "UVE stream: the UVE went away".to_string(),
                };
                (fq_name.clone(), units, text, Some(Some(fq_name.as_str())), *l2_active == Some(false))
            }
        };
        if units.is_empty() {
            return;
        }
        let by = if matches!(event, Event::Trap(..)) { "trap" } else { "uve" };
        let text: Arc<str> = text.into();
        let mut touched = Vec::new();
        for unit in &units {
            let Some(u) = st.units.get(unit) else { continue };
            let members: Vec<Member> =
                u.members.iter().filter(|(_, ask)| named.map_or(true, |n| n == Some(ask.as_str()))).map(|(m, _)| m.clone()).collect();
            for member in &members {
                if down && named.is_some() && self.observe(st, member, &Probe::Down, false).is_some() {
                    touched.push(member.resource.clone());
                }
                if let Some(r) = st.resources.get_mut(&member.resource) {
                    if let Some((_, p)) = r.objects.iter_mut().find(|(n, _)| *n == member.object) {
                        p.event = Some((now, Arc::clone(&text)));
                    }
                }
            }
        }
        self.write_touched(st, touched);
        // At most one triggered poll per TRIGGER_GAP: now; or, inside the gap of the last
        // one, one more at its end (a poll already waiting there covers this event too).
        let now = Instant::now();
        let at = match st.triggered.get(&key) {
            Some(&last) if last > now => return, // a deferred poll is already due
            Some(&last) if last + TRIGGER_GAP > now => last + TRIGGER_GAP,
            _ => now,
        };
        st.triggered.insert(key, at);
        if st.triggered.len() > 4 * st.units.len() + 1024 {
            st.triggered.retain(|_, t| *t + TRIGGER_GAP > now);
        }
        crate::metrics::poll_triggered(by);
        for unit in units {
            let Some(u) = st.units.get_mut(&unit) else { continue };
            if u.started.is_some() {
                // Being polled: the poll after it comes at `at`, whatever slot it gets.
                u.trigger = Some(u.trigger.map_or(at, |t| t.min(at)));
            } else if at < u.due {
                u.due = at;
                st.heap.push(Reverse((at, u.id)));
            }
        }
    }

    /// Gives the trap receiver the devices polled here (at most every SENDERS_EVERY).
    fn publish_senders(&self, st: &mut State) {
        if !self.traps || !st.senders_dirty || st.senders_at.elapsed() < SENDERS_EVERY {
            return;
        }
        let senders = st.by_ip.iter().map(|(ip, units)| (*ip, units.iter().map(|u| u.auth.clone()).collect())).collect();
        self.clients.snmp.set_senders(senders);
        st.senders_dirty = false;
        st.senders_at = Instant::now();
    }

    /// Tells the membership thread which shards being released have no poll in flight.
    fn release(&self, st: &mut State, back: &Sender<Back>) {
        let done: Vec<u16> = st.releasing.iter().filter(|n| st.inflight.get(n).map_or(true, |c| *c == 0)).copied().collect();
        if done.is_empty() {
            return;
        }
        for n in &done {
            st.releasing.remove(n);
            st.owned.remove(n);
        }
        let _ = back.send(Back::Released(done));
    }

    /// Takes the answers of writes sent: counted, and a refused one reported (fenced, or
    /// superseded by a newer registry entry); a write etcd did not answer is made again at
    /// the resource's next result.
    fn answered(&self, st: &mut State, back: &Sender<Back>) {
        let mut i = 0;
        while i < st.writes.len() {
            let Some(answer) = st.writes[i].3.try_wait() else {
                i += 1;
                continue;
            };
            let (key, shard, rev, _) = st.writes.swap_remove(i);
            match answer {
                Ok(o) if o.applied => crate::metrics::monitoring_written(),
                Ok(_) => {
                    let _ = back.send(Back::Refused(shard, rev));
                }
                Err(e) => {
                    log::warn!("writing the /monitoring record of {key}: {e}; written again at its next result");
                    st.unsure.insert(key);
                }
            }
        }
    }

    /// Removes a resource (its `/monitoring` record goes with the delete job that removed it).
    fn unregister(&self, st: &mut State, key: &str) {
        self.unregister_keep(st, key);
        st.unsure.remove(key);
    }

    /// Removes a resource and its unit memberships; returns what a registration anew keeps.
    fn unregister_keep(&self, st: &mut State, key: &str) -> Option<Gone> {
        Self::deactivate(st, key);
        let resource = st.resources.remove(key)?;
        for (_, p) in &resource.objects {
            crate::metrics::objects_held(p.state.status.as_deref(), -1);
        }
        Some(Gone { objects: resource.objects, written: resource.written, shard: resource.shard })
    }

    /// Sends due units that are not being polled to the pool, in due order, until its queue
    /// is full (units of a bulk prober together, up to its bulk size).
    fn dispatch(&self, st: &mut State, tasks: &Sender<Batch>) {
        let now = Instant::now();
        let mut bulks: HashMap<&'static str, Vec<(Instant, UnitKey)>> = HashMap::new();
        while let Some(&Reverse((due, id))) = st.heap.peek() {
            if due > now || tasks.is_full() {
                break;
            }
            st.heap.pop();
            let Some(key) = st.ids.get(&id).cloned() else { continue };
            let u = &st.units[&key];
            if u.started.is_some() || u.due != due {
                continue; // being polled, or rescheduled since
            }
            let prober = key.prober;
            if prober.bulk > 1 {
                let pending = bulks.entry(prober.label).or_default();
                pending.push((due, key));
                if pending.len() >= prober.bulk {
                    let units = std::mem::take(pending);
                    self.send_bulk(st, tasks, units, now);
                }
                continue;
            }
            let task = Task { prober, key: key.clone(), members: u.members.clone() };
            self.send(st, tasks, vec![(due, key)], task, now);
        }
        for (_, units) in bulks.into_iter().filter(|(_, u)| !u.is_empty()) {
            self.send_bulk(st, tasks, units, now);
        }
    }

    fn send_bulk(&self, st: &mut State, tasks: &Sender<Batch>, units: Vec<(Instant, UnitKey)>, now: Instant) {
        let key = units[0].1.clone();
        let members = units.iter().flat_map(|(_, k)| st.units[k].members.clone()).collect();
        self.send(st, tasks, units, Task { prober: key.prober, key, members }, now);
    }

    /// Hands a task to the pool and marks its units as being polled; when the queue is
    /// full they stay due.
    fn send(&self, st: &mut State, tasks: &Sender<Batch>, units: Vec<(Instant, UnitKey)>, task: Task, now: Instant) {
        let keys: Vec<UnitKey> = units.iter().map(|(_, k)| k.clone()).collect();
        let shards = shards_of(task.members.iter().map(|(m, _)| m));
        match tasks.try_send((keys, task)) {
            Ok(()) => {
                for n in shards {
                    *st.inflight.entry(n).or_default() += 1;
                }
                for (_, k) in &units {
                    if let Some(u) = st.units.get_mut(k) {
                        u.started = Some(now);
                    }
                }
            }
            Err(_) => {
                for (due, k) in units {
                    if let Some(u) = st.units.get(&k) {
                        st.heap.push(Reverse((due, u.id)));
                    }
                }
            }
        }
    }

    /// Confirms results and writes the records that changed.
    fn apply(&self, st: &mut State, (units, results): Results) {
        let mut touched: HashSet<String> = HashSet::new();
        // Objects that answered badly but are not confirmed DOWN yet: asked again sooner.
        let mut confirming: HashSet<Member> = HashSet::new();
        for n in shards_of(results.iter().map(|(m, _)| m)) {
            if let Some(c) = st.inflight.get_mut(&n) {
                *c = c.saturating_sub(1);
            }
        }
        for (member, probe) in results {
            let Some(still_confirming) = self.observe(st, &member, &probe, true) else { continue };
            if still_confirming {
                confirming.insert(member.clone());
            }
            touched.insert(member.resource);
        }
        for k in units {
            let Some(u) = st.units.get_mut(&k) else { continue };
            let started = u.started.take().unwrap_or_else(Instant::now);
            if std::mem::take(&mut u.joined) {
                u.due = Instant::now(); // new members wait for no slot
            } else if u.members.iter().any(|(m, _)| confirming.contains(m)) {
                u.fails += 1;
                u.due = started + retry_after(self.interval, u.fails);
            } else {
                u.fails = 0;
                let held = st.bulk_units.get(k.prober.label).copied().unwrap_or(0);
                u.due = slot(self.interval, st.epoch, phase(&k, u.id, held), started + self.interval / 2);
            }
            if let Some(t) = u.trigger.take() {
                u.due = u.due.min(t);
            }
            st.heap.push(Reverse((u.due, u.id)));
        }
        self.write_touched(st, touched.into_iter().collect());
    }

    /// Takes one reading of an object (a poll result, or what an event said): whether it is
    /// still being confirmed, or `None` when it is not this instance's to confirm now.
    fn observe(&self, st: &mut State, member: &Member, probe: &Probe, polled: bool) -> Option<bool> {
        // A shard lost while this poll was in flight: its results are not this
        // instance's to apply any more.
        if !st.owned.contains_key(&member.shard) {
            return None;
        }
        let resource = st.resources.get_mut(&member.resource)?;
        let (_, p) = resource.objects.iter_mut().find(|(n, _)| *n == member.object)?;
        if let Probe::NoAnswer(why) = probe {
            log::debug!("{} {}: no answer ({why})", member.resource, member.object);
        }
        let was = crate::metrics::ObjectStatus::of(p.state.status.as_deref());
        if p.state.observe(probe, &p.wanted, self.down_after) {
            crate::metrics::object_moved(was, p.state.status.as_deref());
        }
        if polled {
            p.last = Some((SystemTime::now(), probe.clone()));
        }
        Some(p.state.confirming())
    }

    /// Writes the records of `touched` resources whose status changed.
    fn write_touched(&self, st: &mut State, touched: Vec<String>) {
        // Past this, the lease may have expired and the shards gone to other instances.
        let fenced = !self.store.lease_safe_until().is_some_and(|t| Instant::now() < t);
        self.read_unsure(st, &touched);
        for key in touched {
            if st.unsure.contains(&key) {
                continue;
            }
            let Some(resource) = st.resources.get_mut(&key) else { continue };
            let Some(&claim) = st.owned.get(&resource.shard) else { continue };
            let reported = resource.objects.iter().filter(|(_, p)| p.reported).map(|(n, p)| (n.as_str(), &p.state));
            let Some(record) = status::record(reported, &resource.version).map(|r| r.to_string()) else { continue };
            if resource.written.as_ref() == Some(&record) {
                continue;
            }
            if fenced {
                log::warn!("{}: not written, the lease may have expired: {record}", resource.monitoring_key);
                crate::metrics::write_fenced();
                continue;
            }
            log::info!("{}: {}", resource.monitoring_key, record);
            let txn = write(&key, resource, claim, &record);
            st.writes.push((key, resource.shard, claim, self.writer.submit(txn)));
            resource.written = Some(record);
        }
    }
}

/// The write of a resource's record: applied only while the registry entry is the one the
/// record was made from and this instance still holds the shard claim it made (SPEC §6).
fn write(key: &str, resource: &Resource, claim: i64, record: &str) -> Txn {
    Txn {
        when: vec![
            Cmp::ModRevision(key.to_string(), resource.registry_rev),
            Cmp::CreateRevision(keys::shard(resource.shard), claim),
        ],
        then: vec![Op::put(resource.monitoring_key.clone(), record.to_string())],
    }
}

/// The device address of an SNMP unit (`ip:port`).
fn snmp_ip(unit: &UnitKey) -> Option<std::net::IpAddr> {
    if !crate::plugins::snmp::is_snmp(unit.prober) {
        return None;
    }
    unit.addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// The distinct shards of some members.
fn shards_of<'a>(members: impl Iterator<Item = &'a Member>) -> Vec<u16> {
    let mut shards: Vec<u16> = members.map(|m| m.shard).collect();
    shards.sort_unstable();
    shards.dedup();
    shards
}

/// Most slots per interval shared by the units of a bulk prober (VMIs), so that they are
/// asked for in bulk.
const BULK_SLOTS: usize = 10;

/// Where in the interval a unit polls, as a fraction: spread by the golden ratio over the
/// unit ids, so polls are spread evenly over the interval instead of coming all at once.
/// The `held` units of a bulk prober (VMIs) share as few phases as fill its requests (at
/// most `BULK_SLOTS`): one request answers up to its bulk size of them, and an instance
/// holding a third of the VMIs sends a third of the requests.
fn phase(key: &UnitKey, id: u64, held: usize) -> f64 {
    let spread = (id as f64 * 0.618_033_988_749_895).fract();
    match key.prober.bulk {
        1 => spread,
        bulk => {
            let slots = held.div_ceil(bulk).clamp(1, BULK_SLOTS) as f64;
            (spread * slots).floor() / slots
        }
    }
}

/// What the scheduler knows of a resource, for `esi-monitor status`.
fn describe(r: &Resource) -> Value {
    let objects: serde_json::Map<String, Value> = r
        .objects
        .iter()
        .map(|(name, p)| {
            let (at, last) = match &p.last {
                Some((t, probe)) => {
                    (Value::from(t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())), Value::from(probe.to_string()))
                }
                None => (Value::Null, Value::Null),
            };
            let confirmed = p.state.status.clone().map_or(Value::Null, Value::from);
            let mut o = serde_json::json!({"last": last, "at": at, "confirmed": confirmed, "reported": p.reported});
            if let Some((t, text)) = &p.event {
                o["event"] = Value::from(&**text);
                o["event_at"] = Value::from(t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
            }
            (name.clone(), o)
        })
        .collect();
    serde_json::json!({"version": r.version, "objects": objects, "written": r.written})
}

/// A fingerprint of an object's props (same process, same props → same value).
fn fingerprint(props: &serde_json::Map<String, Value>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    Value::Object(props.clone()).to_string().hash(&mut h);
    h.finish()
}

/// The first poll slot at or after `t` for a unit polling at `phase` (0..1) of the interval.
fn slot(interval: Duration, epoch: Instant, phase: f64, t: Instant) -> Instant {
    let every = interval.as_secs_f64().max(0.001);
    let phase = phase * every;
    let since = t.saturating_duration_since(epoch).as_secs_f64() - phase;
    let k = (since / every).ceil().max(0.0);
    epoch + Duration::from_secs_f64(phase + k * every)
}

/// How soon a unit is asked again while an object of it is being confirmed DOWN: from an
/// eighth of the interval (at least 1 s), doubling, at most the interval.
fn retry_after(interval: Duration, fails: u32) -> Duration {
    let base = (interval / 8).max(Duration::from_secs(1));
    base.saturating_mul(1 << fails.saturating_sub(1).min(16)).min(interval)
}

fn next_due(st: &State) -> Instant {
    match st.heap.peek() {
        Some(Reverse((due, _))) => *due,
        None => Instant::now() + Duration::from_secs(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_repeat_every_interval_and_spread_the_units() {
        let (interval, epoch) = (Duration::from_secs(60), Instant::now());
        let t = epoch + Duration::from_secs(1000);
        let key = UnitKey::new(&crate::plugins::contrail::VN, String::new(), String::new(), "n".into());
        let mut phases: Vec<f64> = (1..=8)
            .map(|id| {
                let s = slot(interval, epoch, phase(&key, id, 0), t);
                assert!(s >= t && s < t + interval, "the next slot is within one interval");
                assert_eq!(slot(interval, epoch, phase(&key, id, 0), s + Duration::from_millis(1)), s + interval);
                (s - epoch).as_secs_f64() % 60.0
            })
            .collect();
        phases.sort_by(f64::total_cmp);
        let widest_gap = phases.windows(2).map(|w| w[1] - w[0]).fold(phases[0] + 60.0 - phases[7], f64::max);
        assert!(widest_gap < 20.0, "8 units leave no gap of a third of the interval: {phases:?}");
    }

    #[test]
    fn vmis_share_a_few_slots_so_they_go_in_bulk() {
        let key = UnitKey::new(&crate::plugins::contrail::VMI, String::new(), String::new(), "v".into());
        let phases = |held: usize| {
            let mut p: Vec<u64> = (1..=held as u64).map(|id| (phase(&key, id, held) * 1000.0).round() as u64).collect();
            p.sort();
            p.dedup();
            p.len()
        };
        assert_eq!(phases(1000), BULK_SLOTS, "1,000 VMIs: 10 slots of 100");
        assert_eq!(phases(5000), BULK_SLOTS, "never more than 10 slots");
        assert_eq!(phases(667), 7, "a third of 2,000: 7 requests, not 10 of 67");
        assert_eq!(phases(40), 1);
    }

    #[test]
    fn retries_back_off_up_to_the_interval() {
        let i = Duration::from_secs(60);
        let steps: Vec<u64> = (1..=6).map(|f| retry_after(i, f).as_secs_f64() as u64).collect();
        assert_eq!(steps, [7, 15, 30, 60, 60, 60]);
        assert_eq!(retry_after(Duration::from_secs(2), 1), Duration::from_secs(1), "at least 1 s");
    }
}
