//! The request line of an admin request, read as far as routing needs.

/// `%XX` escapes decoded (RFC 3986 §2.1); `None` for a malformed one.
/// Other bytes stay as they are (`+` is a plus, not a space, in a path).
pub(super) fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'%' {
            decoded.push(byte);
            continue;
        }
        let hex = [bytes.next()?, bytes.next()?];
        let hex = std::str::from_utf8(&hex).ok()?;
        // from_str_radix would take a sign: only hex digits will do.
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        decoded.push(u8::from_str_radix(hex, 16).ok()?);
    }
    Some(decoded)
}

/// A request line as far as routing needs it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RequestLine<'a> {
    /// `GET` (or `HEAD`, which wants the headers only) of a path, its query
    /// dropped.
    Get {
        path: &'a str,
        head_only: bool,
    },
    /// A well-formed request with a method this server does not serve.
    OtherMethod,
    Malformed,
}

/// Reads `METHOD TARGET HTTP/1.x`. The target may be in origin-form
/// (`/path?query`) or absolute-form (`http://host:port/path?query`, also
/// `https`), whose host is ignored as RFC 9112 §3.2.2 asks; asterisk-form
/// (`*`) and authority-form (`host:port`) are well-formed only with the
/// methods they belong to, `OPTIONS` and `CONNECT`, which get 405 like any
/// other method; with `GET` or `HEAD` they are malformed.
pub(super) fn parse_request_line(line: &[u8]) -> RequestLine<'_> {
    let Ok(line) = std::str::from_utf8(line) else {
        return RequestLine::Malformed;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return RequestLine::Malformed;
    };
    let method_is_token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let version_is_known = version == "HTTP/1.1" || version == "HTTP/1.0";
    if !method_is_token || !version_is_known {
        return RequestLine::Malformed;
    }
    match (method, Target::parse(target)) {
        ("GET" | "HEAD", Some(Target::Path(path))) => RequestLine::Get {
            path,
            head_only: method == "HEAD",
        },
        ("GET" | "HEAD", _) | (_, None) => RequestLine::Malformed,
        (_, Some(Target::Path(_)))
        | ("OPTIONS", Some(Target::Asterisk))
        | ("CONNECT", Some(Target::Authority)) => RequestLine::OtherMethod,
        (_, Some(Target::Asterisk | Target::Authority)) => RequestLine::Malformed,
    }
}

/// The request-target forms of RFC 9112 §3.2.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// Origin-form or absolute-form: the path, without its query.
    Path(&'a str),
    /// `*`.
    Asterisk,
    /// `host:port`.
    Authority,
}

impl Target<'_> {
    fn parse(target: &str) -> Option<Target<'_>> {
        if target.starts_with('/') {
            return Some(Target::Path(without_query(target)));
        }
        if target == "*" {
            return Some(Target::Asterisk);
        }
        if let Some(rest) = strip_web_scheme(target) {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path_and_query) = rest.split_at(authority_end);
            parse_authority(authority)?;
            let path = without_query(path_and_query);
            // `http://host` and `http://host?query` ask for the root.
            return Some(Target::Path(if path.is_empty() { "/" } else { path }));
        }
        // Authority-form needs the port; without one it is no form at all.
        parse_authority(target)?.map(|_port| Target::Authority)
    }
}

fn without_query(path_and_query: &str) -> &str {
    let end = path_and_query.find('?').unwrap_or(path_and_query.len());
    &path_and_query[..end]
}

/// `target` after `http://` or `https://` (the scheme in any case).
fn strip_web_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].into_iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// Checks `host[:port]` (RFC 3986 §3.2.2-3, without user information, which
/// RFC 9110 §4.2.4 says to treat as an error) and returns its port, if any.
/// The host is a name or IPv4 address of URI characters, or a bracketed IP
/// literal; it must not be empty (RFC 9110 §4.2.1).
fn parse_authority(authority: &str) -> Option<Option<&str>> {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(literal) => {
            let (address, after) = literal.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            let address_ok = address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (!address.is_empty() && address_ok, port)
        }
        None => {
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let name_ok = host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
            (!host.is_empty() && name_ok, port)
        }
    };
    let port_ok = port.is_none_or(|port| port.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%40%2b+"), Some(b"a/b@++".to_vec()));
        assert_eq!(percent_decode(""), Some(vec![]));
        for bad in ["%", "%2", "%g0", "%+1", "a%-1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_targets_parse_into_their_forms() {
        assert_eq!(Target::parse("/a?b"), Some(Target::Path("/a")));
        assert_eq!(
            Target::parse("http://h:1/a/b?c"),
            Some(Target::Path("/a/b"))
        );
        assert_eq!(Target::parse("https://h"), Some(Target::Path("/")));
        assert_eq!(Target::parse("*"), Some(Target::Asterisk));
        assert_eq!(Target::parse("h:1"), Some(Target::Authority));
        assert_eq!(Target::parse("[::1]:1"), Some(Target::Authority));
        for invalid in [
            "",
            "h",
            "h:x",
            "http://",
            "http://u@h/",
            "[::1",
            "[]:1",
            "ftp://h/",
        ] {
            assert_eq!(Target::parse(invalid), None, "{invalid}");
        }
    }
}
