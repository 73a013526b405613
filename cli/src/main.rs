//! `braid`: the braidlog command line. Thin over the library: each command is a few calls.

mod auth;
mod dag;
mod demo;
mod exit;
mod graph;
mod iroh;
mod kv;
mod kv_show;
mod limits;
mod net;
mod net_report;
mod ns;
mod output;
mod salvage;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use output::Out;

/// Replicated, auditable history without a master.
#[derive(Parser)]
#[command(
    name = "braid",
    version,
    about,
    long_about = None,
    after_help = "Exit status: 0 success, 1 failure, 2 bad usage, 3 not found, 4 conflict (get)."
)]
struct Cli {
    /// The replica's directory.
    #[arg(long, global = true, env = "BRAID_DIR", default_value = ".braid")]
    dir: PathBuf,
    /// Print machine-readable JSON instead of text (one document per line for lists).
    #[arg(long, global = true)]
    json: bool,
    /// Work in this namespace (an independent key space in the same replica). Without it,
    /// key commands use the root namespace, and `ls`, `conflicts` and `watch` every one.
    #[arg(long = "ns", global = true, value_name = "NAME")]
    ns: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Three replicas write concurrently, sync over loopback TCP in a line, show a conflict,
    /// resolve it and converge.
    #[command(after_help = "Example:\n  braid demo")]
    Demo,
    #[command(flatten)]
    Kv(kv::KvCommand),
    #[command(flatten)]
    Dag(dag::DagCommand),
    #[command(flatten)]
    Net(net::NetCommand),
    #[command(flatten)]
    Auth(auth::AuthCommand),
    Salvage(salvage::SalvageArgs),
}

fn main() -> ExitCode {
    salvage::report_crashes_on_damaged_files();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if matches.value_source("dir") == Some(ValueSource::CommandLine) {
        let dir = ns::shell_word(&cli.dir.to_string_lossy());
        let _ = ns::DIR_FLAG.set(format!("--dir {dir} "));
    }
    let out = Out::new(cli.json);
    let ns = cli.ns.as_deref();
    let result = match cli.command {
        Command::Net(_) | Command::Auth(_) | Command::Demo | Command::Salvage(_)
            if ns.is_some() =>
        {
            Err(exit::Usage("--ns selects keys: this command has none".into()).into())
        }
        Command::Kv(cmd) => cmd.run(&cli.dir, ns, &out),
        Command::Dag(cmd) => cmd.run(&cli.dir, ns, &out),
        Command::Net(cmd) => cmd.run(&cli.dir, &out),
        Command::Auth(cmd) => cmd.run(&cli.dir, &out),
        Command::Demo if cli.json => Err(exit::Usage(
            "demo is a walkthrough for people and has no JSON output: drop --json".into(),
        )
        .into()),
        Command::Demo => demo::run(),
        Command::Salvage(cmd) => cmd.run(&out),
    };
    match result {
        Ok(code) => code,
        Err(e) => match exit::status_of(&e) {
            None => ExitCode::SUCCESS,
            Some(status) => {
                exit::warn(&exit::message(&e));
                ExitCode::from(status)
            }
        },
    }
}
