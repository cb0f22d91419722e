//! How the polling is split between instances (SPEC §6): 256 fixed shards, a resource's
//! shard from its device affinity, and each shard's owner by rendezvous hashing over the
//! live members. Pure functions, so that the scheduler, the membership thread and
//! `esi-monitor status` agree on every answer, and another implementation can too: the hash
//! is specified to the bit.

use crate::plugins::Object;
use serde_json::Value;

/// How many shards there are, whatever the number of instances.
pub const SHARDS: u16 = 256;

/// FNV-1a 64 over `bytes`, then the splitmix64 finalizer (wrapping).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        x ^= u64::from(*b);
        x = x.wrapping_mul(0x0100_0000_01b3);
    }
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The shard of an affinity (a device address, or a resource's registry key).
pub fn shard_of(affinity: &str) -> u16 {
    (hash(affinity.as_bytes()) % u64::from(SHARDS)) as u16
}

/// A registry entry's affinity: the device address of its first device-polled object
/// (SNMP `device_ip`/`ip`, NETCONF `host`), else the resource's registry key. Objects that
/// do not pass their type's checks are skipped, as the scheduler skips them.
pub fn affinity(registry_key: &str, entry: &Value) -> String {
    let objects = entry.get("objects").and_then(Value::as_object).into_iter().flatten();
    for (name, props) in objects {
        let Some(object) = props.as_object().and_then(|p| Object::check(name, p).ok()) else { continue };
        let device = object.kind.prober.and_then(|p| p.device);
        if let Some(addr) = device.map(|prop| object.text(prop)).filter(|a| !a.is_empty()) {
            return addr;
        }
    }
    registry_key.to_string()
}

/// The live member that owns `shard`: the highest `hash("<member id>/<shard>")`; ties (never
/// seen in practice) go to the smaller id, so every instance agrees.
pub fn owner<'a>(shard: u16, members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    members.into_iter().map(|m| (hash(format!("{m}/{shard}").as_bytes()), std::cmp::Reverse(m))).max().map(|(_, m)| m.0)
}

/// The shards `me` owns among `members` (which include `me`).
pub fn assigned(me: &str, members: &[&str]) -> Vec<u16> {
    (0..SHARDS).filter(|s| owner(*s, members.iter().copied()) == Some(me)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_64_then_splitmix64() {
        // FNV-1a 64 of "" and "a" are the published 0xcbf29ce484222325 and 0xaf63dc4c8601ec8c;
        // the finalizer is applied to those by hand here.
        let finalize = |mut x: u64| {
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
            x ^ (x >> 31)
        };
        assert_eq!(hash(b""), finalize(0xcbf29ce484222325));
        assert_eq!(hash(b"a"), finalize(0xaf63dc4c8601ec8c));
        assert_eq!(hash(b"foobar"), finalize(0x85944171f73967e8));
        assert_ne!(shard_of("10.0.0.1"), shard_of("10.0.0.2"));
    }

    #[test]
    fn shards_split_evenly_and_a_join_moves_about_a_share() {
        let ids: Vec<String> = (0..4).map(|i| format!("{:08x}-instance-{i}", i * 7919)).collect();
        let three: Vec<&str> = ids[..3].iter().map(String::as_str).collect();
        let counts: Vec<usize> = three.iter().map(|m| assigned(m, &three).len()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 256, "every shard has one owner: {counts:?}");
        assert!(counts.iter().all(|c| (64..=107).contains(c)), "within ±25 % of 85: {counts:?}");
        let four: Vec<&str> = ids.iter().map(String::as_str).collect();
        let moved = (0..SHARDS).filter(|s| owner(*s, three.iter().copied()) != owner(*s, four.iter().copied())).count();
        let to_new = assigned(&ids[3], &four).len();
        assert_eq!(moved, to_new, "a join moves shards only to the new member");
        assert!((32..=96).contains(&moved), "about 256/4 move: {moved}");
    }

    #[test]
    fn a_resource_follows_its_first_device() {
        let entry = serde_json::json!({"objects": {
            "vn": {"type": "virtual_network", "fq_name": "a:b:c"},
            "port": {"type": "physical_port", "device_ip": "10.0.0.7", "community_name": "c", "name": "xe-0/0/1"},
            "vrrp": {"type": "vrrp_session", "host": "10.0.0.9", "login": "l", "password": "p", "interface": "i", "vrid": 1}
        }});
        assert_eq!(affinity("/k", &entry), "10.0.0.7");
        let vms = serde_json::json!({"objects": {"vm": {"type": "nova_vm", "server_id": "s"}}});
        assert_eq!(affinity("/esi-worker/monitoring/v2.0/vnf_instances/x", &vms), "/esi-worker/monitoring/v2.0/vnf_instances/x");
    }
}
