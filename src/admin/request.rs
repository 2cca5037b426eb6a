//! The request line of an admin request, read as far as routing needs.

/// `%XX` escapes decoded (RFC 3986 §2.1); `None` for a malformed one.
/// Other bytes stay as they are (`+` is a plus, not a space, in a path).
pub(super) fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let hex_digit = |byte: Option<u8>| char::from(byte?).to_digit(16);
    let mut decoded = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        decoded.push(match byte {
            b'%' => u8::try_from(hex_digit(bytes.next())? * 16 + hex_digit(bytes.next())?).ok()?,
            byte => byte,
        });
    }
    Some(decoded)
}

/// A request line as far as routing needs it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RequestLine<'a> {
    /// `GET` or `HEAD` of a path, its query dropped.
    Get {
        path: &'a str,
        head_only: bool,
    },
    /// A well-formed request with a method this server does not serve.
    OtherMethod,
    Malformed,
}

/// Reads `METHOD TARGET HTTP/1.x`. The target must be in origin form
/// (`/path?query`) or absolute form (`http://host:port/path?query`, or
/// `https`; the host is ignored as RFC 9112 §3.2.2 asks).
pub(super) fn parse_request_line(line: &[u8]) -> RequestLine<'_> {
    let Ok(line) = std::str::from_utf8(line) else {
        return RequestLine::Malformed;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some("HTTP/1.1" | "HTTP/1.0"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return RequestLine::Malformed;
    };
    let method_is_token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    match (method, target_path(target)) {
        (_, None) => RequestLine::Malformed,
        _ if !method_is_token => RequestLine::Malformed,
        ("GET" | "HEAD", Some(path)) => RequestLine::Get {
            path,
            head_only: method == "HEAD",
        },
        _ => RequestLine::OtherMethod,
    }
}

/// The path a target in origin or absolute form names, without its query;
/// `None` for any other target.
fn target_path(target: &str) -> Option<&str> {
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        let known = ["http", "https"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme));
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        // A user name in the authority is an error (RFC 9110 §4.2.4).
        if !known || authority.is_empty() || authority.contains('@') {
            return None;
        }
        path
    };
    let path = path_and_query.split('?').next().unwrap_or_default();
    // `http://host` and `http://host?query` ask for the root.
    Some(if path.is_empty() { "/" } else { path })
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
    fn targets_in_origin_and_absolute_form_give_their_path() {
        assert_eq!(target_path("/a?b"), Some("/a"));
        assert_eq!(target_path("http://h:1/a/b?c"), Some("/a/b"));
        assert_eq!(target_path("HTTPS://h"), Some("/"));
        assert_eq!(target_path("http://h?x"), Some("/"));
        for invalid in [
            "",
            "h",
            "*",
            "h:1",
            "[::1]:1",
            "http://",
            "http://u@h/",
            "ftp://h/",
        ] {
            assert_eq!(target_path(invalid), None, "{invalid}");
        }
    }
}
