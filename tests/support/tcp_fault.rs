//! A TCP proxy in front of a real etcd that can make it stop answering at a chosen moment:
//! when the client sends a byte pattern (a key in a request), that request is passed on and
//! then nothing more goes through in either direction for a while — the request may have
//! been applied, its answer never comes, nor do the client's next requests arrive. After the
//! pause the connections of the time are closed (their HTTP/2 streams lost bytes) and new
//! ones pass again. So a test can make the outcome of one claim unknown.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub struct TcpFault {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The pattern that starts a silence, and how long the silence lasts.
    trigger: Option<(Vec<u8>, Duration)>,
    /// Until when nothing passes; connections opened before `generation` changed are closed
    /// when it ends.
    silent_until: Option<Instant>,
    generation: u64,
    /// How many silences the pattern started.
    silences: usize,
    stopped: bool,
}

impl TcpFault {
    /// Listens on a free loopback port and forwards every connection to `upstream`
    /// (`http://127.0.0.1:2379`).
    pub fn start(upstream: &str) -> TcpFault {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().expect("upstream address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if s.state.lock().unwrap().stopped {
                    return;
                }
                let s = s.clone();
                std::thread::spawn(move || connect(client, upstream, &s));
            }
        });
        TcpFault { addr, shared }
    }

    /// `http://127.0.0.1:<port>`: the endpoint esi-monitor is given.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next request that carries `pattern` starts a silence of `pause`.
    pub fn silence_after(&self, pattern: &str, pause: Duration) {
        self.shared.state.lock().unwrap().trigger = Some((pattern.as_bytes().to_vec(), pause));
    }

    /// How many silences have started so far.
    pub fn silences(&self) -> usize {
        self.shared.state.lock().unwrap().silences
    }
}

impl Drop for TcpFault {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().stopped = true;
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        self.shared.changed.notify_all();
    }
}

impl Shared {
    /// Blocks while a silence lasts; false when the connection of `generation` must close.
    fn pass(&self, generation: u64) -> bool {
        let mut st = self.state.lock().unwrap();
        loop {
            if st.stopped {
                return false;
            }
            match st.silent_until {
                Some(until) if until > Instant::now() => {
                    let left = until - Instant::now();
                    st = self.changed.wait_timeout(st, left).unwrap().0;
                }
                _ => return st.generation == generation,
            }
        }
    }
}

/// A new connection: opened upstream once no silence lasts; then one thread per direction.
fn connect(client: TcpStream, upstream: SocketAddr, s: &Arc<Shared>) {
    let generation = s.state.lock().unwrap().generation;
    s.pass(generation); // waits out a silence
    let generation = {
        let st = s.state.lock().unwrap();
        if st.stopped {
            return;
        }
        st.generation
    };
    let Ok(server) = TcpStream::connect(upstream) else { return };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = s.clone();
    std::thread::spawn(move || pump(c2, s2, generation, &up, true));
    pump(server, client, generation, s, false);
}

/// Copies `from` to `to` until either side closes, the connection's generation ends, or
/// (client to server, `watch` true) the trigger pattern starts a silence.
fn pump(mut from: TcpStream, mut to: TcpStream, generation: u64, s: &Shared, watch: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !s.pass(generation) {
            break;
        }
        if watch {
            let mut st = s.state.lock().unwrap();
            if let Some((pattern, pause)) = st.trigger.clone() {
                tail.extend_from_slice(&buf[..n]);
                if tail.windows(pattern.len()).any(|w| w == pattern.as_slice()) {
                    // The silence starts before this request reaches etcd, so that its
                    // answer cannot slip through.
                    st.trigger = None;
                    st.silences += 1;
                    st.silent_until = Some(Instant::now() + pause);
                    st.generation += 1; // every connection open now closes when it ends
                }
                let keep = tail.len().saturating_sub(pattern.len());
                tail.drain(..keep);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
