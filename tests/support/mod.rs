//! Shared test support: real etcd, the Contrail simulator, the esi-monitor process, and
//! waiting for conditions with a bound instead of sleeping.
#![allow(dead_code)]

pub mod addresses;
pub mod contrail_sim;
pub mod etcd;
pub mod jobs;
pub mod monitor;
pub mod nova_sim;
pub mod replay;
pub mod scrape;
pub mod snmpd;
pub mod sshd;
pub mod tcp_fault;
pub mod tls_proxy;
pub mod udp_delay;

use std::time::{Duration, Instant};

/// A file holding `text` (a configuration), removed when dropped.
pub fn temp_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut f, text.as_bytes()).expect("write temp file");
    f
}

/// A free loopback address (free when asked), e.g. for `metrics.listen`.
pub fn free_listen() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Polls `f` every 20 ms until it returns `Some`, at most `limit`; panics naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
