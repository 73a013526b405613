//! `braid salvage`: copy the genuine nodes of a damaged replica into a new one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use braidlog::Log;
use serde_json::json;

use crate::output::Out;

/// Copy every node of a damaged replica whose bytes hash-check into a new replica. The damaged
/// file is read without LMDB, so a damaged page cannot crash this command; sync the new
/// replica with a peer afterwards to bring back what could not be saved.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  braid salvage --from .braid --to .braid-saved\n  braid --dir .braid-saved sync 10.0.0.2:7411"
)]
pub struct SalvageArgs {
    /// The damaged replica's directory (only read).
    #[arg(long)]
    from: PathBuf,
    /// A new directory for the salvaged replica (must not hold a replica yet).
    #[arg(long)]
    to: PathBuf,
}

impl SalvageArgs {
    #[cfg(not(all(unix, target_pointer_width = "64", target_endian = "little")))]
    pub fn run(self, _: &Out) -> Result<ExitCode> {
        bail!("salvage reads LMDB's layout of 64-bit little-endian Unix machines only")
    }

    #[cfg(all(unix, target_pointer_width = "64", target_endian = "little"))]
    pub fn run(self, out: &Out) -> Result<ExitCode> {
        if !self.from.join("data.mdb").is_file() {
            bail!("no replica at {} (no data.mdb)", self.from.display());
        }
        if self.to.join("data.mdb").exists() {
            bail!(
                "{} already holds a replica: salvage into a new directory",
                self.to.display()
            );
        }
        let to = Log::open(&self.to).with_context(|| format!("creating {}", self.to.display()))?;
        let r = braidlog::salvage(&self.from, &to)
            .with_context(|| format!("salvaging {}", self.from.display()))?;
        out.print_committed(
            "the salvage is done",
            json!({"saved": r.saved, "skipped": r.skipped, "damaged": r.damaged,
                   "from_page_scan": r.from_page_scan, "tree_problem": r.tree_problem,
                   "to": self.to.display().to_string()}),
            || {
                let mut text = format!(
                    "saved {} nodes into {}; skipped {} (a linked node was lost); {} damaged",
                    r.saved,
                    self.to.display(),
                    r.skipped,
                    r.damaged
                );
                if r.from_page_scan > 0 {
                    text += &format!("; {} found outside the feed tree", r.from_page_scan);
                }
                if let Some(p) = &r.tree_problem {
                    text += &format!("\nthe feed tree is damaged ({p}): the pages were scanned");
                }
                if r.skipped > 0 || r.damaged > 0 || r.tree_problem.is_some() {
                    text += "\nsync the new replica with a peer to restore the rest";
                }
                text
            },
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// LMDB follows page numbers through a memory map without checks, so a damaged page inside a
/// B-tree (which the checks at open do not read) can end a command with SIGBUS or SIGSEGV.
/// Instead of dying silently by a signal, the command then prints one line saying what
/// probably happened and what to do, and exits with status 70.
pub fn report_crashes_on_damaged_files() {
    #[cfg(unix)]
    install();
}

#[cfg(unix)]
fn install() {
    extern "C" fn on_fault(signal: libc::c_int) {
        let message: &[u8] = if signal == libc::SIGBUS {
            b"braid: SIGBUS reading the replica's data file: it is probably truncated or damaged; run `braid verify`, and `braid salvage --from DIR --to NEW_DIR` to save its nodes\n"
        } else {
            b"braid: SIGSEGV, probably reading a damaged data file; run `braid verify`, and `braid salvage --from DIR --to NEW_DIR` to save its nodes\n"
        };
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the message is a static buffer.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(70);
        }
    }
    for signal in [libc::SIGBUS, libc::SIGSEGV] {
        // SAFETY: the handler only calls async-signal-safe functions (see above) and never
        // returns, so no state of the interrupted code is observed or resumed.
        unsafe {
            libc::signal(signal, on_fault as *const () as libc::sighandler_t);
        }
    }
}
