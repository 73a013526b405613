//! The rows of the side-by-side run and the markdown table they make.

use crate::harness::Outcome;

/// What one process of a workload printed.
#[derive(Debug, Clone)]
pub struct Side {
    pub out: Outcome,
    pub vmhwm_kib: u64,
    pub anon_kib: u64,
}

/// One workload of one peer: `a` the writer (or the listening side of a sync), `b` the
/// connecting side.
pub struct Row {
    pub peer: String,
    pub n: u64,
    pub workload: String,
    pub a: Side,
    pub b: Option<Side>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Row {
    fn sides(&self) -> impl Iterator<Item = &Side> {
        std::iter::once(&self.a).chain(self.b.as_ref())
    }
    pub fn secs(&self) -> f64 {
        self.sides().map(|s| s.out.secs).fold(0.0, f64::max)
    }
    pub fn round_trips(&self) -> u64 {
        self.sides().map(|s| s.out.round_trips).max().unwrap_or(0)
    }
    pub fn wire(&self) -> u64 {
        self.sides().map(|s| s.out.bytes_sent).sum()
    }
    pub fn moved(&self) -> u64 {
        match &self.b {
            None => self.a.out.moved,
            Some(b) => self.a.out.moved + b.out.moved,
        }
    }
    /// The larger peak of allocated memory of the two sides.
    pub fn anon(&self) -> u64 {
        self.sides().map(|s| s.anon_kib).max().unwrap_or(0)
    }
    fn memory(&self) -> (String, String) {
        match &self.b {
            None => (
                format!("{:.1}", mib(self.a.anon_kib)),
                format!("{:.1}", mib(self.a.vmhwm_kib)),
            ),
            Some(b) => (
                format!("{:.1}/{:.1}", mib(self.a.anon_kib), mib(b.anon_kib)),
                format!("{:.1}/{:.1}", mib(self.a.vmhwm_kib), mib(b.vmhwm_kib)),
            ),
        }
    }
    pub fn print(&self) {
        let (anon, hwm) = self.memory();
        println!(
            "  {:<17} {:>7} {:<22} {:>9.1} ms {:>3} rt {:>10} B {:>7} moved  anon {:>11} MiB  VmHWM {:>11} MiB",
            self.peer,
            self.n,
            self.workload,
            self.secs() * 1e3,
            self.round_trips(),
            self.wire(),
            self.moved(),
            anon,
            hwm
        );
    }
}

pub fn preamble(sizes: &[u64], peers: &[String]) {
    println!(
        "braidlog beside {peers:?}; n in {sizes:?}; each side its own process over loopback TCP; \
         durable writes ({} updates per commit); 100-byte incompressible values, a key per update",
        crate::harness::BATCH
    );
    println!("  (progress: peer, n, workload, time, round trips, wire bytes both ways, updates moved, memory a/b)");
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 {
        format!("{:.2}", ours / theirs)
    } else {
        "-".into()
    }
}

/// The markdown table: one line per workload, n and peer, with braidlog / peer ratios of
/// time, bytes and peak allocated memory (below 1: braidlog is ahead).
pub fn side_by_side(rows: &[Row]) {
    println!("\n| workload | n | peer | ms | rt | wire B | moved | anon MiB a/b | VmHWM MiB a/b | time ours/peer | bytes ours/peer | anon ours/peer |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ours = rows
            .iter()
            .find(|o| o.peer == "braidlog" && o.n == r.n && o.workload == r.workload);
        let (t, b, m) = match ours {
            Some(o) if r.peer != "braidlog" => (
                ratio(o.secs(), r.secs()),
                if r.b.is_some() {
                    ratio(o.wire() as f64, r.wire() as f64)
                } else {
                    "-".into()
                },
                ratio(o.anon() as f64, r.anon() as f64),
            ),
            _ => ("".into(), "".into(), "".into()),
        };
        let (anon, hwm) = r.memory();
        let (rt, wire) = if r.b.is_some() {
            (r.round_trips().to_string(), r.wire().to_string())
        } else {
            ("".into(), "".into())
        };
        println!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.n,
            r.peer,
            r.secs() * 1e3,
            rt,
            wire,
            r.moved(),
            anon,
            hwm,
            t,
            b,
            m
        );
    }
}
