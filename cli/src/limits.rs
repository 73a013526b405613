//! The limit flags shared by `serve` and `sync`, and their parsers.

use std::time::Duration;

use braidlog::sync::{SyncOptions, DEFAULT_MAX_CONNECTIONS};
use clap::Args;

/// Timeouts of one session (both sides).
#[derive(Args, Debug, Clone)]
pub struct Timeouts {
    /// Give up on a peer whose hello has not arrived this long after connecting
    /// (e.g. 500ms, 20s, 2m; 0 waits forever).
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "20s")]
    pub handshake_timeout: Limit,
    /// Give up on a peer when nothing moves either way for this long before the session is
    /// live (0 waits forever).
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "60s")]
    pub idle_timeout: Limit,
}

impl Timeouts {
    pub fn apply(&self, o: &mut SyncOptions) {
        o.handshake_timeout = self.handshake_timeout.0;
        o.idle_timeout = self.idle_timeout.0;
    }
}

/// What a server allows all its peers together.
#[derive(Args, Debug, Clone)]
pub struct ServerLimits {
    /// Sessions at once; further connections wait to be accepted until one ends.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one)]
    pub max_connections: usize,
    /// Peer data all sessions may buffer together beyond 64 KiB each (e.g. 64MiB, 1GiB;
    /// at least 8MiB).
    #[arg(long, value_name = "BYTES", value_parser = bytes, default_value = "128MiB")]
    pub memory_budget: usize,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?}: give a whole number of at least 1")),
    }
}

/// A timeout flag's value: `None` waits forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<Duration>);

/// `0` (none), or a number with `ms`, `s`, `m` or `h`.
fn duration(s: &str) -> Result<Limit, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Limit(None));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: give a unit: ms, s, m or h (0 for none)")),
    };
    Ok(Limit(Some(d)))
}

/// A byte count, optionally with `KiB`, `MiB` or `GiB`.
fn bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: usize = n.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let shift = match unit {
        "" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => {
            return Err(format!(
                "{s:?}: give a unit: KiB, MiB or GiB, or plain bytes"
            ))
        }
    };
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use braidlog::sync::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MEMORY_BUDGET};

    /// The flags' written defaults are the library's.
    #[test]
    fn defaults_match_the_library() {
        assert_eq!(duration("20s"), Ok(Limit(Some(DEFAULT_HANDSHAKE_TIMEOUT))));
        assert_eq!(duration("60s"), Ok(Limit(Some(DEFAULT_IDLE_TIMEOUT))));
        assert_eq!(bytes("128MiB"), Ok(DEFAULT_MEMORY_BUDGET));
    }

    #[test]
    fn parsers() {
        assert_eq!(duration("0"), Ok(Limit(None)));
        assert_eq!(
            duration("500ms"),
            Ok(Limit(Some(Duration::from_millis(500))))
        );
        assert_eq!(duration("2m"), Ok(Limit(Some(Duration::from_secs(120)))));
        assert!(duration("20").is_err() && duration("s").is_err());
        assert_eq!(bytes("64MiB"), Ok(64 << 20));
        assert_eq!(bytes("1000"), Ok(1000));
        assert!(bytes("1TB").is_err() && bytes("99999999999999GiB").is_err());
    }
}
