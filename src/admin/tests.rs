//! The admin server driven through real sockets.

use super::routes::TEXT_CONTENT_TYPE;
use super::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
const METRICS_BODY: &str = "# TYPE up gauge\nup 1\n";

/// A server whose `/metrics` answers `render`'s text.
fn start_rendering(
    limits: AdminLimits,
    render: impl Fn(&mut String) + Send + Sync + 'static,
) -> (AdminServer, Arc<AtomicBool>) {
    start_serving(limits, render, Arc::default())
}

/// A server whose `/v1` routes read `store` once it is set.
fn start_serving(
    limits: AdminLimits,
    render: impl Fn(&mut String) + Send + Sync + 'static,
    store: Arc<OnceLock<Store>>,
) -> (AdminServer, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let state = AdminState {
        ready: {
            let ready = Arc::clone(&ready);
            Box::new(move || ready.load(Ordering::Acquire))
        },
        render_metrics: Box::new(render),
        store,
    };
    let server = AdminServer::start(listener, state, limits).unwrap();
    (server, ready)
}

/// A server over a store holding `packages` (`name: dep dep` lines).
fn start_with_index(limits: AdminLimits, packages: &str) -> AdminServer {
    let store = Store::default();
    for line in packages.lines() {
        let entry = crate::package_list::parse_line(1, line).unwrap().unwrap();
        let deps: Vec<&str> = entry.dependencies.iter().map(|d| d.as_str()).collect();
        let request = format!("INDEX|{}|{}", entry.name, deps.join(","));
        let request = crate::protocol::parse_line(request.as_bytes()).unwrap();
        assert!(store.execute(&request).unwrap().outcome.changed(), "{line}");
    }
    let loaded = Arc::new(OnceLock::new());
    assert!(loaded.set(store).is_ok());
    start_serving(limits, |out| out.push_str(METRICS_BODY), loaded).0
}

/// Lines for a chain of packages with long names, each depending on
/// the one before: an export of 24 MB, far more than socket buffers
/// hold.
fn long_chain() -> String {
    let name = |i: usize| format!("{i:0>240}");
    let mut text = format!("{}:\n", name(0));
    for i in 1..50_000 {
        text.push_str(&format!("{}: {}\n", name(i), name(i - 1)));
    }
    text
}

fn start(limits: AdminLimits) -> (AdminServer, Arc<AtomicBool>) {
    start_rendering(limits, |out| out.push_str(METRICS_BODY))
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

fn read_answer(mut stream: TcpStream) -> Answer {
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

fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    read_answer(stream)
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
    let (server, _) = start(AdminLimits::default());
    let answer = get(server.local_addr(), "/healthz");
    assert_framed(&answer, "200 OK", "ok\n");
    assert_eq!(answer.header("Content-Type"), Some(TEXT_CONTENT_TYPE));
}

#[test]
fn readyz_follows_the_flag() {
    let (server, ready) = start(AdminLimits::default());
    let addr = server.local_addr();
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
    let (server, _) = start(AdminLimits::default());
    let answer = get(server.local_addr(), "/metrics");
    assert_framed(&answer, "200 OK", METRICS_BODY);
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/plain; version=0.0.4")
    );
}

