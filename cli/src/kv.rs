//! Key-value commands: put, get, del, resolve, conflicts, ls, history.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use braidlog::kv::{Deterministic, KvRead, MergeFn, Op, Pick};
use braidlog::Kv;
use clap::Subcommand;
use serde_json::json;

use crate::dag::{kv_reader, open_existing, open_or_create};
use crate::exit::{self, Usage};
use crate::ns;
use crate::output::{committed, Out};

pub use crate::kv_show::{describe, no_key, plural, show_key};
use crate::kv_show::{history_line, print_entries, versions_json, written_json};

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
    },
    /// Print KEY's value; on a conflict, every version with its hash (exit status 4).
    #[command(
        after_help = "Examples:\n  braid get color\n  braid --ns app --json get color\n\nExit status: 0 a value, 3 no such key, 4 a conflict (every version is printed)."
    )]
    Get {
        /// The key.
        key: String,
    },
    /// Delete KEY (a tombstone that supersedes every current version).
    #[command(after_help = "Example:\n  braid del color")]
    Del {
        /// The key.
        key: String,
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
    },
    /// List keys in conflict, in every namespace (or only in --ns).
    #[command(after_help = "Examples:\n  braid conflicts\n  braid --ns app conflicts")]
    Conflicts,
    /// List keys and values in key order, optionally under PREFIX or within --from/--to; every
    /// namespace in turn (the root first), or only --ns.
    #[command(
        after_help = "Examples:\n  braid ls\n  braid ls user/\n  braid --ns app ls --from a --to m"
    )]
    Ls {
        /// Only keys starting with this.
        prefix: Option<String>,
        /// First key (inclusive).
        #[arg(long, conflicts_with = "prefix")]
        from: Option<String>,
        /// Last key (exclusive).
        #[arg(long, conflicts_with = "prefix")]
        to: Option<String>,
    },
    /// Every operation on KEY, newest first, superseded ones included, with causal depth.
    #[command(after_help = "Example:\n  braid history color")]
    History {
        /// The key.
        key: String,
    },
    /// List the namespaces that hold keys, with how many keys and conflicts each has.
    #[command(after_help = "Example:\n  braid ns")]
    Ns,
    /// Print each new operation on a key (under PREFIX) as it is stored: written here, by
    /// another process, or received from a peer by `serve` or `sync --live`. Runs until
    /// Ctrl-C; every namespace, or only --ns.
    #[command(after_help = "Examples:\n  braid watch\n  braid --ns app --json watch user/")]
    Watch(crate::watch::WatchArgs),
}

fn kv_in(log: &braidlog::Log, ns: Option<&str>) -> Result<Kv> {
    ns::select(Kv::open(log)?, ns)
}

/// The store for a read command: opened read-only where possible.
fn kv_read(dir: &Path, ns: Option<&str>) -> Result<Kv> {
    ns::select(kv_reader(dir)?, ns)
}

