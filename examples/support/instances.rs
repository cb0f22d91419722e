//! Several esi-monitor instances against one etcd, sharing the polling (SPEC §6), for the
//! benchmarks: each started with the same configuration and its own `metrics.listen` port,
//! killed when dropped (SIGKILL, also on error or panic, by `Proc`'s guard). What they hold
//! is read where the instances publish it: the member keys `/esi-worker/members/<id>` (whose
//! value names the pid, so an id maps to one of our processes) and the shard claims
//! `/esi-worker/shards/<n>` (value: the owner's id), compared with rendezvous hashing
//! (`esi_monitor::shards::owner`) over the instances running.

use super::metrics::Samples;
use super::process::Proc;
use super::proc_stats;
use esi_monitor::shards;
use esi_monitor::store::Store;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(100);

/// The shard of a registered resource, as the instances compute it.
pub fn shard_of(registry_key: &str, entry: &str) -> u16 {
    let entry: Value = serde_json::from_str(entry).unwrap_or(Value::Null);
    shards::shard_of(&shards::affinity(registry_key, &entry))
}

pub struct Instance {
    pub proc: Proc,
    /// Its `metrics.listen` address (`127.0.0.1:PORT`).
    pub listen: String,
    pub started: Instant,
    /// Its number among all instances started (1, 2, …), for the figures.
    pub number: usize,
}

impl Instance {
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn samples(&self) -> Result<Samples, String> {
        Samples::scrape(&self.listen)
    }

    /// `esi_monitor_shards_owned` on its `/metrics`, 0 while it does not answer.
    pub fn shards_owned(&self) -> f64 {
        self.samples().map(|s| s.get("esi_monitor_shards_owned")).ok().filter(|v| !v.is_nan()).unwrap_or(0.0)
    }
}

pub struct Instances {
    binary: PathBuf,
    /// The configuration of every instance, without its `metrics:` line.
    config: String,
    store: Store,
    /// The instances running, in the order they were started.
    pub list: Vec<Instance>,
    /// Instances started so far (killed ones included).
    pub started: usize,
}

impl Instances {
    /// Starts `n` instances of `binary` with `config` (YAML without a `metrics:` key; each
    /// instance gets `metrics: {listen: "127.0.0.1:<free port>"}`). `store` reads etcd.
    pub fn start(binary: &Path, config: &str, n: usize, store: Store) -> Result<Instances, String> {
        let mut all = Instances { binary: binary.to_path_buf(), config: config.to_string(), store, list: Vec::new(), started: 0 };
        for _ in 0..n {
            all.start_one()?;
        }
        Ok(all)
    }

    /// Starts one more instance; returns its index in `list`.
    pub fn start_one(&mut self) -> Result<usize, String> {
        let listen = format!("127.0.0.1:{}", super::free_port());
        let config = format!("{}metrics: {{listen: \"{listen}\"}}\n", self.config);
        let proc = Proc::esi_monitor(&self.binary, &config)?;
        self.started += 1;
        self.list.push(Instance { proc, listen, started: Instant::now(), number: self.started });
        Ok(self.list.len() - 1)
    }

    /// Kills instance `i` with SIGKILL (its lease then expires by itself, after
    /// `etcd.lease_ttl_s`), reaps it and removes it from `list`; returns it (its log stays
    /// readable until it is dropped) and the instant of the kill.
    pub fn kill(&mut self, i: usize) -> (Instance, Instant) {
        let mut victim = self.list.remove(i);
        victim.proc.stop();
        (victim, Instant::now())
    }

    pub fn pids(&self) -> Vec<u32> {
        self.list.iter().map(Instance::pid).collect()
    }

    /// CPU-seconds (utime + stime) of every instance running, summed.
    pub fn cpu_seconds(&self) -> f64 {
        self.list.iter().filter_map(|m| proc_stats::cpu_seconds(m.pid())).sum()
    }

    /// CPU-seconds per instance, in `list` order.
    pub fn cpu_each(&self) -> Vec<f64> {
        self.list.iter().map(|m| proc_stats::cpu_seconds(m.pid()).unwrap_or(0.0)).collect()
    }

    /// CPU-seconds per thread group (`proc_stats::cpu_by_thread`), summed over the instances.
    pub fn cpu_by_thread(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for m in &self.list {
            for (group, cpu) in proc_stats::cpu_by_thread(m.pid()) {
                *out.entry(group).or_insert(0.0) += cpu;
            }
        }
        out
    }

    /// A `Vm…:` figure of /proc/<pid>/status (KiB) per instance, in `list` order.
    pub fn status_kib(&self, field: &str) -> Vec<u64> {
        self.list.iter().map(|m| proc_stats::status_kib(m.pid(), field).unwrap_or(0)).collect()
    }

