//! Package names, validated once where bytes enter (protocol parser, log
//! decoder, admin path) by [`PackageName::new`], [`PackageName::from_text`]
//! or [`Dependencies::new`], the only ways to make one:
//!
//! ```compile_fail
//! // The field is private: only validation builds a name.
//! let empty = package_indexer::PackageName("");
//! ```

use std::fmt;

/// Longest package name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// A valid package name: 1 to 255 bytes, each one of
/// `A-Z a-z 0-9 . _ + - @ /`, borrowed from where it was read.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName<'a>(&'a str);

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'+' | b'-' | b'@' | b'/')
}

/// Whether `bytes` are a valid name (ASCII, so also valid UTF-8).
fn is_name(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() <= MAX_NAME_BYTES && bytes.iter().all(|&b| is_name_byte(b))
}

impl<'a> PackageName<'a> {
    /// `None` when `bytes` are not a valid name.
    pub fn new(bytes: &'a [u8]) -> Option<PackageName<'a>> {
        // The cheap byte rule first: a long field of garbage is refused
        // before any UTF-8 pass, which cannot fail once the rule holds.
        is_name(bytes).then(|| std::str::from_utf8(bytes).ok().map(PackageName))?
    }

    /// `None` when `text` is not a valid name: for text already checked as
    /// UTF-8, which costs a second pass over the bytes otherwise.
    pub fn from_text(text: &'a str) -> Option<PackageName<'a>> {
        is_name(text.as_bytes()).then_some(PackageName(text))
    }

    pub fn as_str(self) -> &'a str {
        self.0
    }

    pub fn as_bytes(self) -> &'a [u8] {
        self.0.as_bytes()
    }
}

impl AsRef<str> for PackageName<'_> {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl fmt::Display for PackageName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for PackageName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

/// A valid dependency field: empty, or package names separated by single
/// commas, borrowed from the request line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dependencies<'a>(&'a str);

impl<'a> Dependencies<'a> {
    /// `None` when an entry is empty or not a valid name.
    pub fn new(field: &'a [u8]) -> Option<Dependencies<'a>> {
        let mut entries = field.split(|&b| b == b',');
        if !field.is_empty() && !entries.all(is_name) {
            return None;
        }
        std::str::from_utf8(field).ok().map(Dependencies)
    }

    pub fn is_empty(self) -> bool {
        self.0.is_empty()
    }

    /// Each listed name, in order, repeats included.
    pub fn iter(self) -> impl Iterator<Item = PackageName<'a>> + Clone + 'a {
        let field = self.0;
        // Every entry was validated by `new`.
        field
            .split(',')
            .filter(move |_| !field.is_empty())
            .map(PackageName)
    }
}

#[cfg(test)]
impl PartialEq<&str> for PackageName<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
impl<'a> Dependencies<'a> {
    /// The field as it appeared on the wire.
    pub(crate) fn as_str(self) -> &'a str {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_1_to_255_name_bytes() {
        assert!(PackageName::new(b"").is_none());
        assert!(PackageName::new("a".repeat(256).as_bytes()).is_none());
        let longest = "a".repeat(255);
        assert_eq!(
            PackageName::new(longest.as_bytes()).map(|name| name.as_str().len()),
            Some(255)
        );
        assert!(PackageName::new(b"A-Za-z0-9._+-@/").is_some());
        for bad in ["a b", "a,b", "a|b", "a=b", "☃", "a\r", "a\n"] {
            assert!(PackageName::new(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn dependency_lists() {
        let list = Dependencies::new(b"gmp,isl,gmp").unwrap();
        let names: Vec<&str> = list.iter().map(PackageName::as_str).collect();
        assert_eq!(names, ["gmp", "isl", "gmp"]);
        assert_eq!(Dependencies::new(b"").unwrap().iter().count(), 0);
        for bad in ["a,,b", "a,", ",a", ",", "a b", "a,☃"] {
            assert!(Dependencies::new(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }
}
