//! The admin listener's HTTP client: one `GET`, read whole to its
//! `Content-Length` (`docs/admin-http.md#answers`), so a cut-off transfer
//! is an error, never a short copy.

use super::connection::{connect_to, resolve};
use crate::config::DEFAULT_ADMIN_ADDR;
use crate::flags::{Flag, Values};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::process::ExitCode;
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

/// Largest answer head read.
const MAX_HEAD_BYTES: u64 = 64 * 1024;

/// A whole answer.
#[derive(Default)]
pub struct HttpAnswer {
    /// `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// The status code (200).
    pub status: u16,
    /// Every header, name and value, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// `GET path` from the admin listener at `addr`. `timeout` bounds the
/// connect and each read and write (a large answer comes only once done).
/// The error is one line naming `addr`; no caller decides by its kind.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<HttpAnswer, String> {
    let failed = |error: io::Error| match error.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
            "no answer from {addr} within {} s (is that the admin address?)",
            timeout.as_secs_f64()
        ),
        _ => format!("{addr}: {error}"),
    };
    let mut stream = connect_to(addr, &resolve(addr)?, timeout)?;
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| {
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )
        })
        .map_err(failed)?;
    let mut reader = BufReader::new(stream);
    let mut answer = HttpAnswer::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        (&mut reader)
            .take(MAX_HEAD_BYTES)
            .read_until(b'\n', &mut line)
            .map_err(failed)?;
        if !line.ends_with(b"\n") {
            return Err(format!("{addr}: the answer ended within its head"));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if answer.status == 0 {
            let code = text.strip_prefix("HTTP/1.").and_then(|rest| rest.get(2..5));
            answer.status = code.and_then(|code| code.parse().ok()).ok_or_else(|| {
                format!("{addr}: answered {text:?}, not HTTP (is that the admin address?)")
            })?;
            answer.status_line = text;
        } else if text.is_empty() {
            break;
        } else if let Some((name, value)) = text.split_once(':') {
            answer
                .headers
                .push((name.to_string(), value.trim().to_string()));
        }
    }
    let Some(length) = answer.header("Content-Length").and_then(|v| v.parse().ok()) else {
        return Err(format!("{addr}: the answer has no Content-Length"));
    };
    reader
        .take(length)
        .read_to_end(&mut answer.body)
        .map_err(failed)?;
    if (answer.body.len() as u64) < length {
        return Err(format!(
            "{addr}: the answer was cut off after {} of {length} bytes",
            answer.body.len()
        ));
    }
    Ok(answer)
}

/// `GET path` from a subcommand's `--admin-addr` within its `--timeout`,
/// expecting one of `expected`; anything else is reported (with the body,
/// which says why) and becomes the exit status.
pub(super) fn ask_admin(
    program: &str,
    values: &Values,
    path: &str,
    expected: &[u16],
) -> Result<HttpAnswer, ExitCode> {
    let parsed = values
        .address("admin-addr")
        .and_then(|addr| Ok((addr, values.duration("timeout")?)));
    let (addr, timeout) = parsed.map_err(|error| error.report(program))?;
    let answer = http_get(&addr, path, timeout).map_err(|error| super::fail(program, error))?;
    if expected.contains(&answer.status) {
        return Ok(answer);
    }
    let hint = match answer.status {
        503 => " (busy or still loading: try again)",
        _ => "",
    };
    let (line, body) = (&answer.status_line, String::from_utf8_lossy(&answer.body));
    let reason = format!("{addr} answered '{line}': {}{hint}", body.trim());
    Err(super::fail(program, reason))
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
        assert_eq!(answer.body, b"hello");
    }

    #[test]
    fn a_short_body_is_an_error() {
        let addr = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        let error = http_get(&addr, "/x", TIMEOUT).err().unwrap();
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
            assert!(http_get(&addr, "/x", TIMEOUT).is_err(), "{raw:?}");
        }
        let addr = answering(b"ERROR\nERROR\n");
        let error = http_get(&addr, "/x", TIMEOUT).err().unwrap();
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
        let error = http_get(&addr, "/x", timeout).err().unwrap();
        assert_eq!(
            error,
            format!("no answer from {addr} within 0.2 s (is that the admin address?)")
        );
    }
}