/// Runs `each` on the namespace `--ns` names, or on every namespace (with the tag that
/// names it in text listings).
fn for_namespaces(
    root: &Kv,
    ns: Option<&str>,
    mut each: impl FnMut(&Kv, &str) -> Result<()>,
) -> Result<()> {
    if ns.is_some() {
        return each(&ns::select(root.clone(), ns)?, "");
    }
    for item in ns::all(root) {
        let (path, kv) = item?;
        each(&kv, &ns::tag(&path))?;
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
    pub fn run(self, dir: &Path, ns: Option<&str>, out: &Out) -> Result<ExitCode> {
        match self {
            KvCommand::Put { key, value, file } => {
                let value = read_value(value, file)?;
                let kv = kv_in(&open_or_create(dir)?, ns)?;
                let hash = kv.put(&key, value)?;
                out.print_committed(&committed(&hash), written_json(&kv, &key, &hash), || {
                    hash.to_string()
                });
            }
            KvCommand::Get { key } => {
                let kv = kv_read(dir, ns)?;
                let Some(versions) = kv.get(&key)? else {
                    return Err(no_key(&kv, &key, "get"));
                };
                out.print(versions_json(&kv, key.as_bytes(), &versions), || {
                    describe(&kv, &key, &versions)
                })?;
                if versions.is_conflict() {
                    return Ok(ExitCode::from(exit::CONFLICT));
                }
            }
            KvCommand::Del { key } => {
                let kv = kv_in(&open_existing(dir)?, ns)?;
                if kv.get(&key)?.is_none() {
                    return Err(no_key(&kv, &key, "del"));
                }
                let hash = kv.del(&key)?;
                out.print_committed(&committed(&hash), written_json(&kv, &key, &hash), || {
                    hash.to_string()
                });
            }
            KvCommand::Resolve {
                key,
                value,
                pick,
                auto,
            } => {
                let kv = kv_in(&open_existing(dir)?, ns)?;
                if kv.get(&key)?.is_none() {
                    return Err(no_key(&kv, &key, "resolve"));
                }
                let resolved = if auto {
                    kv.resolve(&key, Deterministic)?
                } else if let Some(prefix) = pick {
                    // The lookup and the write in one transaction: a version that arrives in
                    // between cannot be superseded unseen.
                    kv.resolve(&key, Pick(&prefix.to_ascii_lowercase()))?
                } else {
                    let value = value.expect("clap requires a value without --pick/--auto");
                    kv.resolve(
                        &key,
                        MergeFn::new(|_, _| Op::Put(value.clone().into_bytes())),
                    )?
                };
                let Some(hash) = resolved else {
                    bail!(
                        "{key:?} has no conflict (change it with `braid {}put {} VALUE`)",
                        ns::flag(kv.namespace_path()),
                        ns::shell_word(&key)
                    );
                };
                out.print_committed(&committed(&hash), written_json(&kv, &key, &hash), || {
                    hash.to_string()
                });
            }
            KvCommand::Conflicts => {
                let root = kv_reader(dir)?;
                for_namespaces(&root, ns, |kv, tag| {
                    print_entries(kv, tag, out, kv.conflicts())
                })?;
            }
            KvCommand::Ls { prefix, from, to } => {
                let root = kv_reader(dir)?;
                for_namespaces(&root, ns, |kv, tag| {
                    let entries = match (&prefix, &from, &to) {
                        (Some(p), _, _) => kv.prefix(p),
                        (None, Some(a), Some(b)) => kv.range(a.as_str()..b.as_str()),
                        (None, Some(a), None) => kv.range(a.as_str()..),
                        (None, None, Some(b)) => kv.range(..b.as_str()),
                        (None, None, None) => kv.iter(),
                    };
                    print_entries(kv, tag, out, entries)
                })?;
            }
            KvCommand::History { key } => {
                let kv = kv_read(dir, ns)?;
                let mut any = false;
                for h in kv.history(&key) {
                    let h = h?;
                    any = true;
                    history_line(&kv, &key, &h, out)?;
                }
                if !any {
                    return Err(no_key(&kv, &key, "history"));
                }
            }
            KvCommand::Ns => {
                if ns.is_some() {
                    return Err(Usage("`braid ns` lists every namespace: drop --ns".into()).into());
                }
                let root = kv_reader(dir)?;
                for item in ns::all(&root) {
                    let (path, kv) = item?;
                    let n = kv.counts()?;
                    out.print(
                        json!({"ns": ns::to_json(&path), "keys": n.keys, "conflicts": n.conflicts}),
                        || {
                            format!(
                                "{}\t{}\t{}",
                                ns::label(&path).unwrap_or_else(|| "(root)".into()),
                                plural(n.keys, "key"),
                                plural(n.conflicts, "conflict")
                            )
                        },
                    )?;
                }
            }
            KvCommand::Watch(args) => return crate::watch::run(args, dir, ns, out),
        }
        Ok(ExitCode::SUCCESS)
    }
}
