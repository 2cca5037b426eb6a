//! The admin HTTP listener: `/healthz`, `/readyz` and `/metrics`, written on
//! the standard library alone.
//!
//! It speaks just enough HTTP/1.1 for probes and Prometheus: one `GET` or
//! `HEAD` per connection, answered with `Content-Length` and
//! `Connection: close`. Every connection gets its own short-lived thread with
//! a small stack, a deadline for the whole request head (not per read, so
//! trickling bytes does not help) and a size cap, and the number of such
//! threads is bounded; a slow, huge or flooding client therefore costs a
//! bounded amount and never delays anyone else's scrape. The admin server
//! shares nothing with the protocol listener but the two values in
//! [`AdminState`].

use crate::log;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Time a client has to send its whole request head (SPEC §5).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Largest request head accepted, blank line included (SPEC §5).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Admin connections served at once; more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// Enough for parsing and formatting; the response body lives on the heap.
const CONNECTION_STACK_BYTES: usize = 128 * 1024;
/// Pause after a failed `accept` (for example out of file descriptors), so
/// the loop does not spin while the condition lasts.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// What the admin endpoints report, supplied by the server.
pub struct AdminState {
    /// Answer of `/readyz`: set once the server accepts connections, cleared
    /// when it starts to stop.
    pub ready: Arc<AtomicBool>,
    /// Appends the full Prometheus exposition to the buffer; called once
    /// per `/metrics` request on that request's thread.
    pub render_metrics: Box<dyn Fn(&mut String) + Send + Sync>,
}

/// Bounds on what one admin client may cost. [`Limits::default`] holds the
/// production values; tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub request_deadline: Duration,
    pub max_request_bytes: usize,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_deadline: REQUEST_DEADLINE,
            max_request_bytes: MAX_REQUEST_BYTES,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves admin requests on `listener` with the default [`Limits`] from a
/// thread named `admin-accept`, for the life of the process.
pub fn spawn(listener: TcpListener, state: AdminState) -> io::Result<JoinHandle<()>> {
    spawn_with_limits(listener, state, Limits::default())
}

/// [`spawn`] with explicit limits.
pub fn spawn_with_limits(
    listener: TcpListener,
    state: AdminState,
    limits: Limits,
) -> io::Result<JoinHandle<()>> {
    let shared = Arc::new(Shared {
        state,
        limits,
        active: AtomicUsize::new(0),
    });
    thread::Builder::new()
        .name("admin-accept".to_owned())
        .spawn(move || accept_loop(&listener, &shared))
}

struct Shared {
    state: AdminState,
    limits: Limits,
    active: AtomicUsize,
}

/// One of the `max_connections` places; released when dropped, which also
/// covers a connection thread that fails to start or panics.
struct ConnectionSlot(Arc<Shared>);

