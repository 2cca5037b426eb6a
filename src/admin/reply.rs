//! An admin answer with a complete body, and its bytes on the wire.

use crate::json;

pub(super) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
pub(super) const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
const JSON_CONTENT_TYPE: &str = "application/json";

/// An answer with a complete body.
pub(super) struct Reply {
    pub(super) status: &'static str,
    pub(super) content_type: &'static str,
    /// Header lines beyond the usual ones, each ending in `\r\n`.
    pub(super) extra_headers: &'static str,
    pub(super) body: String,
}

impl Reply {
    pub(super) fn text(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            content_type: TEXT_CONTENT_TYPE,
            extra_headers: "",
            body: body.to_owned(),
        }
    }

    pub(super) fn json(status: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type: JSON_CONTENT_TYPE,
            extra_headers: "",
            body,
        }
    }

    /// A JSON error: `{"error": what, "name": name}`, the name only when
    /// there is one.
    pub(super) fn json_error(status: &'static str, what: &str, name: Option<&str>) -> Reply {
        let mut body = String::from("{\"error\":");
        json::write_string(&mut body, what);
        if let Some(name) = name {
            body.push_str(",\"name\":");
            json::write_string(&mut body, name);
        }
        body.push_str("}\n");
        Reply::json(status, body)
    }
}

/// The status line and headers of a reply, up to its blank line.
pub(super) fn head(reply: &Reply) -> String {
    format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        reply.status,
        reply.content_type,
        reply.body.len(),
        reply.extra_headers
    )
}

/// Serialises a reply; `head_only` (a `HEAD` request) keeps the headers,
/// `Content-Length` included, and drops the body.
pub(super) fn encode(reply: &Reply, head_only: bool) -> Vec<u8> {
    let mut bytes = head(reply).into_bytes();
    if !head_only {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    bytes
}
