//! Authorship commands: id, trust add|remove|list, policy.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use braidlog::{PolicyMode, PublicKey};
use clap::Subcommand;
use serde_json::json;

use crate::dag::{open_existing, open_or_create};
use crate::kv::plural;
use crate::output::Out;

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Print this replica's public key (its identity is made on first use and kept in
    /// `identity.key` in the replica's directory, readable by its owner only).
    #[command(after_help = "Example:\n  braid id")]
    Id,
    /// Manage the allow-list of author keys (used by `braid policy trusted`).
    #[command(
        after_help = "Examples:\n  braid trust add 9f0c...42\n  braid trust remove 9f0c...42\n  braid trust list"
    )]
    Trust {
        #[command(subcommand)]
        action: TrustAction,
    },
    /// Show the policy, or set it for every node stored from now on (local writes and sync):
    /// `any` (signed or not), `signed` (a valid signature by anyone), `trusted` (a valid
    /// signature by a key on the allow-list). Stored nodes are never touched.
    #[command(after_help = "Examples:\n  braid policy\n  braid policy trusted")]
    Policy {
        /// The new policy: any, signed or trusted.
        mode: Option<PolicyMode>,
    },
}

#[derive(Subcommand)]
pub enum TrustAction {
    /// Add a key (64 hex characters) to the allow-list.
    Add {
        /// The author's public key.
        key: PublicKey,
    },
    /// Remove a key from the allow-list; nodes it signed that are stored stay stored.
    Remove {
        /// The author's public key.
        key: PublicKey,
    },
    /// List the allow-list.
    List,
}

impl AuthCommand {
    pub fn run(self, dir: &Path, out: &Out) -> Result<ExitCode> {
        match self {
            AuthCommand::Id => {
                let log = open_or_create(dir)?;
                let key = log
                    .identity()?
                    .map(|id| id.public_key().to_string())
                    .unwrap_or_default();
                out.print(json!({ "public_key": key }), || key.clone())?;
            }
            AuthCommand::Trust { action } => {
                let log = open_or_create(dir)?;
                let changed = !matches!(action, TrustAction::List);
                match action {
                    TrustAction::Add { key } => log.trust(key)?,
                    TrustAction::Remove { key } => log.distrust(key)?,
                    TrustAction::List => {}
                }
                let keys: Vec<String> = log
                    .policy()?
                    .trusted
                    .iter()
                    .map(|k| k.to_string())
                    .collect();
                let value = json!({ "trusted": keys });
                if changed {
                    out.print_committed("the allow-list is saved", value, || keys.join("\n"));
                } else {
                    out.print(value, || keys.join("\n"))?;
                }
            }
            AuthCommand::Policy { mode } => {
                let log = match mode {
                    Some(_) => open_or_create(dir)?,
                    None => open_existing(dir)?,
                };
                if let Some(mode) = mode {
                    let mut policy = log.policy()?;
                    policy.mode = mode;
                    log.set_policy(&policy)?;
                }
                let policy = log.policy()?;
                let own = log.identity()?.map(|id| id.public_key());
                let locked_out = policy.mode == PolicyMode::Trusted
                    && own.is_some_and(|k| !policy.trusted.contains(&k));
                let value = json!({
                    "policy": policy.mode.to_string(),
                    "trusted": policy.trusted.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                });
                let text = || {
                    let keys = plural(policy.trusted.len() as u64, "trusted key");
                    format!("{} ({keys})", policy.mode)
                };
                if mode.is_some() {
                    out.print_committed("the policy is saved", value, text);
                } else {
                    out.print(value, text)?;
                }
                if locked_out {
                    crate::exit::warn(
                        "note: this replica's own key is not on the allow-list, so its own \
                         writes are refused (braid trust add $(braid id))",
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
