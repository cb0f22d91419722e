//! A TLS front for the tests' plain-HTTP simulators: it accepts TLS (rustls, the server
//! certificate of a throwaway `Pki`) on 127.0.0.1 and passes the decrypted bytes to the
//! simulator, so that clients are tested against a real `https://` endpoint and its CA.

use super::etcd::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct TlsProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TlsProxy {
    /// Listens on a free port of 127.0.0.1, in front of `backend`.
    pub fn start(pki: &Pki, backend: SocketAddr) -> TlsProxy {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.path("server.pem")).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let (addr, stop) = (listener.local_addr().unwrap(), Arc::new(AtomicBool::new(false)));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (config, flag) = (config.clone(), flag.clone());
                        std::thread::spawn(move || relay(config, client, backend, &flag));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => return,
                }
            }
        });
        TlsProxy { addr, stop }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies one connection both ways, polling each side for 2 ms in turn (HTTP goes request,
/// answer), for at most a minute.
fn relay(config: Arc<rustls::ServerConfig>, client: TcpStream, backend: SocketAddr, stop: &AtomicBool) {
    let Ok(mut plain) = TcpStream::connect(backend) else { return };
    let tick = Some(Duration::from_millis(2));
    if client.set_nonblocking(false).and(client.set_read_timeout(tick)).and(plain.set_read_timeout(tick)).is_err() {
        return;
    }
    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(conn, client);
    let mut buf = [0u8; 16384];
    for _ in 0..15_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        for from_tls in [true, false] {
            let read = if from_tls { tls.read(&mut buf) } else { plain.read(&mut buf) };
            let n = match read {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                Err(_) => return,
            };
            let written = match from_tls {
                true => plain.write_all(&buf[..n]),
                false => tls.write_all(&buf[..n]).and_then(|_| tls.flush()),
            };
            if written.is_err() {
                return;
            }
        }
    }
}