impl ConnectionSlot {
    fn claim(shared: &Arc<Shared>) -> Option<ConnectionSlot> {
        let before = shared.active.fetch_add(1, Ordering::AcqRel);
        if before >= shared.limits.max_connections {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot(Arc::clone(shared)))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for accepted in listener.incoming() {
        match accepted {
            Ok(stream) => dispatch(stream, shared),
            Err(error) => {
                log::warn("admin accept failed", &[("error", &error)]);
                thread::sleep(ACCEPT_RETRY_PAUSE);
            }
        }
    }
}

/// Hands the connection to a new thread, or closes it at once when all
/// places are taken or no thread can be started.
fn dispatch(stream: TcpStream, shared: &Arc<Shared>) {
    let Some(slot) = ConnectionSlot::claim(shared) else {
        log::debug(
            "admin connection refused",
            &[
                ("reason", &"limit"),
                ("limit", &shared.limits.max_connections),
            ],
        );
        return;
    };
    let started = thread::Builder::new()
        .name("admin-conn".to_owned())
        .stack_size(CONNECTION_STACK_BYTES)
        .spawn(move || serve(stream, &slot.0));
    if let Err(error) = started {
        log::warn("admin connection thread not started", &[("error", &error)]);
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let head = match read_request_head(&mut stream, &shared.limits) {
        Ok(head) => head,
        Err(reason) => {
            log::debug("admin request dropped", &[("reason", &reason)]);
            return;
        }
    };
    let response = respond(&head, &shared.state);
    // A client that stops reading is cut off after the same deadline; write
    // errors mean it is gone and there is no one to tell.
    let _ = stream.set_write_timeout(Some(shared.limits.request_deadline));
    let _ = stream.write_all(&response);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Reads up to the blank line that ends the request head, and returns the
/// head without it. Fails, naming why, when the client closes, stalls past
/// the deadline or sends more than the size cap.
fn read_request_head(stream: &mut TcpStream, limits: &Limits) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + limits.request_deadline;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err("deadline passed".to_owned());
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(|error| format!("cannot set read timeout: {error}"))?;
        let read = match stream.read(&mut chunk) {
            Ok(0) => return Err("closed before the request ended".to_owned()),
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err("deadline passed".to_owned())
            }
            Err(error) => return Err(format!("read failed: {error}")),
        };
        // Only the new bytes and the three before them can complete the
        // terminator, so earlier bytes are not searched again.
        let search_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = find_head_end(&head[search_from..]) {
            head.truncate(search_from + end);
            if head.len() > limits.max_request_bytes {
                return Err("request too large".to_owned());
            }
            return Ok(head);
        }
        if head.len() > limits.max_request_bytes {
            return Err("request too large".to_owned());
        }
    }
}

/// Where the blank line ending a head starts: `\r\n\r\n`, or `\n\n` from
/// clients that end lines with a bare `\n`.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len())
        .find(|&at| bytes[at..].starts_with(b"\r\n\r\n") || bytes[at..].starts_with(b"\n\n"))
}

struct Reply {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn text(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            content_type: TEXT_CONTENT_TYPE,
            body: body.to_owned(),
        }
    }
}

/// Builds the complete response bytes for one request head.
fn respond(head: &[u8], state: &AdminState) -> Vec<u8> {
    let request_line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let Some((method, path)) = parse_request_line(request_line) else {
        return encode(&Reply::text("400 Bad Request", "bad request\n"), false);
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return encode(
            &Reply::text("405 Method Not Allowed", "method not allowed\n"),
            false,
        );
    }
    let reply = match path {
        "/healthz" => Reply::text("200 OK", "ok\n"),
        "/readyz" if state.ready.load(Ordering::Acquire) => Reply::text("200 OK", "ready\n"),
        "/readyz" => Reply::text("503 Service Unavailable", "not ready\n"),
        "/metrics" => {
            let mut body = String::with_capacity(16 * 1024);
            (state.render_metrics)(&mut body);
            Reply {
                status: "200 OK",
                content_type: METRICS_CONTENT_TYPE,
                body,
            }
        }
        _ => Reply::text("404 Not Found", "not found\n"),
    };
    encode(&reply, head_only)
}

