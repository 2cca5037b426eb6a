//! The subcommands' HTTP client for the admin listener: one `GET`, whose
//! answer (`Content-Length`, then the connection closes:
//! `docs/admin-http.md#answers`) is read to its stated length, so a cut-off
//! transfer is an error, never a short file.

use crate::config::DEFAULT_ADMIN_ADDR;
use crate::flags::Flag;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where the admin listener is: the flag of every subcommand that asks it.
pub(super) const ADMIN_ADDR: Flag = Flag::value(
    "admin-addr",
    DEFAULT_ADMIN_ADDR,
    "the server's admin listener",
);

/// Largest answer head read, status line and headers.
const MAX_HEAD_BYTES: u64 = 64 * 1024;

/// An answer whose head has been read; its body is still to come.
pub(super) struct Answer {
    /// `HTTP/1.1 200 OK`.
    pub(super) status_line: String,
    /// The status code (200).
    pub(super) status: u16,
    content_length: u64,
    body: BufReader<TcpStream>,
}

/// Sends `GET path` to the admin listener at `admin_addr` and reads the
/// answer's head. `timeout` bounds the connect and each read and write
/// (a server computing a large answer sends nothing until it is done).
pub(super) fn get(admin_addr: &str, path: &str, timeout: Duration) -> io::Result<Answer> {
    let addr = admin_addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin_addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let before = head.len();
        (&mut reader)
            .take(MAX_HEAD_BYTES.saturating_sub(before as u64))
            .read_until(b'\n', &mut head)?;
        let line = &head[before..];
        if line.is_empty() || !line.ends_with(b"\n") {
            return Err(invalid("the answer ended within its head"));
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let head = String::from_utf8(head).map_err(|_| invalid("the answer's head is not text"))?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("the answer has no status code"))?;
    let content_length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| invalid("the answer has no Content-Length"))?;
    Ok(Answer {
        status_line,
        status,
        content_length,
        body: reader,
    })
}

impl Answer {
    /// Copies the body to `out` and returns its length; fails if the
    /// connection ends before `Content-Length` bytes.
    pub(super) fn copy_body(mut self, out: &mut impl Write) -> io::Result<u64> {
        let copied = io::copy(&mut (&mut self.body).take(self.content_length), out)?;
        if copied < self.content_length {
            return Err(invalid(&format!(
                "the answer was cut off after {copied} of {} bytes",
                self.content_length
            )));
        }
        Ok(copied)
    }

    /// The whole body as text.
    pub(super) fn text(self) -> io::Result<String> {
        let mut body = Vec::new();
        self.copy_body(&mut body)?;
        String::from_utf8(body).map_err(|_| invalid("the answer is not UTF-8 text"))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
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
        let answer = get(&addr, "/x", TIMEOUT).unwrap();
        assert_eq!(answer.status, 404);
        assert_eq!(answer.status_line, "HTTP/1.1 404 Not Found");
        assert_eq!(answer.text().unwrap(), "hello");
    }

    #[test]
    fn a_short_body_is_an_error() {
        let addr = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        let error = get(&addr, "/x", TIMEOUT).unwrap().text().unwrap_err();
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
            b"garbage\r\n\r\n",
        ] {
            let addr = answering(raw);
            assert!(get(&addr, "/x", TIMEOUT).is_err(), "{raw:?}");
        }
    }
}
