//! Proves the SNMP test harness (tests/support/snmpd.rs, udp_delay.rs) with net-snmp's own
//! command-line tools, independently of the plugin under test: the Junos-like interfaces,
//! flipping a port, renaming/renumbering, sysUpTime jumps, wrong community, several agents on
//! one port, stop/restart, and a late reply through the delay proxy.

mod support;

use std::process::Command;
use std::time::Duration;
use support::snmpd::{Interface, Snmpd};
use support::udp_delay::UdpDelay;
use support::wait_for;

const IF_NAME: &str = ".1.3.6.1.2.1.31.1.1.1.1";
const IF_OPER_STATUS: &str = ".1.3.6.1.2.1.2.2.1.8";
const SYS_UPTIME: &str = ".1.3.6.1.2.1.1.3.0";

/// Runs net-snmp's command-line tools with no system configuration or MIBs.
struct Tools {
    dir: tempfile::TempDir,
}

impl Tools {
    fn new() -> Tools {
        Tools { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// `tool -v2c -c COMMUNITY -On -Oq -Ot -r 0 -t 1 TARGET ARGS…` → (oid, value) lines, or
    /// the tool's error output (e.g. "Timeout: No Response from …").
    fn run(&self, tool: &str, target: &str, community: &str, args: &[&str]) -> Result<Vec<(String, String)>, String> {
        let out = Command::new(tool)
            .args(["-v2c", "-c", community, "-On", "-Oq", "-Ot", "-r", "0", "-t", "1", target])
            .args(args)
            .env("MIBS", "")
            .env("SNMPCONFPATH", self.dir.path())
            .env("SNMP_PERSISTENT_DIR", self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): install Debian's snmp (`make deps`)"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("Timeout") {
            return Err(format!("{stderr}{stdout}"));
        }
        Ok(stdout
            .lines()
            // snmpbulkwalk's "No more variables left in this MIB View" marks the end of the
            // agent's tree, not a variable.
            .filter(|l| !l.is_empty() && !l.contains("No more variables left"))
            .map(|l| {
                let (oid, value) = l.split_once(' ').unwrap_or((l, ""));
                (oid.to_string(), value.to_string())
            })
            .collect())
    }

    fn get(&self, target: &str, community: &str, oid: &str) -> Result<String, String> {
        let rows = self.run("snmpget", target, community, &[oid])?;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].0, oid);
        Ok(rows[0].1.clone())
    }

    fn walk(&self, target: &str, community: &str, oid: &str) -> Vec<(String, String)> {
        self.run("snmpbulkwalk", target, community, &[oid]).unwrap_or_else(|e| panic!("walk {oid} on {target}: {e}"))
    }

    fn uptime(&self, agent: &Snmpd) -> u32 {
        let v = self.get(&target(agent), agent.community(), SYS_UPTIME).expect("sysUpTime");
        v.parse().unwrap_or_else(|_| panic!("sysUpTime {v:?}"))
    }
}

fn target(agent: &Snmpd) -> String {
    format!("{}:{}", agent.addr(), agent.port())
}

fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(o, v)| (o.to_string(), v.to_string())).collect()
}

fn if_names(tools: &Tools, agent: &Snmpd) -> Vec<(String, String)> {
    tools.walk(&target(agent), agent.community(), IF_NAME)
}

#[test]
fn junos_interfaces_walk_in_if_index_order() {
    let tools = Tools::new();
    let agent = Snmpd::start("127.0.0.5", "public", &Snmpd::junos_interfaces());
    let t = target(&agent);
    assert_eq!(
        if_names(&tools, &agent),
        rows(&[
            (".1.3.6.1.2.1.31.1.1.1.1.513", "\"xe-0/0/3\""),
            (".1.3.6.1.2.1.31.1.1.1.1.514", "\"xe-0/0/4\""),
            (".1.3.6.1.2.1.31.1.1.1.1.545", "\"xe-0/0/3.1025\""),
            (".1.3.6.1.2.1.31.1.1.1.1.560", "\"ae0.1025\""),
        ])
    );
    assert_eq!(
        tools.walk(&t, "public", IF_OPER_STATUS),
        rows(&[
            (".1.3.6.1.2.1.2.2.1.8.513", "1"),
            (".1.3.6.1.2.1.2.2.1.8.514", "1"),
            (".1.3.6.1.2.1.2.2.1.8.545", "1"),
            (".1.3.6.1.2.1.2.2.1.8.560", "1"),
        ])
    );
    // One GETBULK: the four ifName rows, then it leaves the subtree (the next ifXTable column).
    let bulk = tools.run("snmpbulkget", &t, "public", &["-Cn0", "-Cr6", IF_NAME]).expect("bulkget");
    let oids: Vec<&str> = bulk.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        oids,
        [
            ".1.3.6.1.2.1.31.1.1.1.1.513",
            ".1.3.6.1.2.1.31.1.1.1.1.514",
            ".1.3.6.1.2.1.31.1.1.1.1.545",
            ".1.3.6.1.2.1.31.1.1.1.1.560",
            ".1.3.6.1.2.1.31.1.1.1.2.513",
            ".1.3.6.1.2.1.31.1.1.1.2.514",
        ]
    );
    // Nothing else of mib-2 is served (the host's own ifTable is not there).
    let all = tools.walk(&t, "public", ".1.3.6.1.2.1");
    assert_eq!(all.len(), 1 + 3 * 4, "{all:?}");
}

