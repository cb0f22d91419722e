//! The HTTP/1.1 server the simulators (`contrail_sim.rs`, `nova_sim.rs`) answer with, so that each
//! simulator holds only its API's semantics.
//!
//! Plain HTTP/1.1 on `std::net`: one thread per connection, keep-alive (clients pool connections),
//! `Content-Length` and chunked request bodies, `Expect: 100-continue`. A request that cannot be read
//! (malformed, head over 64 KiB, body over the simulator's limit) gets the simulator's answer for
//! 400, 413 or 431 and the connection closes; the server never panics on input. A response can also
//! be a stream without end (server-sent events), sent chunked as it is produced. Dropping the
//! [`HttpSim`] stops it.
//!
//! std only; each simulator includes it with `#[path = "http_sim.rs"] mod http_sim;`, which works
//! wherever the simulator itself is included from.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(20);
const MAX_HEAD: usize = 64 * 1024;

/// A simulator's API: what it answers.
pub trait Handler: Send + Sync + 'static {
    /// The answer to a request read whole; `None` closes the connection without one.
    fn answer(&self, request: &Request, server: &Server) -> Option<Response>;
    /// The answer to a request that could not be read (400, 413 or 431), sent before closing.
    fn unreadable(&self, status: u16) -> Response;
}

pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
    /// The `Host` header, else the address the connection came to.
    pub host: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Sent after `Content-Type`, `Content-Length` and `Connection`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Instead of `body`: chunks sent as they arrive (see [`Response::stream`]).
    pub stream: Option<Receiver<Vec<u8>>>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response { status, content_type, headers: Vec::new(), body, stream: None }
    }

    /// A body without `Content-Length`, sent with `Transfer-Encoding: chunked` one chunk per item
    /// received, as it arrives. An empty item ends the body properly; the connection closes at once
    /// (a cut: no last chunk) when every sender is gone, when the client sends anything or hangs up
    /// (opserver's streams end so), or when the server stops.
    pub fn stream(status: u16, content_type: &'static str, chunks: Receiver<Vec<u8>>) -> Response {
        Response { status, content_type, headers: Vec::new(), body: Vec::new(), stream: Some(chunks) }
    }
}

/// What every connection thread shares.
pub struct Server {
    requests: AtomicU64,
    /// TCP connections accepted so far (shows whether clients reuse connections).
    accepted: AtomicU64,
    stop: AtomicBool,
    /// Connection threads still running (they are detached; Drop waits for this to be 0).
    connections: AtomicUsize,
    max_body: usize,
}

impl Server {
    /// Requests read whole so far (the one being answered included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d`; false if the server is stopping meanwhile.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            if self.stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            thread::sleep((deadline - now).min(TICK));
        }
    }
}

