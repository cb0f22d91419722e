//! The trap receiver thread (SPEC §5.1): reads the datagrams sent to `snmp.trap_listen`,
//! believes those `plugins::snmp::traps` believes, acknowledges informs, and hands every
//! believed linkDown/linkUp/coldStart/warmStart to the scheduler, which polls the device at
//! once. Everything else is dropped and counted. A storm of garbage costs a decode each;
//! the scheduler, not this thread, limits polls to one per device per second.

use super::scheduler::Event;
use crate::plugins::snmp::traps::{self, Engines};
use crate::plugins::Clients;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

/// How often the thread looks at the stop channel while no datagram arrives.
const STOP_CHECK: Duration = Duration::from_millis(500);

/// Binds `snmp.trap_listen` (at start, so that a port taken or not permitted is reported
/// before the service says it is ready).
pub fn bind(addr: &str) -> Result<UdpSocket, String> {
    let socket = UdpSocket::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => " (a port below 1024 needs CAP_NET_BIND_SERVICE: see the README)",
            _ => "",
        };
        format!("snmp.trap_listen {addr}: {e}{hint}")
    })?;
    socket.set_read_timeout(Some(STOP_CHECK)).map_err(|e| format!("snmp.trap_listen {addr}: {e}"))?;
    Ok(socket)
}

/// Serves until `stop` fires or closes, or the scheduler is gone.
pub fn run(socket: UdpSocket, clients: Arc<Clients>, events: Sender<Event>, stop: Receiver<()>) {
    let mut buf = vec![0u8; 65_536];
    let mut engines = Engines::default();
    loop {
        match stop.try_recv() {
            Err(TryRecvError::Empty) => {}
            _ => return,
        }
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("trap receiver: {e}");
                std::thread::sleep(STOP_CHECK);
                continue;
            }
        };
        let (senders, profiles) = (clients.snmp.senders(), clients.snmp.profiles());
        let trap = match traps::receive(&buf[..n], from.ip(), &senders, &profiles, &mut engines) {
            Ok(t) => t,
            Err(reason) => {
                crate::metrics::trap_dropped(reason);
                log::debug!("trap receiver: a datagram from {from} dropped ({})", traps::Dropped::LABELS[reason.index()]);
                continue;
            }
        };
        crate::metrics::trap_received(trap.version);
        if let Some(ack) = &trap.ack {
            if let Err(e) = socket.send_to(ack, from) {
                log::warn!("trap receiver: acknowledging an inform from {from}: {e}");
            }
        }
        let name = trap.if_name.clone().or_else(|| trap.if_index.and_then(|i| clients.snmp.if_name(trap.from, i)));
        log::debug!("trap receiver: {}", trap.describe());
        if events.send(Event::Trap(trap, name)).is_err() {
            return;
        }
    }
}
