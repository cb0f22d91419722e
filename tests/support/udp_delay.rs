//! A UDP proxy that can hold back replies, for the "late reply" tests: a client talks to the
//! proxy, the proxy forwards each datagram to the upstream (e.g. an snmpd) from a socket of its
//! own per client, and sends the upstream's replies back to that client, optionally delayed.
//!
//! Threads: one receives from clients, one per client receives that client's replies, one
//! sends the delayed replies when due. Every blocking call has a short timeout, so dropping
//! the proxy stops all of them within a bounded time.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(50);

pub struct UdpDelay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    listen: UdpSocket,
    upstream: SocketAddr,
    stop: AtomicBool,
    /// Replies still to delay, and by how much.
    delay: Mutex<(usize, Duration)>,
    forwarded: AtomicU64,
    /// Delayed replies: (due, datagram, client).
    queue: Mutex<Vec<(Instant, Vec<u8>, SocketAddr)>>,
    wake: Condvar,
    clients: Mutex<Vec<JoinHandle<()>>>,
}

impl UdpDelay {
    /// Listens on `listen_addr` (e.g. "127.0.0.9:0" → a free port) and forwards datagrams to
    /// `upstream`; replies go back to the original sender.
    pub fn start(listen_addr: &str, upstream: SocketAddr) -> UdpDelay {
        let listen = UdpSocket::bind(listen_addr).unwrap_or_else(|e| panic!("UdpDelay: bind {listen_addr}: {e}"));
        listen.set_read_timeout(Some(TICK)).expect("read timeout");
        let addr = listen.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            listen,
            upstream,
            stop: AtomicBool::new(false),
            delay: Mutex::new((0, Duration::ZERO)),
            forwarded: AtomicU64::new(0),
            queue: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            clients: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let receiver = std::thread::Builder::new()
            .name("udp-delay-in".into())
            .spawn(move || from_clients(&s))
            .expect("spawn thread");
        let s = shared.clone();
        let delayer = std::thread::Builder::new()
            .name("udp-delay-late".into())
            .spawn(move || send_delayed(&s))
            .expect("spawn thread");
        UdpDelay { addr, shared, threads: vec![receiver, delayer] }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delays the next `n` replies (upstream → client) by `d` each; later replies pass at once.
    pub fn delay_next_replies(&self, n: usize, d: Duration) {
        *self.shared.delay.lock().unwrap() = (n, d);
    }

    /// Replies forwarded to clients so far (a delayed one counts when it is sent).
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for UdpDelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let clients: Vec<_> = self.shared.clients.lock().unwrap().drain(..).collect();
        for t in clients {
            let _ = t.join();
        }
    }
}

fn from_clients(shared: &Arc<Shared>) {
    let mut upstream_of: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok((n, client)) = shared.listen.recv_from(&mut buf) else { continue };
        let sock = match upstream_of.get(&client) {
            Some(s) => s.clone(),
            None => {
                let local = SocketAddr::new(shared.listen.local_addr().expect("local addr").ip(), 0);
                let sock = Arc::new(UdpSocket::bind(local).expect("UdpDelay: bind upstream socket"));
                sock.set_read_timeout(Some(TICK)).expect("read timeout");
                let (s, sock2) = (shared.clone(), sock.clone());
                let t = std::thread::Builder::new()
                    .name("udp-delay-out".into())
                    .spawn(move || replies(&s, &sock2, client))
                    .expect("spawn thread");
                shared.clients.lock().unwrap().push(t);
                upstream_of.insert(client, sock.clone());
                sock
            }
        };
        let _ = sock.send_to(&buf[..n], shared.upstream);
    }
}

fn replies(shared: &Shared, sock: &UdpSocket, client: SocketAddr) {
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        if from != shared.upstream {
            continue;
        }
        let delay = {
            let mut d = shared.delay.lock().unwrap();
            if d.0 > 0 {
                d.0 -= 1;
                Some(d.1)
            } else {
                None
            }
        };
        match delay {
            Some(d) => {
                shared.queue.lock().unwrap().push((Instant::now() + d, buf[..n].to_vec(), client));
                shared.wake.notify_all();
            }
            None => {
                // Counted before sending, so a client that got the reply sees it counted.
                shared.forwarded.fetch_add(1, Ordering::SeqCst);
                let _ = shared.listen.send_to(&buf[..n], client);
            }
        }
    }
}

fn send_delayed(shared: &Shared) {
    let mut queue = shared.queue.lock().unwrap();
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let next = queue.iter().enumerate().min_by_key(|(_, (due, _, _))| *due).map(|(i, (due, _, _))| (i, *due));
        if let Some((i, due)) = next {
            if due <= now {
                let (_, data, client) = queue.remove(i);
                shared.forwarded.fetch_add(1, Ordering::SeqCst);
                let _ = shared.listen.send_to(&data, client);
                continue;
            }
        }
        // Wait for the next due time, a new entry or stop (bounded, so stop is always seen).
        let wait = next.map_or(TICK, |(_, due)| due.saturating_duration_since(now).min(TICK));
        queue = shared.wake.wait_timeout(queue, wait).unwrap().0;
    }
}
