//! One NETCONF session over SSH (RFC 6241/6242): TCP connect, SSH handshake, host key check,
//! password authentication, the `netconf` subsystem, hello exchange, then RPCs with checked
//! message ids. Any failure leaves the session unusable: the pool drops it and opens a new
//! one on the next poll, so a late reply can never be taken for the answer to a later RPC.

use super::framing::{self, Framing, Reader, MAX_MESSAGE};
use super::hostkeys::HostKeys;
use super::reply;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where and as whom a session logs in. The password is a secret: never printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Login {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl std::fmt::Display for Login {
    /// `user@host:port`, never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

pub struct Session {
    // Dropped in this order: the channel before the SSH session it belongs to.
    channel: ssh2::Channel,
    ssh: ssh2::Session,
    reader: Reader,
    framing: Framing,
    next_id: u64,
}

impl Session {
    /// Opens a session, each step bounded by `timeout`; the error names the step.
    pub fn open(login: &Login, timeout: Duration, keys: &HostKeys) -> Result<Session, String> {
        let addrs: Vec<_> = (login.host.as_str(), login.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", login.host))?
            .collect();
        let addr = addrs.first().ok_or_else(|| format!("{} has no address", login.host))?;
        let tcp = TcpStream::connect_timeout(addr, timeout).map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut ssh = ssh2::Session::new().map_err(|e| format!("ssh: {e}"))?;
        ssh.set_tcp_stream(tcp);
        ssh.set_timeout(timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        ssh.handshake().map_err(|e| format!("SSH handshake: {}", e.message()))?;
        keys.check(&ssh, &login.host, login.port)?;
        ssh.userauth_password(&login.user, &login.password)
            .map_err(|e| format!("password authentication of {} failed: {}", login.user, e.message()))?;
        if !ssh.authenticated() {
            return Err(format!("password authentication of {} failed", login.user));
        }
        let mut channel = ssh.channel_session().map_err(|e| format!("opening a channel: {}", e.message()))?;
        channel.subsystem("netconf").map_err(|e| format!("the netconf subsystem: {}", e.message()))?;
        let mut reader = Reader::new();
        let hello = reader
            .read_message(&mut channel, Framing::Eom, MAX_MESSAGE)
            .map_err(|e| format!("reading the server's hello: {e}"))?;
        let hello = String::from_utf8_lossy(&hello);
        if !hello.contains("hello") {
            return Err("the server's first message is not a hello".into());
        }
        let framing = framing::negotiate(&hello);
        framing::write_message(&mut channel, Framing::Eom, framing::client_hello().as_bytes())
            .map_err(|e| format!("sending the hello: {e}"))?;
        Ok(Session { channel, ssh, reader, framing, next_id: 1 })
    }

    /// Sends one RPC, reads its reply (whose message-id must be the request's) and hands
    /// the parsed reply to `read`.
    pub fn rpc<T>(&mut self, body: &str, read: impl FnOnce(&roxmltree::Document) -> T) -> Result<T, RpcError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = framing::rpc(id, body);
        framing::write_message(&mut self.channel, self.framing, request.as_bytes())
            .map_err(|e| RpcError::Broken(format!("sending the RPC: {e}")))?;
        let bytes = self
            .reader
            .read_message(&mut self.channel, self.framing, MAX_MESSAGE)
            .map_err(|e| RpcError::Broken(format!("reading the reply: {}", describe(&e))))?;
        let text = String::from_utf8(bytes).map_err(|_| RpcError::Broken("the reply is not UTF-8".into()))?;
        match reply::parse(&text, id) {
            Ok(doc) => Ok(read(&doc)),
            Err(e) if e.desync() => Err(RpcError::Broken(e.to_string())),
            Err(e) => Err(RpcError::Answer(e.to_string())),
        }
    }

    /// Ends the session politely (`<close-session/>`), without waiting long for the reply.
    pub fn close(mut self) {
        self.ssh.set_timeout(500);
        let _ = self.rpc("<close-session/>", |_| ());
        let _ = self.channel.close();
    }
}

/// Why an RPC gave no data.
#[derive(Debug)]
pub enum RpcError {
    /// The session is unusable (timeout, EOF, framing, a message-id mismatch): drop it.
    Broken(String),
    /// The device answered with an rpc-error, or data that does not parse: the session is fine.
    Answer(String),
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Broken(why) | RpcError::Answer(why) => f.write_str(why),
        }
    }
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timed out".into(),
        _ => e.to_string(),
    }
}
