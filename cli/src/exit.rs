//! Exit statuses, and how an error becomes one line on stderr and a status.
//!
//! | status | meaning |
//! | --- | --- |
//! | 0 | success (also when the reader of stdout went away: `braid ls \| head -1`) |
//! | 1 | failure: the command did not do what it was asked |
//! | 2 | usage: bad arguments or flags, an ambiguous or malformed hash prefix |
//! | 3 | not found: no such key, node or replica |
//! | 4 | conflict: `get` found concurrent versions (printed as usual) |
//! | 70 | crashed on a damaged file (see `salvage.rs`) |

use std::fmt;

use braidlog::{KvError, LookupError};

pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
pub const NOT_FOUND: u8 = 3;
pub const CONFLICT: u8 = 4;

/// Something the user asked for is not there (exit status [`NOT_FOUND`]).
#[derive(Debug)]
pub struct NotFound(pub String);

/// The arguments cannot be acted on (exit status [`USAGE`]).
#[derive(Debug)]
pub struct Usage(pub String);

/// Writing to stdout failed: told apart from the same I/O errors on a socket or file.
#[derive(Debug)]
pub struct StdoutError(pub std::io::Error);

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for StdoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writing to stdout: {}", self.0)
    }
}

impl std::error::Error for NotFound {}
impl std::error::Error for Usage {}
impl std::error::Error for StdoutError {}

/// The status for an error, or `None` when the command should end quietly with success (its
/// reader went away: nothing more is wanted, and what was asked is done).
pub fn status_of(e: &anyhow::Error) -> Option<u8> {
    for cause in e.chain() {
        if let Some(StdoutError(io)) = cause.downcast_ref() {
            return (io.kind() != std::io::ErrorKind::BrokenPipe).then_some(FAILURE);
        }
        if cause.is::<NotFound>() {
            return Some(NOT_FOUND);
        }
        if cause.is::<Usage>() {
            return Some(USAGE);
        }
        // Each layer returns its own error; the umbrella `braidlog::Error` holds the same
        // kinds, for errors that went through it.
        let umbrella = cause.downcast_ref::<braidlog::Error>();
        let kv = cause.downcast_ref::<KvError>().or(match umbrella {
            Some(braidlog::Error::Kv(kv)) => Some(kv),
            _ => None,
        });
        match kv {
            Some(KvError::NoSuchVersion { .. }) => return Some(NOT_FOUND),
            Some(KvError::AmbiguousVersion { .. }) => return Some(USAGE),
            _ => {}
        }
        let lookup = cause.downcast_ref::<LookupError>().or(match umbrella {
            Some(braidlog::Error::Lookup(lookup)) => Some(lookup),
            _ => None,
        });
        if let Some(lookup) = lookup {
            return Some(match lookup {
                LookupError::NotFound { .. } => NOT_FOUND,
                LookupError::Store(_) => FAILURE,
                _ => USAGE,
            });
        }
    }
    Some(FAILURE)
}

/// One line: the error and its causes, each cause once. Errors that wrap another often
/// repeat its text in their own (`i/o error: Connection refused`), so a cause whose text
/// the line already ends with is left out.
pub fn message(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// A note on stderr that cannot fail the command (stderr may be closed too).
pub fn warn(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "braid: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_causes_are_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = anyhow::Error::new(braidlog::SyncError::<braidlog::LogError>::from(io))
            .context("syncing with x");
        assert_eq!(message(&e).matches("refused").count(), 1, "{}", message(&e));
    }

    #[test]
    fn statuses() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(status_of(&anyhow::Error::new(StdoutError(pipe))), None);
        let full = std::io::Error::other("no space");
        assert_eq!(
            status_of(&anyhow::Error::new(StdoutError(full))),
            Some(FAILURE)
        );
        // A peer that hung up is a failure, not a reader that went away.
        let peer = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(status_of(&anyhow::Error::new(peer)), Some(FAILURE));
        let nf = anyhow::Error::new(NotFound("x".into())).context("reading");
        assert_eq!(status_of(&nf), Some(NOT_FOUND));
        // A layer's own error and the umbrella's are classified alike.
        let no_version = || KvError::NoSuchVersion {
            key: b"k".to_vec(),
            prefix: "abcd".into(),
        };
        assert_eq!(
            status_of(&anyhow::Error::new(no_version())),
            Some(NOT_FOUND)
        );
        let wrapped = braidlog::Error::from(no_version());
        assert_eq!(status_of(&anyhow::Error::new(wrapped)), Some(NOT_FOUND));
        let ambiguous = KvError::AmbiguousVersion {
            key: b"k".to_vec(),
            prefix: "ab".into(),
            matches: 2,
        };
        let ambiguous = anyhow::Error::new(ambiguous).context("resolving");
        assert_eq!(status_of(&ambiguous), Some(USAGE));
        let missing = LookupError::NotFound {
            prefix: "abcd".into(),
        };
        assert_eq!(
            status_of(&anyhow::Error::new(braidlog::Error::from(missing))),
            Some(NOT_FOUND)
        );
    }
}
