//! `braid`: the command-line tool (a stub until the CLI lands).
fn main() {}
