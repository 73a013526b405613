//! `braid`: the braidlog command line. Thin over the library: each command is a few calls.

mod auth;
mod dag;
mod demo;
mod iroh;
mod kv;
mod limits;
mod net;
mod output;
mod salvage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::Out;

/// Replicated, auditable history without a master.
#[derive(Parser)]
#[command(name = "braid", version, about, long_about = None)]
struct Cli {
    /// The replica's directory.
    #[arg(long, global = true, env = "BRAID_DIR", default_value = ".braid")]
    dir: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
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
    let cli = Cli::parse();
    let out = Out::new(cli.json);
    let result = match cli.command {
        Command::Kv(cmd) => cmd.run(&cli.dir, &out),
        Command::Dag(cmd) => cmd.run(&cli.dir, &out),
        Command::Net(cmd) => cmd.run(&cli.dir, &out),
        Command::Auth(cmd) => cmd.run(&cli.dir, &out),
        Command::Demo => demo::run(),
        Command::Salvage(cmd) => cmd.run(&out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("braid: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
