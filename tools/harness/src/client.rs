//! One client connection to the server under test.

use package_indexer::Response;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a client waits to connect, to write a message, or for its answer.
pub(crate) const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// The longest valid answer is `ERROR\n`; read a little more to show junk.
const MAX_ANSWER_BYTES: u64 = 64;

/// One client connection: a message out, one answer line back.
pub(crate) struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects to the first of `addresses` that accepts (`localhost` may
    /// resolve to `::1` before `127.0.0.1`).
    pub(crate) fn open(addresses: &[SocketAddr]) -> Result<Connection, String> {
        let mut last_error = String::from("no address to try");
        for address in addresses {
            match TcpStream::connect_timeout(address, ANSWER_DEADLINE) {
                Ok(stream) => {
                    let configured = stream
                        .set_read_timeout(Some(ANSWER_DEADLINE))
                        .and_then(|()| stream.set_write_timeout(Some(ANSWER_DEADLINE)))
                        .and_then(|()| stream.set_nodelay(true));
                    return match configured {
                        Ok(()) => Ok(Connection {
                            reader: BufReader::new(stream),
                        }),
                        Err(e) => Err(format!("cannot configure connection to {address}: {e}")),
                    };
                }
                Err(e) => last_error = format!("cannot connect to {address}: {e}"),
            }
        }
        Err(last_error)
    }

    /// Sends `message` and a newline, then reads one answer; the error says
    /// what happened instead of a valid answer.
    pub(crate) fn exchange(&mut self, message: &str) -> Result<Response, String> {
        let mut line = Vec::with_capacity(message.len() + 1);
        line.extend_from_slice(message.as_bytes());
        line.push(b'\n');
        self.reader
            .get_mut()
            .write_all(&line)
            .map_err(|e| describe_io("sending", &e))?;

        let mut answer = Vec::new();
        (&mut self.reader)
            .take(MAX_ANSWER_BYTES)
            .read_until(b'\n', &mut answer)
            .map_err(|e| describe_io("waiting for the answer", &e))?;
        let valid = [Response::Ok, Response::Fail, Response::Error];
        match valid
            .into_iter()
            .find(|r| r.as_bytes() == answer.as_slice())
        {
            Some(response) => Ok(response),
            None if answer.is_empty() => Err("server closed the connection".to_string()),
            None if !answer.ends_with(b"\n") && (answer.len() as u64) < MAX_ANSWER_BYTES => {
                Err(format!(
                    "server closed the connection after a partial answer {:?}",
                    String::from_utf8_lossy(&answer)
                ))
            }
            None => Err(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&answer)
            )),
        }
    }
}

fn describe_io(doing: &str, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "timed out {doing} (deadline {}s)",
            ANSWER_DEADLINE.as_secs()
        ),
        _ => format!("connection error {doing}: {error}"),
    }
}
