//! What each admin path answers: at once on the loop, or as a job for a
//! worker when it takes longer than a probe may wait.

use super::request::{parse_request_line, percent_decode, RequestLine};
use super::AdminState;
use crate::json;
use crate::log;
use crate::name::PackageName;
use crate::store::{Inspection, Store};
use std::panic::{self, AssertUnwindSafe};

pub(super) const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
const JSON_CONTENT_TYPE: &str = "application/json";

pub(super) struct Reply {
    pub(super) status: &'static str,
    pub(super) content_type: &'static str,
    /// Header lines beyond the usual ones, each ending in `\r\n`.
    pub(super) extra_headers: &'static str,
    pub(super) body: String,
}

impl Reply {
    fn new(status: &'static str, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            extra_headers: "",
            body,
        }
    }

    pub(super) fn text(status: &'static str, body: String) -> Reply {
        Reply::new(status, TEXT_CONTENT_TYPE, body)
    }

    /// The status line and headers, up to their blank line.
    pub(super) fn head(&self) -> String {
        format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.extra_headers
        )
    }

    /// The bytes on the wire; `head_only` (`HEAD`) drops the body but keeps
    /// its `Content-Length`.
    pub(super) fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut bytes = self.head().into_bytes();
        if !head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

/// What a job does; each kind has its own workers (`max_jobs` of them),
/// so exports cannot keep inspections out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobKind {
    Inspect,
    Export,
}

/// A reply produced on a worker thread rather than on the loop.
pub(super) struct Job {
    pub(super) kind: JobKind,
    pub(super) produce: Box<dyn FnOnce() -> Reply + Send>,
    /// A `HEAD` request: send the headers only.
    pub(super) head_only: bool,
}

/// What a request head gets: its answer's bytes, or a job to produce them.
pub(super) enum RouteAnswer {
    Now(Vec<u8>),
    Later(Job),
}

/// The form of an inspection's answer, errors included.
#[derive(Clone, Copy)]
enum Form {
    Json,
    /// For a person, as `package-indexer show` prints it.
    Text,
}

pub(super) fn respond(head: &[u8], state: &AdminState) -> RouteAnswer {
    let request_line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let reply = match parse_request_line(request_line) {
        RequestLine::Malformed => Reply::text("400 Bad Request", "bad request\n".into()),
        RequestLine::OtherMethod => Reply {
            extra_headers: "Allow: GET, HEAD\r\n",
            ..Reply::text("405 Method Not Allowed", "method not allowed\n".into())
        },
        RequestLine::Get { path, head_only } => {
            return guarded(path, || route(path, head_only, state))
                .unwrap_or_else(|| RouteAnswer::Now(internal_error().encode(head_only)))
        }
    };
    RouteAnswer::Now(reply.encode(false))
}

/// Runs `answer` for `path`; `None` when it panicked (and was logged).
pub(super) fn guarded<T>(path: &str, answer: impl FnOnce() -> T) -> Option<T> {
    let answered = panic::catch_unwind(AssertUnwindSafe(answer));
    if answered.is_err() {
        log::error("admin route panicked", &[("path", &path)]);
    }
    answered.ok()
}

pub(super) fn internal_error() -> Reply {
    Reply::text("500 Internal Server Error", "internal error\n".into())
}

