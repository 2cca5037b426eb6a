//! The HTTP client for the admin listener, of the subcommands, the bench and
//! the tests: one request, whose answer (`Content-Length`, then the
//! connection closes: `docs/admin-http.md#answers`) is read to its stated
//! length, so a cut-off transfer is an error, never a short file.

use super::connection::{connect_to, resolve};
use crate::config::DEFAULT_ADMIN_ADDR;
use crate::flags::Flag;
use std::fmt;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Where the admin listener is: the flag of every subcommand that asks it.
pub(super) const ADMIN_ADDR: Flag = Flag::value(
    "admin-addr",
    DEFAULT_ADMIN_ADDR,
    "the server's admin listener",
);

/// The `--timeout` flag of a subcommand that asks the admin listener.
pub(super) const fn timeout_flag(default: &'static str) -> Flag {
    Flag::value(
        "timeout",
        default,
        "how long connecting, and each read and write, may take (500ms, 10s, 2m)",
    )
    .without_variable()
}

/// Largest answer head read, status line and headers.
const MAX_HEAD_BYTES: u64 = 64 * 1024;

/// Why a request got no usable answer; each says the address in one line.
#[derive(Debug)]
pub enum HttpError {
    /// Nothing accepted the connection (the line names the address).
    Connect(String),
    /// Connected, but nothing came within the timeout.
    NoAnswer { addr: String, timeout: Duration },
    /// The connection failed, or the answer is not HTTP as the admin
    /// listener writes it (a protocol port answers `ERROR`).
    Broken { addr: String, reason: String },
    /// Writing the body where it was to go failed.
    Write(io::Error),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Connect(line) => f.write_str(line),
            HttpError::NoAnswer { addr, timeout } => write!(
                f,
                "no answer from {addr} within {} s (is that the admin address?)",
                timeout.as_secs_f64()
            ),
            HttpError::Broken { addr, reason } => write!(f, "{addr}: {reason}"),
            HttpError::Write(error) => write!(f, "writing the answer: {error}"),
        }
    }
}

/// An answer whose head has been read; its body is still to come.
pub struct HttpAnswer {
    /// `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// The status code (200).
    pub status: u16,
    /// Every header, name and value, in order.
    pub headers: Vec<(String, String)>,
    addr: String,
    timeout: Duration,
    body: BufReader<TcpStream>,
}

/// Sends `METHOD path` to the admin listener at `addr` and reads the
/// answer's head. `timeout` bounds the connect and each read and write
/// (a server computing a large answer sends nothing until it is done).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<HttpAnswer, HttpError> {
    let targets = resolve(addr).map_err(HttpError::Connect)?;
    let mut stream = connect_to(addr, &targets, timeout).map_err(HttpError::Connect)?;
    let sent = stream.set_write_timeout(Some(timeout)).and_then(|()| {
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
    });
    let mut answer = HttpAnswer {
        status_line: String::new(),
        status: 0,
        headers: Vec::new(),
        addr: addr.to_string(),
        timeout,
        body: BufReader::new(stream),
    };
    sent.map_err(|e| answer.failed(e))?;
    answer.read_head()?;
    Ok(answer)
}

/// [`http_request`] with `GET`.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<HttpAnswer, HttpError> {
    http_request(addr, "GET", path, timeout)
}

