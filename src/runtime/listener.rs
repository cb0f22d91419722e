//! The local HTTP listener (`metrics.listen`): `/healthz`, `/metrics` (the Prometheus text
//! format), `/status/<plural>/<id>` with what the scheduler knows of a resource (last
//! results with their times, confirmed statuses), which `esi-monitor status` prints, and
//! `/jobs` with the jobs waiting for etcd, which `esi-monitor jobs` prints. One small
//! thread, one request at a time.

use super::scheduler::Query;
use super::watcher::{Waiting, Work};
use crate::{keys, metrics};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const JSON: &str = "application/json";

/// What the listener asks to answer.
pub struct Asked {
    /// The scheduler, about one resource.
    pub queries: Sender<Query>,
    /// The work queue, for its depth.
    pub queue: Receiver<Work>,
    /// The jobs waiting for etcd.
    pub waiting: Waiting,
}

/// Serves until `stop` fires or closes.
pub fn run(listener: TcpListener, asked: Asked, stop: Receiver<()>) {
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("status listener: {e}");
        return;
    }
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = serve(stream, &asked) {
                    log::debug!("status listener: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !matches!(stop.recv_timeout(Duration::from_millis(100)), Err(RecvTimeoutError::Timeout)) {
                    return; // stopped, or the stop channel closed
                }
            }
            Err(e) => log::warn!("status listener: {e}"),
        }
    }
}

fn serve(stream: TcpStream, asked: &Asked) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Headers are read and ignored (bounded by the read timeout and a line count).
    for _ in 0..100 {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = answer(path, asked);
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn answer(path: &str, asked: &Asked) -> (&'static str, &'static str, String) {
    let Asked { queries, queue, waiting } = asked;
    if path == "/healthz" {
        return match metrics::health() {
            Ok(()) => ("200 OK", JSON, "{\"status\": \"ok\"}".into()),
            Err(why) => ("503 Service Unavailable", JSON, serde_json::json!({ "status": why }).to_string()),
        };
    }
    if path == "/metrics" {
        let sampled = metrics::Sampled { queue_depth: queue.len(), queue_capacity: queue.capacity().unwrap_or(0) };
        return ("200 OK", metrics::CONTENT_TYPE, metrics::render(&sampled));
    }
    if path == "/jobs" {
        return ("200 OK", JSON, serde_json::json!({ "waiting": waiting.to_json() }).to_string());
    }
    let Some(resource) = path.strip_prefix("/status/").filter(|r| r.split('/').count() == 2) else {
        let hint = "try /healthz, /metrics, /jobs or /status/<plural>/<id>";
        return ("404 Not Found", JSON, serde_json::json!({ "error": hint }).to_string());
    };
    let (plural, id) = resource.split_once('/').unwrap_or(("", ""));
    let (reply, answer) = bounded(1);
    let asked = queries.send(Query { key: keys::registry(plural, id), reply }).is_ok();
    let (status, body) = match asked.then(|| answer.recv_timeout(Duration::from_secs(2)).ok()).flatten() {
        Some(Some(v)) => ("200 OK", v.to_string()),
        Some(None) => ("404 Not Found", format!("{{\"error\": \"{plural}/{id} is not registered here\"}}")),
        None => ("503 Service Unavailable", "{\"error\": \"the scheduler did not answer\"}".into()),
    };
    (status, JSON, body)
}
