//! A tiny in-process SNMPv2c agent for the unit tests: answers GET and GETBULK from a
//! table on 127.0.0.1, and can misbehave on demand (drop or delay replies, send a stray
//! reply with another request id first, answer tooBig above a number of varbinds).

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ber::Val;
use super::message::{self, Body, Message, Pdu};
use super::wire::{IF_NAME, IF_OPER_STATUS, SYS_UPTIME};

#[derive(Default)]
struct Shared {
    mib: Mutex<BTreeMap<Vec<u32>, Val>>,
    /// sysUpTime counting from (ticks, since) when set.
    uptime: Mutex<Option<(u32, Instant)>>,
    drop_next: AtomicUsize,
    /// Delays of the next replies, in order.
    delays: Mutex<VecDeque<Duration>>,
    stray_first: AtomicBool,
    too_big_above: AtomicUsize,
    /// Delayed replies sent so far.
    late_sent: AtomicUsize,
    /// (PDU tag, number of varbinds) of every request answered or not.
    requests: Mutex<Vec<(u8, usize)>>,
}

pub struct FakeAgent {
    addr: SocketAddr,
    community: Vec<u8>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAgent {
    /// An agent with `interfaces` (ifIndex, ifName, up).
    pub fn start(community: &str, interfaces: &[(u32, &str, bool)]) -> FakeAgent {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the fake agent");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut agent = FakeAgent {
            addr,
            community: community.as_bytes().to_vec(),
            shared,
            stop,
            thread: None,
        };
        agent.set_interfaces(interfaces);
        agent.set_uptime(Some(1000));
        let (shared, stop, community) = (
            Arc::clone(&agent.shared),
            Arc::clone(&agent.stop),
            agent.community.clone(),
        );
        agent.thread = Some(std::thread::spawn(move || {
            serve(&socket, &shared, &stop, &community)
        }));
        agent
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_interfaces(&self, interfaces: &[(u32, &str, bool)]) {
        let mut mib = self.shared.mib.lock().expect("mib");
        mib.retain(|oid, _| !oid.starts_with(IF_NAME) && !oid.starts_with(IF_OPER_STATUS));
        for &(index, name, up) in interfaces {
            mib.insert(
                [IF_NAME, &[index]].concat(),
                Val::Bytes(name.as_bytes().to_vec()),
            );
            mib.insert(
                [IF_OPER_STATUS, &[index]].concat(),
                Val::Int(if up { 1 } else { 2 }),
            );
        }
    }

    pub fn set_up(&self, index: u32, up: bool) {
        let mut mib = self.shared.mib.lock().expect("mib");
        mib.insert(
            [IF_OPER_STATUS, &[index]].concat(),
            Val::Int(if up { 1 } else { 2 }),
        );
    }

    /// sysUpTime starts at `ticks` now and advances with time; `None`: no sysUpTime.
    pub fn set_uptime(&self, ticks: Option<u32>) {
        *self.shared.uptime.lock().expect("uptime") = ticks.map(|t| (t, Instant::now()));
    }

    pub fn drop_next(&self, n: usize) {
        self.shared.drop_next.store(n, Ordering::SeqCst);
    }

    /// Delays each of the next replies by the next of `delays`.
    pub fn delay_next(&self, delays: &[Duration]) {
        self.shared.delays.lock().expect("delays").extend(delays);
    }

    pub fn stray_first(&self, on: bool) {
        self.shared.stray_first.store(on, Ordering::SeqCst);
    }

    pub fn too_big_above(&self, n: usize) {
        self.shared.too_big_above.store(n, Ordering::SeqCst);
    }

    pub fn late_sent(&self) -> usize {
        self.shared.late_sent.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<(u8, usize)> {
        self.shared.requests.lock().expect("requests").clone()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, shared: &Arc<Shared>, stop: &AtomicBool, community: &[u8]) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Some(Message::Community { community: got, body: Body::Pdu(pdu), .. }) = message::decode(&buf[..n]) else {
            continue;
        };
        let asked = pdu.varbinds.clone();
        shared.requests.lock().expect("requests").push((pdu.tag, asked.len()));
        if got != community {
            continue; // like net-snmp: silence for a wrong community
        }
        if shared.drop_next.load(Ordering::SeqCst) > 0 {
            shared.drop_next.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let (status, answer) = answer(shared, &pdu, &asked);
        let response = |req_id, varbinds| Pdu { tag: message::RESPONSE, req_id, a: status, b: 0, varbinds };
        let reply = message::community_message(message::VERSION_2C, community, &response(pdu.req_id, answer.clone()));
        if shared.stray_first.load(Ordering::SeqCst) {
            // A "late reply" to some other request, saying the opposite.
            let flipped = answer
                .iter()
                .map(|(o, v)| (o.clone(), if *v == Val::Int(1) { Val::Int(2) } else { Val::Int(1) }))
                .collect();
            let stray = message::community_message(message::VERSION_2C, community, &response(pdu.req_id.wrapping_sub(1), flipped));
            let _ = socket.send_to(&stray, from);
        }
        let delay = shared.delays.lock().expect("delays").pop_front();
        match (delay, socket.try_clone()) {
            (Some(d), Ok(late)) => {
                let shared = Arc::clone(shared);
                std::thread::spawn(move || {
                    std::thread::sleep(d);
                    let _ = late.send_to(&reply, from);
                    shared.late_sent.fetch_add(1, Ordering::SeqCst);
                });
            }
            _ => {
                let _ = socket.send_to(&reply, from);
            }
        }
    }
}

fn answer(
    shared: &Shared,
    pdu: &Pdu,
    asked: &[(Vec<u32>, Val)],
) -> (i64, Vec<(Vec<u32>, Val)>) {
    let mut mib = shared.mib.lock().expect("mib").clone();
    if let Some((ticks, since)) = *shared.uptime.lock().expect("uptime") {
        let now = u64::from(ticks) + since.elapsed().as_millis() as u64 / 10;
        mib.insert(SYS_UPTIME.to_vec(), Val::Ticks(now as u32));
    }
    match pdu.tag {
        message::GET => {
            let limit = shared.too_big_above.load(Ordering::SeqCst);
            if limit > 0 && asked.len() > limit {
                return (1, asked.to_vec());
            }
            let values = asked
                .iter()
                .map(|(oid, _)| {
                    (
                        oid.clone(),
                        mib.get(oid).cloned().unwrap_or(Val::NoSuchInstance),
                    )
                })
                .collect();
            (0, values)
        }
        message::GETBULK => {
            let repetitions = pdu.b as usize;
            let mut values = Vec::new();
            if let Some((start, _)) = asked.first() {
                values.extend(
                    mib.range::<Vec<u32>, _>((Bound::Excluded(start.clone()), Bound::Unbounded))
                        .take(repetitions)
                        .map(|(o, v)| (o.clone(), v.clone())),
                );
                if values.len() < repetitions {
                    let last = values.last().map_or(start.clone(), |(o, _)| o.clone());
                    values.push((last, Val::EndOfMibView));
                }
            }
            (0, values)
        }
        _ => (5, asked.to_vec()),
    }
}