    /// An error naming the first instance that has exited, with the end of its log.
    pub fn check_running(&mut self) -> Result<(), String> {
        for m in &mut self.list {
            if !m.proc.is_running() {
                return Err(format!("esi-monitor instance {} exited: {}", m.number, m.proc.log_tail(10).join(" | ")));
            }
        }
        Ok(())
    }

    /// The live members in etcd: id → pid (from the member keys' values).
    pub fn members(&self) -> Result<BTreeMap<String, u32>, String> {
        let (kvs, _) = self.store.range(esi_monitor::keys::MEMBERS).map_err(|e| format!("reading the members: {e}"))?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let id = esi_monitor::keys::suffix(&kv.key, esi_monitor::keys::MEMBERS)?.to_string();
                let value: Value = serde_json::from_slice(&kv.value).ok()?;
                Some((id, value.get("pid")?.as_u64()? as u32))
            })
            .collect())
    }

    /// The shard claims in etcd: shard → owner id.
    pub fn claims(&self) -> Result<HashMap<u16, String>, String> {
        let (kvs, _) = self.store.range(esi_monitor::keys::SHARDS).map_err(|e| format!("reading the shard claims: {e}"))?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let n = esi_monitor::keys::suffix(&kv.key, esi_monitor::keys::SHARDS)?.parse().ok()?;
                Some((n, kv.value_str().to_string()))
            })
            .collect())
    }

    /// The owner id of one shard now (None: not claimed).
    pub fn claim(&self, shard: u16) -> Result<Option<String>, String> {
        let key = esi_monitor::keys::shard(shard);
        self.store.get(&key).map(|kv| kv.map(|kv| kv.value_str().to_string())).map_err(|e| format!("reading {key}: {e}"))
    }

    /// Each running instance's member id (None while it has no member key).
    pub fn ids(&self) -> Result<Vec<Option<String>>, String> {
        let by_pid: HashMap<u32, String> = self.members()?.into_iter().map(|(id, pid)| (pid, id)).collect();
        Ok(self.list.iter().map(|m| by_pid.get(&m.pid()).cloned()).collect())
    }

    /// The index in `list` of the instance whose member id is `id`.
    pub fn index_of(&self, id: &str) -> Result<Option<usize>, String> {
        Ok(self.ids()?.iter().position(|i| i.as_deref() == Some(id)))
    }

    /// True when the members are exactly the running instances and every shard is claimed
    /// by its rendezvous owner among them.
    pub fn settled(&self) -> Result<bool, String> {
        let members = self.members()?;
        let ids: Vec<String> = match self.ids()?.into_iter().collect::<Option<Vec<String>>>() {
            Some(ids) => ids,
            None => return Ok(false),
        };
        if members.len() != ids.len() {
            return Ok(false);
        }
        let claims = self.claims()?;
        let live: Vec<&str> = ids.iter().map(String::as_str).collect();
        Ok((0..shards::SHARDS).all(|s| claims.get(&s).map(String::as_str) == shards::owner(s, live.iter().copied())))
    }

    /// Waits (at most `limit`) until `settled`; returns how long it took.
    pub fn wait_settled(&mut self, limit: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        loop {
            super::interrupt::check()?;
            self.check_running()?;
            if self.settled()? {
                return Ok(t.elapsed());
            }
            if t.elapsed() > limit {
                let owned: Vec<String> = self.list.iter().map(|m| format!("{}", m.shards_owned())).collect();
                return Err(format!(
                    "the shards were not claimed by their rendezvous owners among the {} instances within {limit:?} \
                     ({} members, {} claims; shards owned per instance: {})",
                    self.list.len(),
                    self.members()?.len(),
                    self.claims()?.len(),
                    owned.join(", ")
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits (at most `limit`) until instance `i` holds shards (`esi_monitor_shards_owned` > 0
    /// on its `/metrics` and its id in a claim); returns how long after its start.
    pub fn wait_holds(&mut self, i: usize, limit: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        loop {
            super::interrupt::check()?;
            self.check_running()?;
            let id = self.ids()?.get(i).cloned().flatten();
            let claimed = match &id {
                Some(id) => self.claims()?.values().any(|o| o == id),
                None => false,
            };
            if claimed && self.list[i].shards_owned() > 0.0 {
                return Ok(self.list[i].started.elapsed());
            }
            if t.elapsed() > limit {
                return Err(format!(
                    "instance {} held no shard {limit:?} after it started: {}",
                    self.list[i].number,
                    self.list[i].proc.log_tail(5).join(" | ")
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// One `/metrics` scrape of every instance, in `list` order.
    pub fn samples(&self) -> Result<Vec<Samples>, String> {
        self.list.iter().map(Instance::samples).collect()
    }
}