#[test]
fn head_sends_the_headers_of_get_without_the_body() {
    let (server, _) = start(AdminLimits::default());
    let addr = server.local_addr();
    let answer = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    assert_eq!(answer.body, "");
    let get_length = METRICS_BODY.len().to_string();
    assert_eq!(answer.header("Content-Length"), Some(&*get_length));
    let answer = exchange(addr, b"HEAD /missing HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(answer.body, "");
}

#[test]
fn other_methods_get_405_with_allow() {
    let (server, _) = start(AdminLimits::default());
    let requests = [
        "POST /healthz",
        "PUT /healthz",
        "DELETE /healthz",
        "OPTIONS /healthz",
        "get /healthz",
        "POST http://localhost/healthz",
    ];
    for request_line in requests {
        let request = format!("{request_line} HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        let answer = exchange(server.local_addr(), request.as_bytes());
        assert_framed(&answer, "405 Method Not Allowed", "method not allowed\n");
        assert_eq!(answer.header("Allow"), Some("GET, HEAD"), "{request_line}");
    }
}

#[test]
fn unknown_paths_get_404_and_queries_are_ignored() {
    let (server, _) = start(AdminLimits::default());
    let addr = server.local_addr();
    assert_framed(&get(addr, "/"), "404 Not Found", "not found\n");
    assert_framed(&get(addr, "/healthz/"), "404 Not Found", "not found\n");
    assert_framed(&get(addr, "/nope?healthz"), "404 Not Found", "not found\n");
    assert_framed(&get(addr, "/healthz?verbose=1"), "200 OK", "ok\n");
}

#[test]
fn absolute_form_targets_are_routed_by_their_path() {
    let (server, ready) = start(AdminLimits::default());
    ready.store(true, Ordering::Release);
    let addr = server.local_addr();
    for target in [
        "http://localhost/healthz",
        "http://127.0.0.1:9090/healthz?verbose=1",
        "https://admin.example:443/healthz",
        "HTTP://LOCALHOST/healthz",
        "http://[::1]:9090/healthz",
        "http://a.b-c_d~e%41/healthz",
    ] {
        assert_framed(&get(addr, target), "200 OK", "ok\n");
    }
    assert_framed(&get(addr, "http://h/readyz"), "200 OK", "ready\n");
    for root in ["http://localhost", "http://localhost:9090?healthz"] {
        assert_framed(&get(addr, root), "404 Not Found", "not found\n");
    }
    let answer = exchange(addr, b"HEAD http://localhost/metrics HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    assert_eq!(answer.body, "");
}

#[test]
fn tolerated_request_variants() {
    let (server, _) = start(AdminLimits::default());
    let variants: [&[u8]; 3] = [
        b"GET /healthz HTTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.1\n\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nignored body",
    ];
    for request in variants {
        assert_framed(&exchange(server.local_addr(), request), "200 OK", "ok\n");
    }
}

#[test]
fn malformed_request_lines_get_400() {
    let (server, _) = start(AdminLimits::default());
    let malformed: [&[u8]; 22] = [
        b"garbage\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET healthz HTTP/1.1\r\n\r\n",
        b"GET  /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1 extra\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\n\r\n",
        b"G(T /healthz HTTP/1.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        // Asterisk form and authority form are not served, whatever the
        // method.
        b"GET * HTTP/1.1\r\n\r\n",
        b"GET localhost:9090 HTTP/1.1\r\n\r\n",
        b"HEAD localhost:9090 HTTP/1.1\r\n\r\n",
        b"POST * HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"OPTIONS localhost:9090 HTTP/1.1\r\n\r\n",
        b"CONNECT localhost:9090 HTTP/1.1\r\n\r\n",
        b"CONNECT [::1]:9090 HTTP/1.1\r\n\r\n",
        // Absolute form: only http(s), with a host and no user.
        b"GET http:///healthz HTTP/1.1\r\n\r\n",
        b"GET http://user@localhost/healthz HTTP/1.1\r\n\r\n",
        b"GET ftp://localhost/healthz HTTP/1.1\r\n\r\n",
        b"GET http:/localhost/healthz HTTP/1.1\r\n\r\n",
        b"GET localhost:9090/healthz HTTP/1.1\r\n\r\n",
        b"POST healthz HTTP/1.1\r\n\r\n",
    ];
    for request in malformed {
        let answer = exchange(server.local_addr(), request);
        assert_framed(&answer, "400 Bad Request", "bad request\n");
    }
}

/// A request for `/healthz` of exactly `len` bytes, blank line included.
fn request_of_length(len: usize) -> String {
    let bare = "GET /healthz HTTP/1.1\r\nX-Pad: \r\n\r\n";
    let request = format!(
        "GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(len - bare.len())
    );
    assert_eq!(request.len(), len);
    request
}

#[test]
fn a_head_of_exactly_the_size_cap_is_served() {
    let (server, _) = start(AdminLimits::default());
    let request = request_of_length(event_loop::MAX_REQUEST_BYTES);
    assert_framed(
        &exchange(server.local_addr(), request.as_bytes()),
        "200 OK",
        "ok\n",
    );
}

#[test]
fn a_head_over_the_size_cap_is_closed_without_an_answer() {
    let (server, _) = start(AdminLimits::default());
    for len in [
        event_loop::MAX_REQUEST_BYTES + 1,
        4 * event_loop::MAX_REQUEST_BYTES,
    ] {
        let mut stream = connect(server.local_addr());
        // The server may close while the request is still being written.
        let _ = stream.write_all(request_of_length(len).as_bytes());
        assert_closed_without_answer(stream);
    }
}

#[test]
fn a_stalled_request_does_not_block_others_and_is_closed() {
    let (server, _) = start(AdminLimits {
        request_deadline: Duration::from_millis(300),
        ..AdminLimits::default()
    });
    let mut stalled = connect(server.local_addr());
    stalled.write_all(b"GET /hea").unwrap();
    let started = Instant::now();
    assert_framed(&get(server.local_addr(), "/healthz"), "200 OK", "ok\n");
    assert_closed_without_answer(stalled);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn the_deadline_covers_the_whole_head_not_each_read() {
    let (server, _) = start(AdminLimits {
        request_deadline: Duration::from_millis(200),
        ..AdminLimits::default()
    });
    let mut trickle = connect(server.local_addr());
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
fn a_newcomer_beyond_the_limit_evicts_the_oldest() {
    let (server, _) = start(AdminLimits {
        max_connections: 2,
        ..AdminLimits::default()
    });
    let addr = server.local_addr();
    let mut oldest = connect(addr);
    oldest.write_all(b"GET /heal").unwrap();
    // A round trip through the server: the oldest is accepted first.
    assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
    let mut younger = connect(addr);
    younger.write_all(b"GET /heal").unwrap();
    assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
    assert_closed_without_answer(oldest);
    younger.write_all(b"thz HTTP/1.1\r\n\r\n").unwrap();
    assert_framed(&read_answer(younger), "200 OK", "ok\n");
}

#[test]
fn a_slow_reader_gets_the_whole_answer_and_delays_no_one() {
    // Far more than the socket buffers hold, so the answer must wait
    // in the server for the client to read.
    let body = "x".repeat(16 << 20);
    let expected = body.clone();
    let (server, _) = start_rendering(AdminLimits::default(), move |out| out.push_str(&body));
    let addr = server.local_addr();
    let mut slow = connect(addr);
    slow.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    thread::sleep(Duration::from_millis(200));
    assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
    let answer = read_answer(slow);
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    assert!(answer.body == expected, "the body arrived incomplete");
}

#[test]
fn an_answer_unread_past_the_deadline_is_cut_off() {
    let body_len = 16 << 20;
    let (server, _) = start_rendering(
        AdminLimits {
            request_deadline: Duration::from_millis(300),
            ..AdminLimits::default()
        },
        move |out| out.push_str(&"x".repeat(body_len)),
    );
    let mut slow = connect(server.local_addr());
    slow.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    thread::sleep(Duration::from_millis(800));
    let mut received = 0;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match slow.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => received += read,
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
                break;
            }
        }
    }
    assert!(received < body_len, "all {received} bytes arrived");
}

#[test]
fn a_panicking_route_answers_500_and_the_loop_goes_on() {
    let (server, _) = start_rendering(AdminLimits::default(), |_| panic!("render failed"));
    let addr = server.local_addr();
    assert_framed(
        &get(addr, "/metrics"),
        "500 Internal Server Error",
        "internal error\n",
    );
    assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
}

#[test]
fn a_panicking_route_answers_head_without_a_body() {
    let (server, _) = start_rendering(AdminLimits::default(), |_| panic!("render failed"));
    let answer = exchange(server.local_addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status_line, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(answer.body, "");
    assert_eq!(answer.header("Content-Length"), Some("15"));
}

#[test]
fn stop_closes_the_listener_and_every_connection_and_joins() {
    let (server, _) = start(AdminLimits::default());
    let addr = server.local_addr();
    let mut stalled = connect(addr);
    stalled.write_all(b"GET /hea").unwrap();
    assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_closed_without_answer(stalled);
    let refused = TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

const SMALL_INDEX: &str = "z:\nb:\ny: z b\na: y z\nc: y\nhomebrew/x@2: a\n";

#[test]
fn packages_answer_json_with_both_directions() {
    let server = start_with_index(AdminLimits::default(), SMALL_INDEX);
    let addr = server.local_addr();
    let answer = get(addr, "/v1/packages/y");
    assert_framed(
        &answer,
        "200 OK",
        "{\"name\":\"y\",\"dependencies\":[\"b\",\"z\"],\"dependents\":[\"a\",\"c\"]}\n",
    );
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
    // Names may hold `/`, written as is or percent-encoded.
    let whole = "{\"name\":\"homebrew/x@2\",\"dependencies\":[\"a\"],\"dependents\":[]}\n";
    for target in [
        "/v1/packages/homebrew/x@2",
        "/v1/packages/homebrew%2fx%402?q=1",
    ] {
        assert_framed(&get(addr, target), "200 OK", whole);
    }
    assert_framed(
        &get(addr, "/v1/packages/nope"),
        "404 Not Found",
        "{\"error\":\"not indexed\",\"name\":\"nope\"}\n",
    );
    for (segment, shown) in [
        ("", ""),
        ("a%20b", "a%20b"),
        ("%zz", "%zz"),
        ("a%2", "a%2"),
        ("%2Ba,b", "%2Ba,b"),
    ] {
        let answer = get(addr, &format!("/v1/packages/{segment}"));
        let body = format!("{{\"error\":\"invalid package name\",\"name\":\"{shown}\"}}\n");
        assert_framed(&answer, "400 Bad Request", &body);
    }
    assert_framed(&get(addr, "/v1/packages"), "404 Not Found", "not found\n");
    let head = exchange(addr, b"HEAD /v1/packages/y HTTP/1.1\r\n\r\n");
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert_eq!(head.body, "");
    assert_eq!(
        head.header("Content-Length"),
        answer_length(&get(addr, "/v1/packages/y"))
    );
}

fn answer_length(answer: &Answer) -> Option<&str> {
    answer.header("Content-Length")
}

#[test]
fn v1_routes_answer_503_until_the_store_is_loaded() {
    let (server, _) = start(AdminLimits::default());
    for target in ["/v1/packages/a", "/v1/export"] {
        let answer = get(server.local_addr(), target);
        assert_framed(
            &answer,
            "503 Service Unavailable",
            "{\"error\":\"loading\"}\n",
        );
    }
}

#[test]
fn export_lists_the_index_on_a_worker() {
    let server = start_with_index(AdminLimits::default(), SMALL_INDEX);
    let addr = server.local_addr();
    let listed = "b:\nz:\ny: b z\na: y z\nc: y\nhomebrew/x@2: a\n";
    let answer = get(addr, "/v1/export");
    assert_framed(&answer, "200 OK", listed);
    assert_eq!(answer.header("Content-Type"), Some(TEXT_CONTENT_TYPE));
    let head = exchange(addr, b"HEAD /v1/export HTTP/1.1\r\n\r\n");
    assert_eq!(head.body, "");
    assert_eq!(
        head.header("Content-Length"),
        Some(&*listed.len().to_string())
    );
}

#[test]
fn a_client_asking_again_at_once_finds_its_worker_free() {
    let server = start_with_index(
        AdminLimits {
            max_jobs: 1,
            ..AdminLimits::default()
        },
        SMALL_INDEX,
    );
    for _ in 0..200 {
        let answer = get(server.local_addr(), "/v1/packages/y");
        assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    }
}

#[test]
fn jobs_beyond_the_limit_get_503_with_retry_after() {
    let server = start_with_index(
        AdminLimits {
            max_jobs: 0,
            ..AdminLimits::default()
        },
        SMALL_INDEX,
    );
    for target in ["/v1/export", "/v1/packages/y"] {
        let answer = get(server.local_addr(), target);
        assert_framed(
            &answer,
            "503 Service Unavailable",
            "busy: too many answers in progress\n",
        );
        assert_eq!(answer.header("Retry-After"), Some("1"));
    }
}

#[test]
fn a_slow_export_reader_delays_no_probe_and_stop_cuts_it_off() {
    let server = start_with_index(
        AdminLimits {
            max_jobs: 1,
            ..AdminLimits::default()
        },
        &long_chain(),
    );
    let addr = server.local_addr();
    let mut slow = connect(addr);
    slow.write_all(b"GET /v1/export HTTP/1.1\r\n\r\n").unwrap();
    // The worker starts sending: the status line arrives.
    let mut first = [0u8; 12];
    slow.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert_framed(&get(addr, "/healthz"), "200 OK", "ok\n");
    // The one worker is taken.
    let busy = get(addr, "/v1/export");
    assert_eq!(busy.status_line, "HTTP/1.1 503 Service Unavailable");
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(1));
    let mut rest = Vec::new();
    let cut = slow.read_to_end(&mut rest).map(|_| rest.len());
    let whole = long_chain().len();
    assert!(
        !matches!(cut, Ok(n) if n >= whole),
        "the whole export arrived"
    );
}

#[test]
fn a_worker_cuts_off_a_client_that_stops_reading() {
    let server = start_with_index(
        AdminLimits {
            max_jobs: 1,
            job_write_stall: Duration::from_millis(200),
            ..AdminLimits::default()
        },
        &long_chain(),
    );
    let addr = server.local_addr();
    let mut stalled = connect(addr);
    stalled
        .write_all(b"GET /v1/export HTTP/1.1\r\n\r\n")
        .unwrap();
    // Once the worker has given up on it, the place is free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(addr, "/v1/export");
        if answer.status_line == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled client kept the worker"
        );
        thread::sleep(Duration::from_millis(100));
    }
    drop(stalled);
}
