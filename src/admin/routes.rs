//! What each admin path answers: at once on the loop, or as a job for a
//! worker when it takes longer than a probe may wait.

use super::reply::{encode, Reply, METRICS_CONTENT_TYPE};
use super::request::{parse_request_line, percent_decode, RequestLine};
use super::AdminState;
use crate::json;
use crate::log;
use crate::name::PackageName;
use crate::store::{Inspection, Store};
use std::panic::{self, AssertUnwindSafe};

/// Where the inspection routes begin, JSON and text; the package's name
/// follows.
const PACKAGES_PREFIX: &str = "/v1/packages/";
const TEXT_PACKAGES_PREFIX: &str = "/v1/text/packages/";

/// The form of an inspection's answer, errors included.
#[derive(Clone, Copy)]
enum Form {
    Json,
    /// For a person, as `package-indexer show` prints it.
    Text,
}

/// A reply produced on a worker thread rather than on the loop.
pub(super) struct Job {
    pub(super) kind: JobKind,
    pub(super) produce: Box<dyn FnOnce() -> Reply + Send>,
    /// A `HEAD` request: send the headers only.
    pub(super) head_only: bool,
}

/// What a job does; each kind has its own [`AdminLimits::max_jobs`]
/// workers, so exports cannot keep inspections out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobKind {
    /// `/v1/packages/NAME`.
    Inspect,
    /// `/v1/export`.
    Export,
}

/// What a request head gets: its answer's bytes, or a job to produce them.
pub(super) enum Answer {
    Now(Vec<u8>),
    Later(Job),
}

/// What a route gives.
enum Routed {
    Now(Reply),
    Later(JobKind, Box<dyn FnOnce() -> Reply + Send>),
}

/// Answers one request head.
pub(super) fn respond(head: &[u8], state: &AdminState) -> Answer {
    let request_line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let reply = match parse_request_line(request_line) {
        RequestLine::Malformed => Reply::text("400 Bad Request", "bad request\n"),
        RequestLine::OtherMethod => Reply {
            extra_headers: "Allow: GET, HEAD\r\n",
            ..Reply::text("405 Method Not Allowed", "method not allowed\n")
        },
        RequestLine::Get { path, head_only } => match guarded(path, || route(path, state)) {
            Some(Routed::Now(reply)) => return Answer::Now(encode(&reply, head_only)),
            Some(Routed::Later(kind, produce)) => {
                return Answer::Later(Job {
                    kind,
                    produce,
                    head_only,
                })
            }
            None => internal_error(),
        },
    };
    Answer::Now(encode(&reply, false))
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
    Reply::text("500 Internal Server Error", "internal error\n")
}

/// The answer to a `GET` of `path` (a `HEAD` sends its headers).
fn route(path: &str, state: &AdminState) -> Routed {
    let reply = match path {
        "/healthz" => Reply::text("200 OK", "ok\n"),
        "/readyz" if (state.ready)() => Reply::text("200 OK", "ready\n"),
        "/readyz" => Reply::text("503 Service Unavailable", "not ready\n"),
        "/metrics" => {
            let mut body = String::with_capacity(16 * 1024);
            (state.render_metrics)(&mut body);
            Reply {
                status: "200 OK",
                content_type: METRICS_CONTENT_TYPE,
                extra_headers: "",
                body,
            }
        }
        "/v1/export" => match state.store.get() {
            Some(store) => {
                let store = store.clone();
                return Routed::Later(JobKind::Export, Box::new(move || export(&store)));
            }
            None => loading(),
        },
        _ => match inspection_target(path) {
            Some((segment, form)) => match (state.store.get(), package_name(segment)) {
                (None, _) => refusal(form, "503 Service Unavailable", "loading", None),
                (Some(_), None) => refusal(
                    form,
                    "400 Bad Request",
                    "invalid package name",
                    Some(segment),
                ),
                (Some(store), Some(name)) => {
                    let store = store.clone();
                    return Routed::Later(
                        JobKind::Inspect,
                        Box::new(move || inspect(&store, &name, form)),
                    );
                }
            },
            None => Reply::text("404 Not Found", "not found\n"),
        },
    };
    Routed::Now(reply)
}

/// The rest of an inspection path and the form it asks for.
fn inspection_target(path: &str) -> Option<(&str, Form)> {
    match path.strip_prefix(PACKAGES_PREFIX) {
        Some(segment) => Some((segment, Form::Json)),
        None => path
            .strip_prefix(TEXT_PACKAGES_PREFIX)
            .map(|segment| (segment, Form::Text)),
    }
}

/// An inspection refused: `{"error": what, "name": name}`, or `what` as a
/// line of text.
fn refusal(form: Form, status: &'static str, what: &str, name: Option<&str>) -> Reply {
    match form {
        Form::Json => Reply::json_error(status, what, name),
        Form::Text => Reply::text(status, &format!("{what}\n")),
    }
}

/// The package name a `/v1/packages/` path names: the rest of the path
/// (names may hold `/`), percent-decoded; `None` when it is not one.
fn package_name(segment: &str) -> Option<String> {
    let decoded = percent_decode(segment)?;
    PackageName::new(&decoded).map(|name| name.as_str().to_string())
}

/// The `/v1` answer while the data directory is still loading.
fn loading() -> Reply {
    Reply::json_error("503 Service Unavailable", "loading", None)
}

/// `/v1/packages/NAME`, on a worker: the package's dependencies and
/// dependents; `name` was validated on the loop.
fn inspect(store: &Store, name: &str, form: Form) -> Reply {
    let Some(name) = PackageName::new(name.as_bytes()) else {
        return refusal(form, "400 Bad Request", "invalid package name", Some(name));
    };
    match (store.inspect(name), form) {
        (Some(inspection), Form::Json) => Reply::json("200 OK", inspection_json(&inspection)),
        (Some(inspection), Form::Text) => Reply::text("200 OK", &inspection_text(&inspection)),
        (None, _) => refusal(form, "404 Not Found", "not indexed", Some(name.as_str())),
    }
}

/// What `package-indexer show` prints:
///
/// ```text
/// openssl@3
/// depends on (1): ca-certificates
/// needed by (2): curl, python@3.12
/// ```
///
/// An empty list shows as `depends on (0)`.
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
    let names = inspection.dependencies.len() + inspection.dependents.len();
    let mut body = String::with_capacity(64 + names * 16);
    body.push_str("{\"name\":");
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

/// `/v1/export`, on a worker: the whole index as a package list.
fn export(store: &Store) -> Reply {
    Reply {
        body: store.export(),
        ..Reply::text("200 OK", "")
    }
}