impl HttpAnswer {
    /// Reads the status line and headers, up to the empty line.
    fn read_head(&mut self) -> Result<(), HttpError> {
        let mut line = Vec::new();
        loop {
            line.clear();
            (&mut self.body)
                .take(MAX_HEAD_BYTES)
                .read_until(b'\n', &mut line)
                .map_err(|e| self.failed(e))?;
            if !line.ends_with(b"\n") {
                return Err(self.broken("the answer ended within its head"));
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if self.status_line.is_empty() {
                self.status = match text.strip_prefix("HTTP/1.") {
                    Some(rest) => rest.get(2..5).and_then(|code| code.parse().ok()),
                    None => None,
                }
                .ok_or_else(|| {
                    self.broken(&format!(
                        "answered {text:?}, not HTTP (is that the admin address?)"
                    ))
                })?;
                self.status_line = text;
            } else if text.is_empty() {
                return Ok(());
            } else if let Some((name, value)) = text.split_once(':') {
                self.headers
                    .push((name.to_string(), value.trim().to_string()));
            }
        }
    }

    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Copies the body to `out` and returns its length; fails if the
    /// connection ends before `Content-Length` bytes.
    pub fn copy_body(mut self, out: &mut impl Write) -> Result<u64, HttpError> {
        let Some(length) = self.header("Content-Length").and_then(|v| v.parse().ok()) else {
            return Err(self.broken("the answer has no Content-Length"));
        };
        let mut buffer = vec![0u8; 64 * 1024];
        let mut copied: u64 = 0;
        while copied < length {
            let want = usize::try_from(length - copied)
                .map_or(buffer.len(), |left| left.min(buffer.len()));
            let read = match self.body.read(&mut buffer[..want]) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.failed(error)),
            };
            out.write_all(&buffer[..read]).map_err(HttpError::Write)?;
            copied += read as u64;
        }
        if copied < length {
            return Err(self.broken(&format!(
                "the answer was cut off after {copied} of {length} bytes"
            )));
        }
        Ok(copied)
    }

    /// The whole body as text.
    pub fn text(self) -> Result<String, HttpError> {
        let mut body = Vec::new();
        let addr = self.addr.clone();
        self.copy_body(&mut body)?;
        String::from_utf8(body).map_err(|_| HttpError::Broken {
            addr,
            reason: "the answer is not UTF-8 text".into(),
        })
    }

    fn broken(&self, reason: &str) -> HttpError {
        HttpError::Broken {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }

    /// An I/O failure, a timeout told as such.
    fn failed(&self, error: io::Error) -> HttpError {
        match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => HttpError::NoAnswer {
                addr: self.addr.clone(),
                timeout: self.timeout,
            },
            _ => self.broken(&error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A one-shot server that answers `raw` to the first request.
    fn answering(raw: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // The whole head first: answering and closing while the client
            // still writes its request would break its pipe.
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(read) => request.extend_from_slice(&chunk[..read]),
                }
            }
            stream.write_all(raw).unwrap();
        });
        addr
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn reads_the_body_to_its_length() {
        let addr = answering(b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\nhello and more");
        let answer = http_get(&addr, "/x", TIMEOUT).unwrap();
        assert_eq!(answer.status, 404);
        assert_eq!(answer.status_line, "HTTP/1.1 404 Not Found");
        assert_eq!(answer.header("Content-Length"), Some("5"));
        assert_eq!(answer.text().unwrap(), "hello");
    }

    #[test]
    fn a_short_body_is_an_error() {
        let addr = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        let error = http_get(&addr, "/x", TIMEOUT).unwrap().text().unwrap_err();
        assert!(
            error.to_string().contains("cut off after 5 of 10"),
            "{error}"
        );
    }

    #[test]
    fn heads_without_length_or_end_are_errors() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\n\r\nbody"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n",
        ] {
            let addr = answering(raw);
            let answer = http_get(&addr, "/x", TIMEOUT).and_then(HttpAnswer::text);
            assert!(answer.is_err(), "{raw:?}");
        }
        let addr = answering(b"ERROR\nERROR\n");
        let error = http_get(&addr, "/x", TIMEOUT).err().unwrap().to_string();
        assert!(
            error.ends_with("answered \"ERROR\", not HTTP (is that the admin address?)"),
            "{error}"
        );
    }

    #[test]
    fn silence_is_no_answer_naming_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let timeout = Duration::from_millis(200);
        let error = http_get(&addr, "/x", timeout).err().unwrap().to_string();
        assert_eq!(
            error,
            format!("no answer from {addr} within 0.2 s (is that the admin address?)")
        );
    }
}
