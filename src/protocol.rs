//! Wire protocol: bytes -> [`Request`], [`Response`] -> bytes.

/// The three commands of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Index,
    Remove,
    Query,
}

/// The three answers of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    Ok,
    Fail,
    Error,
}

impl Response {
    /// The bytes sent on the wire, newline included.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Response::Ok => b"OK\n",
            Response::Fail => b"FAIL\n",
            Response::Error => b"ERROR\n",
        }
    }
}