/// Splits `METHOD /path?query HTTP/1.x` into the method and the path
/// without its query; `None` when the line is not of that shape.
fn parse_request_line(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let method_is_token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let version_is_known = version == "HTTP/1.1" || version == "HTTP/1.0";
    if parts.next().is_some() || !method_is_token || !version_is_known || !target.starts_with('/') {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

/// Serialises a reply; `head_only` (a `HEAD` request) keeps the headers,
/// `Content-Length` included, and drops the body.
fn encode(reply: &Reply, head_only: bool) -> Vec<u8> {
    let allow = if reply.status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let headers = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{allow}\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    let mut bytes = headers.into_bytes();
    if !head_only {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

    fn start(limits: Limits) -> (SocketAddr, Arc<AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let state = AdminState {
            ready: Arc::clone(&ready),
            render_metrics: Box::new(|out| out.push_str("# TYPE up gauge\nup 1\n")),
        };
        spawn_with_limits(listener, state, limits).unwrap();
        (addr, ready)
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        stream
    }

    struct Answer {
        status_line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
        let mut stream = connect(addr);
        stream.write_all(request).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        Answer {
            status_line,
            headers,
            body: body.to_owned(),
        }
    }

    fn get(addr: SocketAddr, target: &str) -> Answer {
        exchange(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
        )
    }

    /// Every answer closes the connection and states its exact length.
    fn assert_framed(answer: &Answer, status: &str, body: &str) {
        assert_eq!(answer.status_line, format!("HTTP/1.1 {status}"));
        assert_eq!(answer.body, body);
        assert_eq!(
            answer.header("Content-Length"),
            Some(&*body.len().to_string())
        );
        assert_eq!(answer.header("Connection"), Some("close"));
    }

    fn assert_closed_without_answer(mut stream: TcpStream) {
        let mut raw = Vec::new();
        match stream.read_to_end(&mut raw) {
            Ok(_) => assert!(
                raw.is_empty(),
                "answered: {:?}",
                String::from_utf8_lossy(&raw)
            ),
            Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}"),
        }
    }

    #[test]
    fn healthz_answers_ok() {
        let (addr, _) = start(Limits::default());
        let answer = get(addr, "/healthz");
        assert_framed(&answer, "200 OK", "ok\n");
        assert_eq!(answer.header("Content-Type"), Some(TEXT_CONTENT_TYPE));
    }

    #[test]
    fn readyz_follows_the_flag() {
        let (addr, ready) = start(Limits::default());
        assert_framed(
            &get(addr, "/readyz"),
            "503 Service Unavailable",
            "not ready\n",
        );
        ready.store(true, Ordering::Release);
        assert_framed(&get(addr, "/readyz"), "200 OK", "ready\n");
        ready.store(false, Ordering::Release);
        assert_framed(
            &get(addr, "/readyz"),
            "503 Service Unavailable",
            "not ready\n",
        );
    }

    #[test]
    fn metrics_are_rendered_with_the_prometheus_content_type() {
        let (addr, _) = start(Limits::default());
        let answer = get(addr, "/metrics");
        assert_framed(&answer, "200 OK", "# TYPE up gauge\nup 1\n");
        assert_eq!(
            answer.header("Content-Type"),
            Some("text/plain; version=0.0.4")
        );
    }

    #[test]
    fn head_sends_the_headers_of_get_without_the_body() {
        let (addr, _) = start(Limits::default());
        let answer = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
        assert_eq!(answer.body, "");
        let get_length = "# TYPE up gauge\nup 1\n".len().to_string();
        assert_eq!(answer.header("Content-Length"), Some(&*get_length));
        let answer = exchange(addr, b"HEAD /missing HTTP/1.1\r\n\r\n");
        assert_eq!(answer.status_line, "HTTP/1.1 404 Not Found");
        assert_eq!(answer.body, "");
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        let (addr, _) = start(Limits::default());
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
            let request = format!("{method} /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
            let answer = exchange(addr, request.as_bytes());
            assert_framed(&answer, "405 Method Not Allowed", "method not allowed\n");
            assert_eq!(answer.header("Allow"), Some("GET, HEAD"));
        }
    }

    #[test]
    fn unknown_paths_get_404_and_queries_are_ignored() {
        let (addr, _) = start(Limits::default());
        assert_framed(&get(addr, "/"), "404 Not Found", "not found\n");
        assert_framed(&get(addr, "/healthz/"), "404 Not Found", "not found\n");
        assert_framed(&get(addr, "/nope?healthz"), "404 Not Found", "not found\n");
        assert_framed(&get(addr, "/healthz?verbose=1"), "200 OK", "ok\n");
    }

    #[test]
    fn tolerated_request_variants() {
        let (addr, _) = start(Limits::default());
        let variants: [&[u8]; 3] = [
            b"GET /healthz HTTP/1.0\r\n\r\n",
            b"GET /healthz HTTP/1.1\n\n",
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nignored body",
        ];
        for request in variants {
            assert_framed(&exchange(addr, request), "200 OK", "ok\n");
        }
    }

    #[test]
    fn malformed_request_lines_get_400() {
        let (addr, _) = start(Limits::default());
        let malformed: [&[u8]; 8] = [
            b"garbage\r\n\r\n",
            b"GET /healthz\r\n\r\n",
            b"GET healthz HTTP/1.1\r\n\r\n",
            b"GET  /healthz HTTP/1.1\r\n\r\n",
            b"GET /healthz HTTP/1.1 extra\r\n\r\n",
            b"GET /healthz HTTP/2.0\r\n\r\n",
            b"G(T /healthz HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ];
        for request in malformed {
            let answer = exchange(addr, request);
            assert_framed(&answer, "400 Bad Request", "bad request\n");
        }
    }

    #[test]
    fn a_head_within_the_size_cap_is_served() {
        let (addr, _) = start(Limits::default());
        let padding = "a".repeat(MAX_REQUEST_BYTES - 100);
        let request = format!("GET /healthz HTTP/1.1\r\nX-Pad: {padding}\r\n\r\n");
        assert!(request.len() < MAX_REQUEST_BYTES);
        assert_framed(&exchange(addr, request.as_bytes()), "200 OK", "ok\n");
    }

    #[test]
    fn an_oversized_request_is_closed_without_an_answer() {
        let (addr, _) = start(Limits::default());
        let mut stream = connect(addr);
        let padding = "a".repeat(MAX_REQUEST_BYTES + 1);
        let request = format!("GET /healthz HTTP/1.1\r\nX-Pad: {padding}\r\n\r\n");
        // The server may close while the request is still being written.
        let _ = stream.write_all(request.as_bytes());
        assert_closed_without_answer(stream);
    }

    #[test]
    fn a_stalled_request_does_not_block_others_and_is_closed() {
        let (addr, _) = start(Limits {
            request_deadline: Duration::from_millis(300),
            ..Limits::default()
        });
        let mut stalled = connect(addr);
        stalled.write_all(b"GET /hea").unwrap();
        assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
        assert_closed_without_answer(stalled);
    }

    #[test]
    fn the_deadline_covers_the_whole_head_not_each_read() {
        let (addr, _) = start(Limits {
            request_deadline: Duration::from_millis(200),
            ..Limits::default()
        });
        let mut trickle = connect(addr);
        // 400 bytes at one per 10 ms would take over 4 s, far past the
        // deadline; the server must cut the connection before they are all
        // sent even though every single read makes progress.
        let request = format!("GET /healthz HTTP/1.1\r\nX-Pad: {}", "a".repeat(400));
        let cut_off = request.as_bytes().iter().any(|byte| {
            thread::sleep(Duration::from_millis(10));
            trickle.write_all(&[*byte]).is_err()
        });
        assert!(cut_off, "a trickling client outlived the deadline");
    }

    #[test]
    fn connections_beyond_the_limit_are_closed_at_once() {
        let (addr, _) = start(Limits {
            max_connections: 1,
            ..Limits::default()
        });
        let mut holder = connect(addr);
        holder.write_all(b"GET /heal").unwrap();
        assert_closed_without_answer(connect(addr));
        // Closing the holder frees its place; its thread notices the close
        // asynchronously, so retry until the place is free again.
        drop(holder);
        let served = (0..500).any(|_| {
            let mut stream = connect(addr);
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
            let mut raw = Vec::new();
            let _ = stream.read_to_end(&mut raw);
            if raw.starts_with(b"HTTP/1.1 200 OK") {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
            false
        });
        assert!(served, "the place of a closed connection was never freed");
    }
}
