//! systemd's service notification protocol (sd_notify): READY=1 once the service serves,
//! WATCHDOG=1 keep-alives, STATUS= lines for `systemctl status`, RELOADING=1/STOPPING=1.
//! Each message is one datagram to the socket named by `$NOTIFY_SOCKET`; without that
//! variable (not started by systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// The socket, connected once; None when not run by systemd or the socket is unusable.
fn socket() -> Option<&'static UnixDatagram> {
    static SOCKET: OnceLock<Option<UnixDatagram>> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            let path = std::env::var_os("NOTIFY_SOCKET")?;
            let sock = UnixDatagram::unbound().ok()?;
            let connected = match path.as_encoded_bytes().strip_prefix(b"@") {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?;
                    sock.connect_addr(&addr)
                }
                None => sock.connect(&path),
            };
            match connected {
                Ok(()) => Some(sock),
                Err(e) => {
                    log::warn!("NOTIFY_SOCKET {}: {e}; systemd will not hear from this service", path.to_string_lossy());
                    None
                }
            }
        })
        .as_ref()
}

/// Sends one notification (`READY=1`, `STATUS=…`, several lines joined by `\n`).
pub fn send(state: &str) {
    if let Some(sock) = socket() {
        if let Err(e) = sock.send(state.as_bytes()) {
            log::debug!("sd_notify {state:?}: {e}");
        }
    }
}

/// How often to send WATCHDOG=1: half the watchdog timeout systemd set for this process
/// (`WatchdogSec=`), or None when no watchdog is armed for it.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok()) {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