#[test]
fn oper_status_follows_set_up() {
    let tools = Tools::new();
    let agent = Snmpd::start("127.0.0.5", "public", &Snmpd::junos_interfaces());
    let t = target(&agent);
    let status = |idx: u32| tools.get(&t, "public", &format!("{IF_OPER_STATUS}.{idx}")).expect("ifOperStatus");
    assert_eq!(status(514), "1");
    agent.set_up("xe-0/0/4", false);
    assert_eq!(status(514), "2");
    assert_eq!(status(513), "1");
    agent.set_up("xe-0/0/4", true);
    agent.set_up("ae0.1025", false);
    assert_eq!(status(514), "1");
    assert_eq!(status(560), "2");
}

#[test]
fn set_interfaces_renames_and_renumbers() {
    let tools = Tools::new();
    let agent = Snmpd::start("127.0.0.5", "public", &Snmpd::junos_interfaces());
    let t = target(&agent);
    agent.set_interfaces(&[Interface::new(600, "xe-0/0/3", false), Interface::new(513, "xe-0/0/9", true)]);
    assert_eq!(
        if_names(&tools, &agent),
        rows(&[(".1.3.6.1.2.1.31.1.1.1.1.513", "\"xe-0/0/9\""), (".1.3.6.1.2.1.31.1.1.1.1.600", "\"xe-0/0/3\"")])
    );
    assert_eq!(tools.get(&t, "public", &format!("{IF_OPER_STATUS}.600")).unwrap(), "2");
    let gone = tools.get(&t, "public", &format!("{IF_NAME}.545")).unwrap();
    assert!(gone.contains("No Such Instance"), "{gone}");
    agent.set_interfaces(&[]);
    let none = if_names(&tools, &agent);
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn uptime_moves_forward_and_jumps_back() {
    let tools = Tools::new();
    let agent = Snmpd::start("127.0.0.5", "public", &Snmpd::junos_interfaces());
    let first = tools.uptime(&agent);
    wait_for("sysUpTime to increase", Duration::from_secs(10), || (tools.uptime(&agent) > first).then_some(()));

    agent.set_uptime_ticks(500_000);
    let high = tools.uptime(&agent);
    assert!(high >= 500_000, "{high}");
    agent.set_uptime_ticks(1_000); // a reboot
    let low = tools.uptime(&agent);
    assert!((1_000..high).contains(&low), "{low} after {high}");
    wait_for("sysUpTime to count on after the jump", Duration::from_secs(10), || {
        (tools.uptime(&agent) > low).then_some(())
    });
}

#[test]
fn wrong_community_gets_no_answer() {
    let tools = Tools::new();
    let agent = Snmpd::start("127.0.0.5", "s3cret", &Snmpd::junos_interfaces());
    let t = target(&agent);
    let err = tools.get(&t, "public", SYS_UPTIME).unwrap_err();
    assert!(err.contains("Timeout"), "{err}");
    assert!(tools.get(&t, "s3cret", SYS_UPTIME).is_ok());
}

#[test]
fn two_agents_share_one_port() {
    let tools = Tools::new();
    let port = Snmpd::free_port(&["127.0.0.5", "127.0.0.6"]);
    let a = Snmpd::start_on("127.0.0.5", port, "comm-a", &Snmpd::junos_interfaces());
    let b = Snmpd::start_on("127.0.0.6", port, "comm-b", &[Interface::new(7, "ge-0/0/7", true)]);
    assert_eq!((a.port(), b.port()), (port, port));
    assert_eq!(if_names(&tools, &a).len(), 4);
    assert_eq!(if_names(&tools, &b), rows(&[(".1.3.6.1.2.1.31.1.1.1.1.7", "\"ge-0/0/7\"")]));
    b.set_up("ge-0/0/7", false);
    assert_eq!(tools.get(&target(&b), "comm-b", &format!("{IF_OPER_STATUS}.7")).unwrap(), "2");
    assert_eq!(tools.get(&target(&a), "comm-a", &format!("{IF_OPER_STATUS}.513")).unwrap(), "1");
    // Each agent has its own community.
    assert!(tools.get(&target(&a), "comm-b", SYS_UPTIME).is_err());
}

#[test]
fn stop_and_restart() {
    let tools = Tools::new();
    let mut agent = Snmpd::start("127.0.0.5", "public", &Snmpd::junos_interfaces());
    let t = target(&agent);
    agent.set_up("xe-0/0/3", false);
    assert!(tools.get(&t, "public", SYS_UPTIME).is_ok());
    agent.stop();
    assert!(agent.pid().is_none());
    let err = tools.get(&t, "public", SYS_UPTIME).unwrap_err();
    assert!(err.contains("Timeout"), "{err}");
    agent.restart();
    assert_eq!(target(&agent), t);
    assert_eq!(tools.get(&t, "public", &format!("{IF_OPER_STATUS}.513")).unwrap(), "2");
}

#[test]
fn late_reply_through_udp_delay() {
    let tools = Tools::new();
    let agent = Snmpd::start("127.0.0.5", "public", &Snmpd::junos_interfaces());
    let proxy = UdpDelay::start("127.0.0.9:0", agent.socket_addr());
    let via = proxy.addr().to_string();
    assert!(tools.get(&via, "public", SYS_UPTIME).is_ok());
    assert_eq!(proxy.forwarded(), 1);

    // The reply comes 2 s late, after snmpget gave up (-t 1 -r 0); it is still sent on.
    proxy.delay_next_replies(1, Duration::from_secs(2));
    let err = tools.get(&via, "public", SYS_UPTIME).unwrap_err();
    assert!(err.contains("Timeout"), "{err}");
    wait_for("the delayed reply to be forwarded", Duration::from_secs(10), || (proxy.forwarded() == 2).then_some(()));

    // The next request is answered at once.
    assert_eq!(tools.get(&via, "public", &format!("{IF_NAME}.514")).unwrap(), "\"xe-0/0/4\"");
    assert_eq!(proxy.forwarded(), 3);
}
