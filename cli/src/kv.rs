//! Key-value commands: put, get, del, resolve, conflicts, ls, history.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use braidlog::kv::{Entry, Op, Version, Versions};
use braidlog::{Hash, Kv};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::dag::{kv_reader, open_existing, open_or_create};
use crate::output::{json_bytes, show_author, show_bytes, Out};

/// Selects a key space.
#[derive(Args, Clone)]
pub struct Namespace {
    /// Work in this namespace (an independent key space in the same replica).
    #[arg(long = "ns", value_name = "NAME")]
    ns: Option<String>,
}

#[derive(Subcommand)]
pub enum KvCommand {
    /// Set KEY to VALUE (or the contents of --file, or stdin); prints the new node's hash.
    #[command(
        after_help = "Examples:\n  braid put color red\n  echo -n blue | braid put color\n  braid put --file photo.jpg photo"
    )]
    Put {
        /// The key.
        key: String,
        /// The value; read from --file or stdin when absent.
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Print KEY's value; on a conflict, every version with its hash.
    #[command(after_help = "Examples:\n  braid get color\n  braid --json get color")]
    Get {
        /// The key.
        key: String,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Delete KEY (a tombstone that supersedes every current version).
    #[command(after_help = "Example:\n  braid del color")]
    Del {
        /// The key.
        key: String,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Resolve a conflict on KEY: write VALUE (or keep one version with --pick, or let the
    /// deterministic policy choose with --auto), superseding every current version.
    #[command(
        after_help = "Examples:\n  braid resolve color purple\n  braid resolve color --pick 3f2a9c1b2d4e\n  braid resolve color --auto"
    )]
    Resolve {
        /// The key.
        key: String,
        /// The value that replaces all versions.
        #[arg(required_unless_present_any = ["pick", "auto"])]
        value: Option<String>,
        /// Keep the value of the version whose hash starts with this.
        #[arg(long, value_name = "HASH-PREFIX", conflicts_with_all = ["value", "auto"])]
        pick: Option<String>,
        /// Keep the version of greatest causal depth, then greatest hash (no clocks).
        #[arg(long, conflicts_with = "value")]
        auto: bool,
        #[command(flatten)]
        ns: Namespace,
    },
    /// List keys in conflict.
    #[command(after_help = "Example:\n  braid conflicts")]
    Conflicts {
        #[command(flatten)]
        ns: Namespace,
    },
    /// List keys and values in key order, optionally under PREFIX or within --from/--to.
    #[command(after_help = "Examples:\n  braid ls\n  braid ls user/\n  braid ls --from a --to m")]
    Ls {
        /// Only keys starting with this.
        prefix: Option<String>,
        /// First key (inclusive).
        #[arg(long, conflicts_with = "prefix")]
        from: Option<String>,
        /// Last key (exclusive).
        #[arg(long, conflicts_with = "prefix")]
        to: Option<String>,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Every operation on KEY, newest first, superseded ones included.
    #[command(after_help = "Example:\n  braid history color")]
    History {
        /// The key.
        key: String,
        #[command(flatten)]
        ns: Namespace,
    },
}

fn kv_in(log: &braidlog::Log, ns: &Namespace) -> Result<Kv> {
    let kv = Kv::open(log)?;
    Ok(match &ns.ns {
        Some(name) => kv.namespace(name)?,
        None => kv,
    })
}

/// The store for a read command: opened read-only where possible.
fn kv_read(dir: &Path, ns: &Namespace) -> Result<Kv> {
    let kv = kv_reader(dir)?;
    Ok(match &ns.ns {
        Some(name) => kv.namespace(name)?,
        None => kv,
    })
}

/// Who signed the node that wrote `hash`, and when they say they did.
fn authorship(log: &braidlog::Log, hash: &Hash) -> Option<braidlog::Authorship> {
    log.get(hash).ok().flatten()?.authorship().copied()
}

fn version_json(log: &braidlog::Log, v: &Version) -> Value {
    let auth = authorship(log, &v.hash);
    json!({
        "hash": v.hash.to_string(),
        "value": v.value().map(json_bytes),
        "deleted": v.is_tombstone(),
        "depth": v.depth,
        "author": auth.map(|a| a.author.to_string()),
        "timestamp_ms": auth.map(|a| a.timestamp_ms),
    })
}

fn versions_json(log: &braidlog::Log, key: &str, versions: &Versions) -> Value {
    json!({
        "key": key,
        "conflict": versions.is_conflict(),
        "versions": versions.iter().map(|v| version_json(log, v)).collect::<Vec<_>>(),
    })
}

fn show_version(v: &Version) -> String {
    match v.value() {
        Some(value) => show_bytes(value),
        None => "(deleted)".to_string(),
    }
}

/// How a key looks to a person: the value (once, even when several authors wrote it alike),
/// or a clearly marked conflict listing each version's author.
pub fn describe(log: &braidlog::Log, key: &str, versions: &Versions) -> String {
    if !versions.is_conflict() {
        return versions.iter().next().map(show_version).unwrap_or_default();
    }
    let mut s = format!(
        "CONFLICT on {key:?}: {} concurrent versions",
        versions.len()
    );
    for v in versions.iter() {
        s.push_str(&format!(
            "\n  {}  {}  ({})",
            v.hash.short(),
            show_version(v),
            show_author(authorship(log, &v.hash).as_ref())
        ));
    }
    s.push_str(&format!(
        "\nresolve with: braid resolve {key} VALUE   (or --pick HASH, or --auto)"
    ));
    s
}

fn entry_line(e: &Entry) -> String {
    let key = show_bytes(&e.key);
    if e.versions.is_conflict() {
        let values: Vec<String> = e.versions.iter().map(show_version).collect();
        format!("{key}\tCONFLICT: {}", values.join(" | "))
    } else {
        format!(
            "{key}\t{}",
            e.versions.iter().map(show_version).collect::<String>()
        )
    }
}

fn print_entries(
    log: &braidlog::Log,
    out: &Out,
    entries: impl Iterator<Item = braidlog::Result<Entry>>,
) -> Result<()> {
    for e in entries {
        let e = e?;
        let key = String::from_utf8_lossy(&e.key).into_owned();
        out.print(versions_json(log, &key, &e.versions), || entry_line(&e));
    }
    Ok(())
}

fn read_value(value: Option<String>, file: Option<PathBuf>) -> Result<Vec<u8>> {
    Ok(match (value, file) {
        (Some(v), _) => v.into_bytes(),
        (None, Some(path)) => {
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the value from stdin")?;
            buf
        }
    })
}

impl KvCommand {
    pub fn run(self, dir: &Path, out: &Out) -> Result<ExitCode> {
        match self {
            KvCommand::Put {
                key,
                value,
                file,
                ns,
            } => {
                let value = read_value(value, file)?;
                let kv = kv_in(&open_or_create(dir)?, &ns)?;
                let hash = kv.put(&key, value)?;
                out.print(json!({"key": key, "hash": hash.to_string()}), || {
                    hash.to_string()
                });
            }
            KvCommand::Get { key, ns } => {
                let kv = kv_read(dir, &ns)?;
                let Some(versions) = kv.get(&key)? else {
                    bail!("no key {key:?}")
                };
                let log = kv.log();
                out.print(versions_json(log, &key, &versions), || {
                    describe(log, &key, &versions)
                });
            }
            KvCommand::Del { key, ns } => {
                let kv = kv_in(&open_existing(dir)?, &ns)?;
                if kv.get(&key)?.is_none() {
                    bail!("no key {key:?}");
                }
                let hash = kv.del(&key)?;
                out.print(json!({"key": key, "hash": hash.to_string()}), || {
                    hash.to_string()
                });
            }
            KvCommand::Resolve {
                key,
                value,
                pick,
                auto,
                ns,
            } => {
                let kv = kv_in(&open_existing(dir)?, &ns)?;
                let resolved = if auto {
                    kv.resolve_deterministic(&key)?
                } else if let Some(prefix) = pick {
                    let versions = kv
                        .get(&key)?
                        .map(|v| v.as_slice().to_vec())
                        .unwrap_or_default();
                    let matching: Vec<&Version> = versions
                        .iter()
                        .filter(|v| v.hash.to_string().starts_with(&prefix))
                        .collect();
                    let chosen = match matching.as_slice() {
                        [one] => one.op.clone(),
                        [] => {
                            bail!("no current version of {key:?} has a hash starting with {prefix}")
                        }
                        _ => bail!(
                            "{prefix} matches {} versions of {key:?}; give more of the hash",
                            matching.len()
                        ),
                    };
                    kv.resolve(&key, |_, _| chosen.clone())?
                } else {
                    let value = value.expect("clap requires a value without --pick/--auto");
                    kv.resolve(&key, |_, _| Op::Put(value.clone().into_bytes()))?
                };
                let Some(hash) = resolved else {
                    bail!("{key:?} has no conflict (use `braid put` to change it)");
                };
                out.print(json!({"key": key, "hash": hash.to_string()}), || {
                    hash.to_string()
                });
            }
            KvCommand::Conflicts { ns } => {
                let kv = kv_read(dir, &ns)?;
                print_entries(kv.log(), out, kv.conflicts())?;
            }
            KvCommand::Ls {
                prefix,
                from,
                to,
                ns,
            } => {
                let kv = kv_read(dir, &ns)?;
                match (prefix, from, to) {
                    (Some(p), _, _) => print_entries(kv.log(), out, kv.prefix(p))?,
                    (None, Some(a), Some(b)) => print_entries(kv.log(), out, kv.range(a..b))?,
                    (None, Some(a), None) => print_entries(kv.log(), out, kv.range(a..))?,
                    (None, None, Some(b)) => print_entries(kv.log(), out, kv.range(..b))?,
                    (None, None, None) => print_entries(kv.log(), out, kv.iter())?,
                }
            }
            KvCommand::History { key, ns } => {
                let kv = kv_read(dir, &ns)?;
                for h in kv.history(&key) {
                    let h = h?;
                    let auth = authorship(kv.log(), &h.hash);
                    let op = match &h.op {
                        Op::Put(v) => json_bytes(v),
                        Op::Del => Value::Null,
                    };
                    out.print(
                        json!({
                            "seq": h.seq,
                            "hash": h.hash.to_string(),
                            "value": op,
                            "deleted": matches!(h.op, Op::Del),
                            "supersedes": h.supersedes.iter().map(Hash::to_string).collect::<Vec<_>>(),
                            "folds": h.folds.iter().map(Hash::to_string).collect::<Vec<_>>(),
                            "current": h.current,
                            "author": auth.map(|a| a.author.to_string()),
                            "timestamp_ms": auth.map(|a| a.timestamp_ms),
                        }),
                        || {
                            let what = match &h.op {
                                Op::Put(v) => format!("put {}", show_bytes(v)),
                                Op::Del => "del".to_string(),
                            };
                            let sup: Vec<String> = h.supersedes.iter().map(Hash::short).collect();
                            let mut sup = format!("supersedes [{}]", sup.join(" "));
                            if !h.folds.is_empty() {
                                // A write that superseded more versions than a node may link.
                                let folds: Vec<String> = h.folds.iter().map(Hash::short).collect();
                                sup.push_str(&format!(
                                    " and the versions under fold nodes [{}]",
                                    folds.join(" ")
                                ));
                            }
                            format!(
                                "{} {}  {:<24} {}  {}{}",
                                if h.current { "*" } else { " " },
                                h.hash.short(),
                                what,
                                sup,
                                show_author(auth.as_ref()),
                                if h.current { "  (current)" } else { "" }
                            )
                        },
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
