//! The protocol client of the subcommands, the harness, the bench and the
//! tests: a [`Connection`] for one request or batch at a time, and
//! [`pipeline`], whose bounded window keeps every answer owed small enough
//! to sit in the sockets' buffers: if our reader stalls (Ctrl-S, a slow
//! stdout), the server's writes still complete and its `--write-timeout`
//! never cuts the connection.

use crate::flags::Flag;
use crate::protocol::Response;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// The `--addr` flag of every tool that speaks the protocol.
pub(crate) const ADDR_FLAG: Flag = Flag::value(
    "addr",
    "127.0.0.1:8080",
    "the server's protocol address (0.0.0.0 or [::] mean this host)",
);

/// Lines a tool keeps unanswered at most: their answers (6 bytes at most
/// each) fit in the sockets' buffers, and the server is never short of work.
pub const LINES_IN_FLIGHT: u64 = 16 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a reader waits for an answer owed: far above any pause of a
/// healthy server (a slow `fsync`), so only a hung server trips it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The addresses `addr` (`HOST:PORT`) names, an unspecified IP (a server's
/// own `--addr` often is) standing for loopback; the error names `addr`.
pub fn resolve(addr: &str) -> Result<Vec<SocketAddr>, String> {
    let found: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .map(|mut target| {
            if target.ip().is_unspecified() {
                target.set_ip(match target {
                    SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
                });
            }
            target
        })
        .collect();
    if found.is_empty() {
        return Err(format!("{addr} resolves to no address"));
    }
    Ok(found)
}

