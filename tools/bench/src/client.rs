//! A benchmark client connection: sends a batch of request lines with one
//! write and reads exactly one answer per line, counting the answers.

use package_indexer::Response;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long to wait for an answer before calling the server stuck.
pub(crate) const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
const READ_BUFFER: usize = 16 * 1024;

/// Answers received, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answers {
    pub ok: u64,
    pub fail: u64,
    pub error: u64,
}

impl Answers {
    pub fn count(&mut self, answer: Response) {
        match answer {
            Response::Ok => self.ok += 1,
            Response::Fail => self.fail += 1,
            Response::Error => self.error += 1,
        }
    }

    pub fn add(&mut self, other: &Answers) {
        self.ok += other.ok;
        self.fail += other.fail;
        self.error += other.error;
    }

    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.error
    }
}

/// Splits a stream of answer bytes into answers, across reads.
#[derive(Debug)]
pub(crate) struct AnswerScanner {
    /// The answer being read, known from its first byte.
    current: Option<Response>,
    at_line_start: bool,
}

impl Default for AnswerScanner {
    fn default() -> AnswerScanner {
        AnswerScanner {
            current: None,
            at_line_start: true,
        }
    }
}

impl AnswerScanner {
    /// Calls `on_answer` for every answer completed in `bytes`; returns how
    /// many, or an error when a line is not an answer the protocol knows.
    /// Only the first byte is checked: the server's own tests check the rest.
    pub(crate) fn scan(
        &mut self,
        bytes: &[u8],
        mut on_answer: impl FnMut(Response),
    ) -> io::Result<usize> {
        let mut completed = 0;
        for &byte in bytes {
            if self.at_line_start {
                self.current = match byte {
                    b'O' => Some(Response::Ok),
                    b'F' => Some(Response::Fail),
                    b'E' => Some(Response::Error),
                    other => {
                        return Err(io::Error::new(
                            ErrorKind::InvalidData,
                            format!("unexpected answer starting with byte {other:#04x}"),
                        ))
                    }
                };
            }
            self.at_line_start = byte == b'\n';
            if self.at_line_start {
                if let Some(answer) = self.current.take() {
                    on_answer(answer);
                }
                completed += 1;
            }
        }
        Ok(completed)
    }
}

pub(crate) struct Client {
    stream: TcpStream,
    input: Vec<u8>,
    scanner: AnswerScanner,
}

impl Client {
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        Client::from_stream(stream)
    }

    pub(crate) fn from_stream(stream: TcpStream) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(ANSWER_DEADLINE))?;
        Ok(Client {
            stream,
            input: vec![0; READ_BUFFER],
            scanner: AnswerScanner::default(),
        })
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `batch`, which holds `lines` requests, and reads their answers.
    pub(crate) fn exchange(
        &mut self,
        batch: &[u8],
        lines: usize,
        mut on_answer: impl FnMut(Response),
    ) -> io::Result<()> {
        self.stream.write_all(batch)?;
        self.read_answers(lines, &mut on_answer)
    }

    /// Reads exactly `lines` answers.
    pub(crate) fn read_answers(
        &mut self,
        lines: usize,
        on_answer: &mut impl FnMut(Response),
    ) -> io::Result<()> {
        let mut received = 0;
        while received < lines {
            let read = match self.stream.read(&mut self.input) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ))
                }
                Ok(read) => read,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        format!("no answer within {ANSWER_DEADLINE:?}"),
                    ))
                }
                Err(e) => return Err(e),
            };
            received += self.scanner.scan(&self.input[..read], &mut *on_answer)?;
        }
        if received > lines {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("{received} answers to {lines} requests"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_counts_answers_split_across_reads() {
        let mut scanner = AnswerScanner::default();
        let mut answers = Answers::default();
        assert_eq!(scanner.scan(b"OK\nFA", |a| answers.count(a)).unwrap(), 1);
        assert_eq!(scanner.scan(b"IL\nERR", |a| answers.count(a)).unwrap(), 1);
        assert_eq!(scanner.scan(b"OR\nOK\n", |a| answers.count(a)).unwrap(), 2);
        assert_eq!(
            answers,
            Answers {
                ok: 2,
                fail: 1,
                error: 1
            }
        );
        assert_eq!(answers.total(), 4);
    }

    #[test]
    fn scanner_refuses_what_is_not_an_answer() {
        let mut scanner = AnswerScanner::default();
        assert!(scanner.scan(b"OK\nHTTP/1.1 400\n", |_| {}).is_err());
    }
}