/// The answer to a `GET` of `path`, or to a `HEAD` (`head_only`).
fn route(path: &str, head_only: bool, state: &AdminState) -> RouteAnswer {
    let later = |kind, produce: Box<dyn FnOnce() -> Reply + Send>| {
        RouteAnswer::Later(Job {
            kind,
            produce,
            head_only,
        })
    };
    let inspection = match path.strip_prefix("/v1/packages/") {
        Some(segment) => Some((segment, Form::Json)),
        None => path
            .strip_prefix("/v1/text/packages/")
            .map(|segment| (segment, Form::Text)),
    };
    let reply = match (path, inspection, state.store.get()) {
        ("/healthz", _, _) => Reply::text("200 OK", "ok\n".into()),
        ("/readyz", _, _) if (state.ready)() => Reply::text("200 OK", "ready\n".into()),
        ("/readyz", _, _) => Reply::text("503 Service Unavailable", "not ready\n".into()),
        ("/metrics", _, _) => {
            let mut body = String::with_capacity(16 * 1024);
            (state.render_metrics)(&mut body);
            Reply::new("200 OK", "text/plain; version=0.0.4", body)
        }
        ("/v1/export", _, None) => refusal(Form::Json, "503 Service Unavailable", "loading", None),
        ("/v1/export", _, Some(store)) => {
            let store = store.clone();
            let export = move || Reply::text("200 OK", store.export());
            return later(JobKind::Export, Box::new(export));
        }
        (_, Some((_, form)), None) => refusal(form, "503 Service Unavailable", "loading", None),
        // The name is checked here, so that a bad one is told so even
        // while the workers are busy.
        (_, Some((segment, form)), Some(store)) => {
            match percent_decode(segment).filter(|name| PackageName::new(name).is_some()) {
                None => refusal(
                    form,
                    "400 Bad Request",
                    "invalid package name",
                    Some(segment),
                ),
                Some(name) => {
                    let store = store.clone();
                    let inspect = move || inspect(&store, &name, form);
                    return later(JobKind::Inspect, Box::new(inspect));
                }
            }
        }
        (_, None, _) => Reply::text("404 Not Found", "not found\n".into()),
    };
    RouteAnswer::Now(reply.encode(head_only))
}

/// An inspection refused: `{"error": what, "name": name}`, or `what` alone.
fn refusal(form: Form, status: &'static str, what: &str, name: Option<&str>) -> Reply {
    if let Form::Text = form {
        return Reply::text(status, format!("{what}\n"));
    }
    let mut body = String::from("{\"error\":");
    json::write_string(&mut body, what);
    if let Some(name) = name {
        body.push_str(",\"name\":");
        json::write_string(&mut body, name);
    }
    body.push_str("}\n");
    Reply::new(status, JSON_CONTENT_TYPE, body)
}

/// `/v1/packages/NAME`, on a worker; `name` was checked on the loop.
fn inspect(store: &Store, name: &[u8], form: Form) -> Reply {
    let inspection = PackageName::new(name).and_then(|name| store.inspect(name));
    match (inspection, form) {
        (Some(inspection), Form::Json) => {
            Reply::new("200 OK", JSON_CONTENT_TYPE, inspection_json(&inspection))
        }
        (Some(inspection), Form::Text) => Reply::text("200 OK", inspection_text(&inspection)),
        (None, _) => {
            let name = String::from_utf8_lossy(name);
            refusal(form, "404 Not Found", "not indexed", Some(&name))
        }
    }
}

/// What `package-indexer show` prints (`docs/admin-http.md#v1textpackagesname`).
fn inspection_text(inspection: &Inspection) -> String {
    let counted = |label: &str, names: &[String]| match names {
        [] => format!("{label} (0)\n"),
        names => format!("{label} ({}): {}\n", names.len(), names.join(", ")),
    };
    format!(
        "{}\n{}{}",
        inspection.name,
        counted("depends on", &inspection.dependencies),
        counted("needed by", &inspection.dependents)
    )
}

/// `{"name": ..., "dependencies": [...], "dependents": [...]}` and a newline.
fn inspection_json(inspection: &Inspection) -> String {
    let mut body = String::from("{\"name\":");
    json::write_string(&mut body, &inspection.name);
    body.push_str(",\"dependencies\":");
    json::write_strings(
        &mut body,
        inspection.dependencies.iter().map(String::as_str),
    );
    body.push_str(",\"dependents\":");
    json::write_strings(&mut body, inspection.dependents.iter().map(String::as_str));
    body.push_str("}\n");
    body
}