/// A connection to the first of `targets` that accepts within `timeout`
/// (`localhost` may name `::1` before `127.0.0.1`), with Nagle off and
/// reads bounded by `timeout`; the error is one line naming `addr`.
pub fn connect_to(
    addr: &str,
    targets: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, String> {
    let mut last_error = None;
    for target in targets {
        match TcpStream::connect_timeout(target, timeout) {
            Ok(stream) => {
                let ready = stream.set_nodelay(true);
                last_error = match ready.and_then(|()| stream.set_read_timeout(Some(timeout))) {
                    Ok(()) => return Ok(stream),
                    Err(error) => Some(error),
                };
            }
            Err(error) => last_error = Some(error),
        }
    }
    let reason = last_error.map_or("no address to try".into(), |e| e.to_string());
    Err(format!("cannot connect to {addr}: {reason}"))
}

/// A connection to the server at `addr` (`HOST:PORT`, by [`resolve`]'s
/// rule), waiting `ANSWER_TIMEOUT` for an answer owed.
pub fn connect(addr: &str) -> Result<TcpStream, String> {
    let stream = connect_to(addr, &resolve(addr)?, CONNECT_TIMEOUT)?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    Ok(stream)
}

/// Reads a server's answers, checking every byte, across reads: anything
/// but `OK\n`, `FAIL\n` and `ERROR\n` is refused.
struct AnswerReader {
    /// The answer under way (known by its first byte) and its bytes read.
    current: Option<(Response, usize)>,
    buffer: Box<[u8]>,
}

impl AnswerReader {
    fn new(buffer_bytes: usize) -> AnswerReader {
        AnswerReader {
            current: None,
            buffer: vec![0; buffer_bytes].into_boxed_slice(),
        }
    }

    /// Reads once and calls `on_answer` for every answer completed; false
    /// at the end of the stream. A timeout is an error only when an answer
    /// is `owed`.
    fn read(
        &mut self,
        stream: &TcpStream,
        owed: bool,
        on_answer: impl FnMut(Response),
    ) -> io::Result<bool> {
        let read = loop {
            match (&*stream).read(&mut self.buffer) {
                Ok(read) => break read,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if owed {
                        let waited = stream.read_timeout().ok().flatten().unwrap_or_default();
                        return Err(io::Error::new(
                            ErrorKind::TimedOut,
                            format!("no answer from the server within {waited:?}"),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        };
        scan(&mut self.current, &self.buffer[..read], on_answer)?;
        Ok(read > 0)
    }
}

/// Calls `on_answer` for every answer completed in `bytes`, `current` being
/// the one under way.
fn scan(
    current: &mut Option<(Response, usize)>,
    bytes: &[u8],
    mut on_answer: impl FnMut(Response),
) -> io::Result<()> {
    for &byte in bytes {
        let (answer, at) = match *current {
            Some(under_way) => under_way,
            None => match byte {
                b'O' => (Response::Ok, 0),
                b'F' => (Response::Fail, 0),
                b'E' => (Response::Error, 0),
                _ => return Err(not_an_answer(byte)),
            },
        };
        let expected = answer.as_bytes();
        if expected[at] != byte {
            return Err(not_an_answer(byte));
        }
        *current = Some((answer, at + 1));
        if at + 1 == expected.len() {
            *current = None;
            on_answer(answer);
        }
    }
    Ok(())
}

fn not_an_answer(byte: u8) -> io::Error {
    io::Error::new(
        ErrorKind::InvalidData,
        format!(
            "the server sent byte {byte:#04x} where an answer (OK, FAIL, ERROR) belongs: \
             is this a package-indexer protocol port?"
        ),
    )
}

/// A connection used one request, or one batch, at a time.
pub struct Connection {
    stream: TcpStream,
    reader: AnswerReader,
}

impl Connection {
    /// An answer owed waits for `stream`'s read timeout.
    pub fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            // Small: the harness holds one per client, and answers are
            // six bytes at most.
            reader: AnswerReader::new(4 * 1024),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `bytes`, whole request lines.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads exactly `count` answers; more in the same read is an error.
    pub fn read_answers(
        &mut self,
        count: usize,
        mut on_answer: impl FnMut(Response),
    ) -> io::Result<()> {
        let mut received = 0;
        while received < count {
            let open = self.reader.read(&self.stream, true, |answer| {
                received += 1;
                on_answer(answer);
            })?;
            if !open {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
        }
        if received > count || self.reader.current.is_some() {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("the server sent more than {count} answers to {count} lines"),
            ));
        }
        Ok(())
    }

    /// Sends `line` and a newline, and reads its answer.
    pub fn ask(&mut self, line: &[u8]) -> io::Result<Response> {
        let mut request = Vec::with_capacity(line.len() + 1);
        request.extend_from_slice(line);
        request.push(b'\n');
        self.send(&request)?;
        let mut answer = Response::Error;
        self.read_answers(1, |a| answer = a)?;
        Ok(answer)
    }
}

/// Where the reader hands the answers, in order.
pub trait AnswerSink {
    /// The answer to line `index` (0-based, in the order sent).
    fn answer(&mut self, index: u64, answer: Response) -> io::Result<()>;
    /// Called after each read from the socket, with the answers so far.
    fn after_read(&mut self, _answered: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Shared by a connection's two threads.
#[derive(Default)]
struct Flight {
    sent: AtomicU64,
    answered: AtomicU64,
    /// Set by the reader when it stops: the writer must not wait for room.
    reader_stopped: AtomicBool,
}

/// The writer's side: sends lines, at most `window` of them unanswered.
pub struct Sender<'a> {
    stream: &'a TcpStream,
    flight: &'a Flight,
    window: u64,
    /// A send failed: the connection's failure, not the writer's.
    broken: bool,
}

impl Sender<'_> {
    /// Sends `bytes` (`lines` whole lines) once the window has room, or
    /// nothing is in flight (so a batch larger than the window still goes).
    pub fn send(&mut self, bytes: &[u8], lines: u64) -> io::Result<()> {
        loop {
            let sent = self.flight.sent.load(Ordering::Relaxed);
            let in_flight = sent - self.flight.answered.load(Ordering::Acquire);
            if in_flight == 0 || in_flight + lines <= self.window {
                break;
            }
            if self.flight.reader_stopped.load(Ordering::Acquire) {
                self.broken = true;
                return Err(io::Error::new(
                    ErrorKind::BrokenPipe,
                    "the connection's reader stopped",
                ));
            }
            // The reader unparks us after every read; the timeout only
            // guards against a wake-up lost to a race.
            thread::park_timeout(Duration::from_millis(50));
        }
        // Counted first, so the reader never sees more answers than lines.
        self.flight.sent.fetch_add(lines, Ordering::Release);
        let written = (&*self.stream).write_all(bytes);
        self.broken = written.is_err();
        written
    }
}

/// How a pipelined exchange ended.
#[derive(Debug, Default)]
pub struct PipelineOutcome {
    pub sent: u64,
    pub answered: u64,
    /// What went wrong, one line each, most telling first; empty when every
    /// line sent was answered.
    pub problems: Vec<String>,
}

/// Runs `write` on a writer thread sending through a [`Sender`] with at
/// most `window` lines in flight, while this thread reads the answers into
/// `sink` to the end of the stream; once `write` returns, the writing half
/// is shut down. `write`'s own error is one line (`reading stdin: ...`).
pub fn pipeline<W>(
    stream: &TcpStream,
    window: u64,
    write: W,
    sink: &mut dyn AnswerSink,
) -> PipelineOutcome
where
    W: FnOnce(&mut Sender) -> io::Result<()> + Send,
{
    let flight = Flight::default();
    thread::scope(|scope| {
        // A thread the system cannot start is the one panic here: a tool
        // without threads has nothing better to do.
        let writer = scope.spawn(|| {
            let mut sender = Sender {
                stream,
                flight: &flight,
                window: window.max(1),
                broken: false,
            };
            let result = write(&mut sender);
            // The server answers every line, then closes, ending the reader;
            // after a failure, both halves: no wait for lines never sent.
            let how = match result {
                Ok(()) => Shutdown::Write,
                Err(_) => Shutdown::Both,
            };
            let _ = stream.shutdown(how);
            result.map_err(|error| (error, sender.broken))
        });
        let read = read_answers(stream, &flight, writer.thread(), sink);
        flight.reader_stopped.store(true, Ordering::Release);
        writer.thread().unpark();
        if read.is_err() {
            // Unblocks a writer stuck on a server that stopped reading.
            let _ = stream.shutdown(Shutdown::Both);
        }
        let mut problems = Vec::new();
        // A failed send usually follows a close the reader reports better;
        // the writer's own failure (`reading stdin: ...`) comes first.
        let mut send_failure = None;
        match writer.join() {
            Ok(Ok(())) => {}
            Ok(Err((error, true))) => send_failure = Some(format!("sending: {error}")),
            Ok(Err((error, false))) => problems.push(error.to_string()),
            Err(_) => problems.push("the writer thread panicked".into()),
        }
        // Read after the writer is done, so a server hanging up before the
        // first line is counted does not look like one that answered all.
        let (sent, answered) = (
            flight.sent.load(Ordering::Acquire),
            flight.answered.load(Ordering::Acquire),
        );
        if let Err(error) = read {
            problems.push(error);
        } else if answered < sent {
            problems.push(format!(
                "the server closed the connection after answering {answered} of {sent} lines"
            ));
        }
        if problems.is_empty() {
            problems.extend(send_failure);
        }
        PipelineOutcome {
            sent,
            answered,
            problems,
        }
    })
}

/// Reads answers to the end of the stream; the error is one line.
fn read_answers(
    stream: &TcpStream,
    flight: &Flight,
    writer: &thread::Thread,
    sink: &mut dyn AnswerSink,
) -> Result<(), String> {
    let mut reader = AnswerReader::new(64 * 1024);
    let mut answered = 0u64;
    loop {
        let owed = flight.sent.load(Ordering::Acquire) > answered;
        let mut sink_error = None;
        let open = reader
            .read(stream, owed, |answer| {
                if sink_error.is_none() {
                    sink_error = sink.answer(answered, answer).err();
                }
                answered += 1;
            })
            .map_err(|e| format!("reading answers: {e}"))?;
        if !open {
            return Ok(());
        }
        let sent = flight.sent.load(Ordering::Acquire);
        if answered > sent {
            return Err(format!(
                "the server sent {answered} answers to {sent} lines"
            ));
        }
        flight.answered.store(answered, Ordering::Release);
        writer.unpark();
        if let Some(error) = sink_error {
            return Err(format!("writing the answers: {error}"));
        }
        sink.after_read(answered)
            .map_err(|e| format!("writing the answers: {e}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn scans_answers_split_across_reads_and_refuses_others() {
        let mut current = None;
        let mut seen = Vec::new();
        for part in [&b"OK\nFA"[..], b"IL\nERR", b"OR\n", b"OK\n"] {
            scan(&mut current, part, |a| seen.push(a)).unwrap();
        }
        use Response::{Error, Fail, Ok};
        assert_eq!(seen, [Ok, Fail, Error, Ok]);
        for bad in [&b"HTTP/1.1 400\r\n"[..], b"OKAY\n", b"FAIL\r\n", b"\n"] {
            let error = scan(&mut None, bad, |_| {}).unwrap_err();
            assert!(error.to_string().contains("where an answer"), "{error}");
        }
    }

    #[test]
    fn unspecified_addresses_mean_this_host() {
        for (given, meant) in [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:1", "[::1]:1"),
            ("10.1.2.3:9", "10.1.2.3:9"),
        ] {
            assert_eq!(resolve(given).unwrap(), [meant.parse().unwrap()]);
        }
    }

    #[test]
    fn a_refused_connection_names_the_address() {
        // A port just freed: nothing listens there.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = connect(&addr).unwrap_err();
        assert!(
            error.starts_with(&format!("cannot connect to {addr}: ")),
            "{error}"
        );
    }

    /// Collects answers.
    #[derive(Default)]
    struct Collect(Vec<(u64, Response)>);

    impl AnswerSink for Collect {
        fn answer(&mut self, index: u64, answer: Response) -> io::Result<()> {
            self.0.push((index, answer));
            Ok(())
        }
    }

    /// A server that answers `OK` to each line, holding back all answers
    /// until it has read `hold` lines (or the end of its input).
    fn echo_server(hold: usize) -> (SocketAddr, thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut input = [0u8; 4096];
            let (mut lines, mut owed) = (0, 0);
            loop {
                let read = stream.read(&mut input).unwrap();
                let new = input[..read].iter().filter(|&&b| b == b'\n').count();
                lines += new;
                owed += new;
                if read == 0 || lines >= hold {
                    stream.write_all(&b"OK\n".repeat(owed)).unwrap();
                    owed = 0;
                }
                if read == 0 {
                    return lines;
                }
            }
        });
        (addr, server)
    }

    #[test]
    fn the_window_bounds_the_lines_in_flight() {
        // The server answers nothing before it has 10 lines, so a window
        // of 4 with one line a send would wait forever: it must let the
        // batch of 10 through when nothing is in flight.
        let (addr, server) = echo_server(10);
        let stream = connect(&addr.to_string()).unwrap();
        let mut sink = Collect::default();
        let outcome = pipeline(
            &stream,
            4,
            |sender| {
                sender.send(&b"QUERY|a|\n".repeat(10), 10)?;
                for _ in 0..20 {
                    sender.send(b"QUERY|a|\n", 1)?;
                }
                Ok(())
            },
            &mut sink,
        );
        assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
        assert_eq!((outcome.sent, outcome.answered), (30, 30));
        assert_eq!(server.join().unwrap(), 30);
        let indexes: Vec<u64> = sink.0.iter().map(|&(i, _)| i).collect();
        assert_eq!(indexes, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn an_early_close_is_reported_with_the_counts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut input = [0u8; 64];
            let _ = stream.read(&mut input).unwrap();
            stream.write_all(b"OK\n").unwrap();
        });
        let stream = connect(&addr.to_string()).unwrap();
        let outcome = pipeline(
            &stream,
            100,
            |sender| sender.send(b"QUERY|a|\nQUERY|b|\n", 2),
            &mut Collect::default(),
        );
        server.join().unwrap();
        assert_eq!(
            outcome.problems,
            ["the server closed the connection after answering 1 of 2 lines"]
        );
    }
}
