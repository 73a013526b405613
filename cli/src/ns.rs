//! Namespaces as the command line shows and selects them.
//!
//! The command line names one level (`--ns NAME`); paths of several levels, which library
//! users may write, are shown with their levels joined by `/`. The root namespace has no name:
//! JSON gives it as `null`, text leaves it out.

use anyhow::Result;
use braidlog::Kv;
use serde_json::{json, Value};

use crate::exit::Usage;
use crate::output::show_bytes;

/// The name of an encoded namespace path, `None` for the root.
pub fn label(path: &[u8]) -> Option<String> {
    let info_levels = levels(path);
    (!info_levels.is_empty()).then(|| {
        info_levels
            .iter()
            .map(|l| show_bytes(l))
            .collect::<Vec<_>>()
            .join("/")
    })
}

pub use braidlog::kv::namespace_levels as levels;

/// The namespace as JSON: its name, or `null` for the root.
pub fn to_json(path: &[u8]) -> Value {
    json!(label(path))
}

/// `[name] ` before a key in listings that span namespaces; nothing for the root.
pub fn tag(path: &[u8]) -> String {
    label(path).map(|l| format!("[{l}] ")).unwrap_or_default()
}

/// `--dir DIR ` when the replica was named on the command line: a hint must act on the same
/// replica. Set once, at start.
pub static DIR_FLAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The global options a hint needs to act on this namespace of this replica: `--dir DIR `
/// (when given on the command line) and `--ns NAME ` (outside the root), or nothing.
pub fn flag(path: &[u8]) -> String {
    let dir = DIR_FLAG.get().map(String::as_str).unwrap_or_default();
    let ns = label(path)
        .map(|l| format!("--ns {} ", shell_word(&l)))
        .unwrap_or_default();
    format!("{dir}{ns}")
}

/// `s` as one shell word: as is when plain, else single-quoted.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The key-value store in the namespace `--ns` names (the root without it).
pub fn select(kv: Kv, ns: Option<&str>) -> Result<Kv> {
    match ns {
        None => Ok(kv),
        Some("") => Err(Usage(
            "--ns needs a name (without --ns, commands use the root namespace)".into(),
        )
        .into()),
        Some(name) => Ok(kv.namespace(name)?),
    }
}

/// Every namespace that has ever held a key (the root first), each as its encoded path and a
/// handle on it. One seek per namespace: nothing is collected up front.
pub fn all(root: &Kv) -> impl Iterator<Item = Result<(Vec<u8>, Kv)>> + '_ {
    let mut after: Option<Vec<u8>> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let step = (|| -> Result<Option<(Vec<u8>, Kv)>> {
            let Some(path) = root.next_namespace(after.as_deref())? else {
                return Ok(None);
            };
            let mut kv = root.clone();
            for level in levels(&path) {
                kv = kv.namespace(level)?;
            }
            after = Some(path.clone());
            Ok(Some((path, kv)))
        })();
        match step {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_flags() {
        assert_eq!(label(b""), None);
        assert_eq!(label(b"\x03app"), Some("app".into()));
        assert_eq!(label(b"\x03app\x04deep"), Some("app/deep".into()));
        assert_eq!(flag(b"\x06my app"), "--ns 'my app' ");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