/// A running server; dropping it stops it.
pub struct HttpSim<H: Handler> {
    shared: Arc<(Server, H)>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl<H: Handler> HttpSim<H> {
    /// Listens on `addr` (an unspecified IP is reported as 127.0.0.1); threads are named after `name`;
    /// request bodies over `max_body` bytes are answered 413.
    pub fn start(addr: &str, name: &str, max_body: usize, handler: H) -> io::Result<HttpSim<H>> {
        let listener = TcpListener::bind(addr)?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        listener.set_nonblocking(true)?;
        let server = Server {
            requests: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            max_body,
        };
        let shared = Arc::new((server, handler));
        let acceptor = {
            let (shared, conn_name) = (shared.clone(), format!("{name}-conn"));
            thread::Builder::new().name(name.into()).spawn(move || accept_loop(listener, shared, conn_name))?
        };
        Ok(HttpSim { shared, addr, acceptor: Some(acceptor) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handler(&self) -> &H {
        &self.shared.1
    }

    /// How many requests were received and answered (or are being answered).
    pub fn requests(&self) -> u64 {
        self.shared.0.requests()
    }

    /// How many TCP connections were accepted (fewer than requests when kept alive).
    pub fn connections(&self) -> u64 {
        self.shared.0.accepted.load(Ordering::SeqCst)
    }
}

impl<H: Handler> Drop for HttpSim<H> {
    fn drop(&mut self) {
        let server = &self.shared.0;
        server.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Connection threads notice the flag within a TICK (their read timeout).
        let deadline = Instant::now() + Duration::from_secs(1);
        while server.connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

fn accept_loop<H: Handler>(listener: TcpListener, shared: Arc<(Server, H)>, conn_name: String) {
    let server = &shared.0;
    while !server.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                server.accepted.fetch_add(1, Ordering::SeqCst);
                server.connections.fetch_add(1, Ordering::SeqCst);
                let conn_shared = shared.clone();
                let spawned = thread::Builder::new().name(conn_name.clone()).spawn(move || {
                    let _guard = ConnectionGuard(&conn_shared.0);
                    serve_connection(&conn_shared.0, &conn_shared.1, stream);
                });
                if spawned.is_err() {
                    server.connections.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(_) => thread::sleep(TICK / 4),
        }
    }
}

/// Counts a connection thread down however it ends.
struct ConnectionGuard<'a>(&'a Server);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a request could not be read: answer with this status, then close.
struct Bad(u16);

fn serve_connection(server: &Server, handler: &impl Handler, mut stream: TcpStream) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(TICK)).is_err()
        || stream.set_write_timeout(Some(Duration::from_secs(2))).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().map_or_else(|_| "127.0.0.1".into(), |a| a.to_string());
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let request = match read_request(server, &mut stream, &mut buf, &local) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(Bad(status)) => {
                let _ = write_response(&mut stream, &handler.unreadable(status), false);
                return;
            }
        };
        server.requests.fetch_add(1, Ordering::SeqCst);
        let Some(response) = handler.answer(&request, server) else {
            return;
        };
        if let Some(chunks) = &response.stream {
            let _ = write_stream(server, &mut stream, &response, chunks);
            return;
        }
        let keep_alive = request.keep_alive && !server.stopping();
        if write_response(&mut stream, &response, keep_alive).is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads one request (pipelined leftovers stay in `buf`). `Ok(None)`: connection closed or server
/// stopping.
fn read_request(
    server: &Server,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    local: &str,
) -> Result<Option<Request>, Bad> {
    let max_body = server.max_body;
    let mut sent_continue = false;
    loop {
        if let Some(head_len) = find(buf, b"\r\n\r\n").map(|i| i + 4) {
            let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
            let (method, target, version, headers) = parse_head(&head)?;
            let header =
                |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
            let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            let body_and_len = if chunked {
                decode_chunked(&buf[head_len..], max_body)?
            } else {
                let len = match header("content-length") {
                    None => 0,
                    Some(v) => v.trim().parse::<usize>().map_err(|_| Bad(400))?,
                };
                if len > max_body {
                    return Err(Bad(413));
                }
                (buf.len() - head_len >= len).then(|| (buf[head_len..head_len + len].to_vec(), len))
            };
            if let Some((body, used)) = body_and_len {
                buf.drain(..head_len + used);
                let connection = header("connection").unwrap_or_default().to_ascii_lowercase();
                let http10 = version == "HTTP/1.0";
                let keep_alive = if http10 { connection.contains("keep-alive") } else { !connection.contains("close") };
                let host = header("host").unwrap_or_else(|| local.to_string());
                return Ok(Some(Request { method, target, headers, body, keep_alive, host }));
            }
            if buf.len() - head_len > max_body {
                return Err(Bad(413));
            }
            let expects = header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
            if expects && !sent_continue {
                sent_continue = true;
                if stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                    return Ok(None);
                }
            }
        } else if buf.len() > MAX_HEAD {
            return Err(Bad(431));
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                if server.stopping() {
                    return Ok(None);
                }
            }
            Err(_) => return Ok(None),
        }
    }
}

type Head = (String, String, String, Vec<(String, String)>);

fn parse_head(head: &str) -> Result<Head, Bad> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Bad(400));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Bad(400));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Bad(400))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok((method.to_string(), target.to_string(), version.to_string(), headers))
}

/// Decodes a chunked body from the start of `data`: `Ok(None)` if incomplete, else the body and how
/// many bytes of `data` it used (trailers included).
fn decode_chunked(data: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, Bad> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find(&data[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[pos..pos + eol]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16).map_err(|_| Bad(400))?;
        pos += eol + 2;
        if size == 0 {
            // Trailer lines up to an empty line.
            loop {
                let Some(eol) = find(&data[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len() + size > max_body {
            return Err(Bad(413));
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        pos += size;
        if &data[pos..pos + 2] != b"\r\n" {
            return Err(Bad(400));
        }
        pos += 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status line and headers; `length` `None`: a chunked body.
fn head(response: &Response, length: Option<usize>, keep_alive: bool) -> String {
    let framing = match length {
        Some(length) => format!("Content-Length: {length}"),
        None => "Transfer-Encoding: chunked".to_string(),
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n{framing}\r\nConnection: {}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn write_response(stream: &mut TcpStream, response: &Response, keep_alive: bool) -> io::Result<()> {
    let mut out = head(response, Some(response.body.len()), keep_alive).into_bytes();
    out.extend_from_slice(&response.body);
    stream.write_all(&out)?;
    stream.flush()
}

/// Sends a [`Response::stream`]: the head, then each chunk as it comes, until it ends (see there).
fn write_stream(
    server: &Server,
    stream: &mut TcpStream,
    response: &Response,
    chunks: &Receiver<Vec<u8>>,
) -> io::Result<()> {
    stream.write_all(head(response, None, false).as_bytes())?;
    loop {
        loop {
            match chunks.try_recv() {
                Ok(chunk) if chunk.is_empty() => {
                    stream.write_all(b"0\r\n\r\n")?;
                    return stream.flush();
                }
                Ok(chunk) => {
                    let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
                    out.extend_from_slice(&chunk);
                    out.extend_from_slice(b"\r\n");
                    stream.write_all(&out)?;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
        stream.flush()?;
        if server.stopping() {
            return Ok(());
        }
        // Waits up to a TICK (the read timeout) for the client: anything but silence ends the stream.
        match stream.read(&mut [0u8; 1]) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            _ => return Ok(()),
        }
    }
}

/// The reason phrase of a status (`Unknown` for those the simulators do not use).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// `a=1&b=x%20y` → pairs, decoded (a pair without `=` has an empty value).
pub fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `%XX` decoding; malformed escapes stay as they are, invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
