//! braidlog beside automerge, iroh-docs and negentropy on the same workloads, each side of
//! every workload in its own process (so each peak memory figure belongs to one side).
//!
//! ```text
//! cd benches/peers && cargo run --release                 # 10^4 and 10^5, every peer
//! cargo run --release -- 10000                            # chosen sizes
//! BRAID_PEERS=braidlog cargo run --release -- 1000000     # chosen peers
//! cargo run --release -- replicas                         # 2, 8, 32 braidlog replicas
//! ```
//!
//! Workloads for each n: write n key updates on replica a (durable, `BATCH` per commit);
//! clone a into an empty b; the already-in-sync check, with the state the clone left and with
//! it forgotten; two-sided divergence of 1,000 + 1,000 with the state remembered from the
//! previous sync, then with it forgotten. Every update
//! writes a key of its own with a 100-byte value that does not compress.

mod am;
mod braid;
mod harness;
mod iroh;
mod neg;
mod replicas;
mod table;
#[path = "../../common/workload.rs"]
mod workload;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use harness::{AnonSampler, Outcome};
use table::{Row, Side};

/// `braidlog-unsigned` is braidlog with signing turned off (`Log::set_identity(None)`): what
/// a signature on every update costs.
pub const PEERS: [&str; 5] = [
    "braidlog",
    "braidlog-unsigned",
    "automerge",
    "iroh-docs",
    "negentropy",
];
/// Updates each side writes in the two-sided workloads.
const DIVERGE: u64 = 1_000;

fn child_write(args: &[String]) {
    let sampler = AnonSampler::start();
    let (dir, first, count) = (
        Path::new(&args[1]),
        args[2].parse().unwrap(),
        args[3].parse().unwrap(),
    );
    let out = match args[0].as_str() {
        "braidlog" => braid::write(dir, first, count, braidlog::Durability::Sync, true),
        "braidlog-unsigned" => braid::write(dir, first, count, braidlog::Durability::Sync, false),
        "automerge" => am::write(dir, first, count),
        "iroh-docs" => iroh::write(dir, first, count),
        "negentropy" => neg::write(dir, first, count),
        p => panic!("unknown peer {p}"),
    };
    out.print(sampler.finish());
}

fn child_side(args: &[String]) {
    let sampler = AnonSampler::start();
    let dir = Path::new(&args[1]);
    let port = args.get(2).map(|p| p.parse().unwrap());
    let out = match args[0].as_str() {
        "braidlog" | "braidlog-unsigned" => braid::side(dir, port),
        "automerge" => am::side(dir, port),
        "iroh-docs" => iroh::side(dir, port),
        "negentropy" => neg::side(dir, port),
        p => panic!("unknown peer {p}"),
    };
    out.print(sampler.finish());
}

fn parse(stdout: &str, who: &str) -> Side {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("{who}: no result"));
    let f: Vec<&str> = line.split_whitespace().collect();
    let u = |i: usize| f[i].parse::<u64>().unwrap();
    Side {
        out: Outcome {
            secs: f[0].parse().unwrap(),
            round_trips: u(1),
            bytes_sent: u(2),
            bytes_received: u(3),
            moved: u(4),
        },
        vmhwm_kib: u(5),
        anon_kib: u(6),
    }
}

fn write(peer: &str, dir: &Path, first: u64, count: u64) -> Side {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--write", peer])
        .arg(dir)
        .args([first.to_string(), count.to_string()])
        .output()
        .unwrap();
    if !out.status.success() {
        panic!(
            "{peer} write failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout), peer)
}

/// One sync between `a` (listening) and `b` (connecting), each side its own process.
fn sync(peer: &str, a: &Path, b: &Path) -> (Side, Side) {
    let exe = std::env::current_exe().unwrap();
    let mut server = Command::new(&exe)
        .args(["--side", peer])
        .arg(a)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .strip_prefix("PORT ")
        .expect("server prints its port")
        .trim()
        .to_string();
    let client = Command::new(&exe)
        .args(["--side", peer])
        .arg(b)
        .arg(&port)
        .output()
        .unwrap();
    assert!(client.status.success(), "{peer} connecting side failed");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(
        server.wait().unwrap().success(),
        "{peer} serving side failed"
    );
    (
        parse(&rest, peer),
        parse(&String::from_utf8_lossy(&client.stdout), peer),
    )
}

fn forget(peer: &str, a: &Path, b: &Path) {
    match peer {
        "braidlog" | "braidlog-unsigned" => braid::forget(a, b),
        "automerge" => {
            am::forget(a);
            am::forget(b);
        }
        // iroh-docs and negentropy keep no per-peer state: every sync is first contact.
        _ => {}
    }
}

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("BRAID_BENCH_DIR") {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .unwrap()
}

/// Every workload of one peer at size `n`.
fn workloads(peer: &str, n: u64, rows: &mut Vec<Row>) {
    let root = tempdir();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    if peer == "iroh-docs" {
        iroh::setup(&a, &b);
    }
    let mut push = |name: &str, a: Side, b: Option<Side>| {
        let row = Row {
            peer: peer.into(),
            n,
            workload: name.into(),
            a,
            b,
        };
        row.print();
        rows.push(row);
    };
    push("write", write(peer, &a, 0, n), None);
    let (sa, sb) = sync(peer, &a, &b);
    push("clone", sa, Some(sb));
    let (sa, sb) = sync(peer, &a, &b);
    push("in sync", sa, Some(sb));
    forget(peer, &a, &b);
    let (sa, sb) = sync(peer, &a, &b);
    push("in sync, no state", sa, Some(sb));
    for (round, name) in [(1u64, "two-sided remembered"), (2, "two-sided no state")] {
        write(peer, &a, (2 * round) << 32, DIVERGE);
        write(peer, &b, ((2 * round + 1) << 32) + 1, DIVERGE);
        if round == 2 {
            forget(peer, &a, &b);
        }
        let (sa, sb) = sync(peer, &a, &b);
        push(name, sa, Some(sb));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write") {
        return child_write(&args[i + 1..]);
    }
    if let Some(i) = args.iter().position(|a| a == "--side") {
        return child_side(&args[i + 1..]);
    }
    if args.iter().any(|a| a == "replicas") {
        return replicas::run();
    }
    let sizes: Vec<u64> = args
        .iter()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    let peers: Vec<String> = match std::env::var("BRAID_PEERS") {
        Ok(list) => list.split(',').map(str::to_string).collect(),
        Err(_) => PEERS.iter().map(|p| p.to_string()).collect(),
    };
    table::preamble(&sizes, &peers);
    let mut rows = Vec::new();
    for &n in &sizes {
        for peer in &peers {
            workloads(peer, n, &mut rows);
        }
    }
    table::side_by_side(&rows);
}
