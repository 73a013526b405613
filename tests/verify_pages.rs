//! `Log::verify` walks the data file's pages itself (with `pread`, before LMDB follows any):
//! damage that its table checks never read is a reported violation, not a passing check.

use std::os::unix::fs::FileExt;
use std::time::Instant;

use braidlog::Violation;

mod common;

use common::{durable_replica, replica, Replica};

const PAGE: u64 = 4096;

/// The first overflow page (a value too large for a leaf) of the data file: its 16-byte
/// header holds its own page number at byte 0 and the flags (`0x04`: overflow) at byte 10.
fn overflow_page(file: &std::fs::File) -> u64 {
    let pages = file.metadata().unwrap().len() / PAGE;
    (2..pages)
        .find(|&p| {
            let mut h = [0u8; 16];
            file.read_exact_at(&mut h, p * PAGE).unwrap();
            let own = u64::from_le_bytes(h[..8].try_into().unwrap());
            own == p && u16::from_le_bytes([h[10], h[11]]) & 0x04 != 0
        })
        .expect("a 10 kB node is stored in overflow pages")
}

#[test]
fn verify_reports_a_damaged_page_its_table_checks_never_read() {
    let Replica { dir, log } = durable_replica();
    for i in 0..50u32 {
        log.append(i.to_be_bytes().to_vec()).unwrap();
    }
    log.append(vec![0xab; 10_000]).unwrap();
    let before = log.verify().unwrap();
    assert!(before.is_ok(), "{:?}", before.violations);
    assert!(before.pages > 0, "the page walk ran");
    // Damage an overflow page's header: reading the value skips the header, so the node
    // still reads and hashes right, and only the page walk sees the damage.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("data.mdb"))
        .unwrap();
    let page = overflow_page(&file);
    file.write_all_at(&(page + 7).to_le_bytes(), page * PAGE)
        .unwrap();
    let report = log.verify().unwrap();
    assert!(
        matches!(report.violations[..], [Violation::DamagedFile { .. }]),
        "{:?}",
        report.violations
    );
    assert!(report.violations[0]
        .to_string()
        .contains("damaged data file"));
}

/// The cost of the page walk in `verify` on 10^5 nodes (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn measure_the_page_walk_on_a_hundred_thousand_nodes() {
    let Replica { dir, log } = replica();
    for chunk in 0..100u32 {
        log.transaction(|w| {
            for i in 0..1000u32 {
                let heads = w.heads(4)?;
                w.add(heads, (chunk * 1000 + i).to_be_bytes().to_vec())?;
            }
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(log.len().unwrap(), 100_000);
    let t = Instant::now();
    let report = log.verify().unwrap();
    let all = t.elapsed();
    assert!(report.is_ok());
    let t = Instant::now();
    let pages = braidlog::check_pages(dir.path()).unwrap();
    let walk = t.elapsed();
    let size = std::fs::metadata(dir.path().join("data.mdb"))
        .unwrap()
        .len();
    eprintln!(
        "10^5 nodes, {pages} pages ({size} bytes): verify {all:?} in all, page walk {walk:?}"
    );
}
