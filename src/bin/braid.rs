//! The `braid` command-line tool (a placeholder until the CLI lands).

fn main() {}
