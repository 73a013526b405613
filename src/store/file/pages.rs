//! LMDB's data file read with `pread`, never mapped: the two meta pages and a bounded walk of
//! the B-trees they point at.
//!
//! LMDB maps `data.mdb` and follows page numbers through the map without checking them, so a
//! truncated or damaged file ends the process with SIGBUS or SIGSEGV. Reading the same
//! structures with `pread` turns every bad page number, short file and malformed page into an
//! error instead. `store/file/mod.rs` uses this before LMDB opens a file, and salvage uses it
//! to read the feed of a file LMDB cannot be trusted with.
//!
//! The layout is LMDB's on a 64-bit little-endian machine (`mdb.c`, `MDB_page`, `MDB_meta`,
//! `MDB_db`, `MDB_node`), the only one braidlog builds for:
//!
//! ```text
//! page header (16): pgno u64 | pad u16 | flags u16 | lower u16 | upper u16  (overflow: pages u32)
//! meta (at 16):     magic u32 | version u32 | address u64 | mapsize u64
//!                   | free db (48) | main db (48) | last_pg u64 | txnid u64
//! db (48):          pad u32 (page size, in the free db) | flags u16 | depth u16
//!                   | branch u64 | leaf u64 | overflow u64 | entries u64 | root u64
//! node:             lo u16 | hi u16 | flags u16 | ksize u16 | key | data
//! ```

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// `MDB_MAGIC`.
pub const MAGIC: u32 = 0xBEEF_C0DE;
/// `MDB_DATA_VERSION` of the LMDB braidlog links.
pub const DATA_VERSION: u32 = 1;
/// The page number LMDB uses for "no page" (an empty tree).
pub const NO_PAGE: u64 = u64::MAX;
const HEADER: usize = 16;
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
const P_LEAF2: u16 = 0x20;
const F_BIGDATA: u16 = 0x01;
const F_SUBDATA: u16 = 0x02;
const F_DUPDATA: u16 = 0x04;
const MDB_FIXEDMAP: u16 = 0x01;
const MDB_INTEGERKEY: u16 = 0x08;
const MDB_NOSUBDIR: u16 = 0x4000;
/// LMDB's cursor stack: no tree is deeper.
const CURSOR_STACK: u16 = 32;
/// Deeper than any tree LMDB builds in a file of 2^64 bytes: a longer path is a cycle.
const MAX_DEPTH: usize = 64;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One of the two meta pages, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Page size of the file.
    pub page_size: u64,
    /// Root of the free-page tree, or [`NO_PAGE`].
    pub free_root: u64,
    /// Root of the main tree (which names the other trees), or [`NO_PAGE`].
    pub main_root: u64,
    /// Highest page number in use.
    pub last_page: u64,
    /// The transaction that wrote this meta; LMDB opens the higher of the two.
    pub txnid: u64,
}

/// Why a meta page cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaProblem {
    /// LMDB refuses the whole file when this holds for either page (bad flags, magic, version).
    Header(String),
    /// The header is LMDB's but a field is impossible; LMDB would follow it blindly.
    Content(String),
}

/// Decodes meta page `slot` (0 or 1) from its page bytes, checking everything that can be
/// checked without the rest of the file.
pub fn decode_meta(page: &[u8], slot: u64) -> Result<Meta, MetaProblem> {
    if page.len() < 152 {
        return Err(MetaProblem::Header("shorter than a meta page".into()));
    }
    if u16_at(page, 10) & P_META == 0 {
        return Err(MetaProblem::Header("not marked as a meta page".into()));
    }
    if u32_at(page, 16) != MAGIC {
        return Err(MetaProblem::Header("no LMDB magic number".into()));
    }
    if u32_at(page, 20) != DATA_VERSION {
        return Err(MetaProblem::Header(format!(
            "LMDB data version {}",
            u32_at(page, 20)
        )));
    }
    let meta = Meta {
        page_size: u64::from(u32_at(page, 40)),
        free_root: u64_at(page, 80),
        main_root: u64_at(page, 128),
        last_page: u64_at(page, 136),
        txnid: u64_at(page, 144),
    };
    let bad = |what: String| Err(MetaProblem::Content(what));
    if u64_at(page, 0) != slot {
        return bad(format!("page number {} in slot {slot}", u64_at(page, 0)));
    }
    if !meta.page_size.is_power_of_two() || !(512..=65536).contains(&meta.page_size) {
        return bad(format!("page size {}", meta.page_size));
    }
    if meta.last_page < 1 || meta.last_page > u64::MAX / meta.page_size / 2 {
        return bad(format!("last page {}", meta.last_page));
    }
    for (name, root) in [("free", meta.free_root), ("main", meta.main_root)] {
        if root != NO_PAGE && (root < 2 || root > meta.last_page) {
            return bad(format!(
                "{name} root {root} beyond last page {}",
                meta.last_page
            ));
        }
    }
    // Tree flags: LMDB trusts them to pick key comparison and duplicate handling, and
    // asserts (aborts) when they do not match the pages. The free tree is integer-keyed
    // (plus the persistent environment flags FIXEDMAP and NOSUBDIR); braidlog sets no flag on
    // the main tree.
    let free_flags = u16_at(page, 44) & !(MDB_FIXEDMAP | MDB_NOSUBDIR);
    if free_flags != MDB_INTEGERKEY {
        return bad(format!("free tree flags {free_flags:#x}"));
    }
    if u16_at(page, 92) != 0 {
        return bad(format!("main tree flags {:#x}", u16_at(page, 92)));
    }
    // Depth sizes LMDB's cursor stack: zero exactly for an empty tree, else at most the stack.
    for (name, root, depth) in [
        ("free", meta.free_root, u16_at(page, 46)),
        ("main", meta.main_root, u16_at(page, 94)),
    ] {
        if (root == NO_PAGE) != (depth == 0) || depth > CURSOR_STACK {
            return bad(format!("{name} tree depth {depth}"));
        }
    }
    Ok(meta)
}

/// Why the pages of a file cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageProblem {
    /// The page involved.
    pub page: u64,
    /// What is wrong with it.
    pub what: String,
}

/// Called with each entry's key, value and node flags.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8], u16) -> Result<(), PageProblem> + 'a;

/// What a B-tree page holds.
enum Item {
    /// A branch page's child.
    Child(u64),
    /// A leaf page's key, value and node flags.
    Entry(Vec<u8>, Vec<u8>, u16),
}

/// A data file opened for `pread`.
pub struct DataFile {
    file: File,
    page_size: u64,
    /// Whole pages present in the file.
    pages: u64,
}

impl DataFile {
    /// Opens `path` for reading with the given page size.
    pub fn open(path: &Path, page_size: u64) -> std::io::Result<DataFile> {
        let file = File::open(path)?;
        let pages = file.metadata()?.len() / page_size;
        Ok(DataFile {
            file,
            page_size,
            pages,
        })
    }

    /// Whole pages in the file.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    fn problem(page: u64, what: impl Into<String>) -> PageProblem {
        PageProblem {
            page,
            what: what.into(),
        }
    }

    /// Reads `count` consecutive pages starting at `page`, all of which must be in the file.
    fn read(&self, page: u64, count: u64) -> Result<Vec<u8>, PageProblem> {
        let inside = match page.checked_add(count) {
            Some(end) => end <= self.pages,
            None => false,
        };
        if !inside {
            return Err(Self::problem(
                page,
                format!("beyond the end of the file ({} pages)", self.pages),
            ));
        }
        let mut buf = vec![0; (count * self.page_size) as usize];
        self.file
            .read_exact_at(&mut buf, page * self.page_size)
            .map_err(|e| Self::problem(page, format!("unreadable: {e}")))?;
        Ok(buf)
    }

    /// Reads a B-tree page and checks its header names it.
    fn tree_page(&self, page: u64) -> Result<Vec<u8>, PageProblem> {
        let buf = self.read(page, 1)?;
        if u64_at(&buf, 0) != page {
            return Err(Self::problem(
                page,
                format!("header names page {}", u64_at(&buf, 0)),
            ));
        }
        Ok(buf)
    }

    /// Visits every entry of the tree rooted at `root` in key order, following branch pages
    /// and overflow pages, each page at most once. `visit` gets the key, the value (or the
    /// `MDB_db` record of a named tree, whose pages it does not visit) and the node flags.
    pub fn walk(
        &self,
        root: u64,
        seen: &mut HashSet<u64>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), PageProblem> {
        if root != NO_PAGE {
            self.walk_page(root, 0, seen, visit)?;
        }
        Ok(())
    }

    fn walk_page(
        &self,
        page: u64,
        depth: usize,
        seen: &mut HashSet<u64>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), PageProblem> {
        if depth > MAX_DEPTH || !seen.insert(page) {
            return Err(Self::problem(page, "reached twice: the tree has a cycle"));
        }
        let buf = self.tree_page(page)?;
        for item in self.items(page, &buf, seen)? {
            match item {
                Item::Child(child) => self.walk_page(child, depth + 1, seen, visit)?,
                Item::Entry(key, value, flags) => visit(&key, &value, flags)?,
            }
        }
        Ok(())
    }

    /// The children of a branch page, or the entries of a leaf page (values on overflow pages
    /// read in full).
    fn items(
        &self,
        page: u64,
        buf: &[u8],
        seen: &mut HashSet<u64>,
    ) -> Result<Vec<Item>, PageProblem> {
        let flags = u16_at(buf, 10);
        if flags & P_LEAF2 != 0 {
            return Ok(Vec::new()); // fixed-size duplicates: nothing braidlog stores
        }
        if flags & (P_BRANCH | P_LEAF) == 0 {
            return Err(Self::problem(page, format!("flags {flags:#x}")));
        }
        let lower = usize::from(u16_at(buf, 12));
        let upper = usize::from(u16_at(buf, 14));
        if lower < HEADER || lower > upper || upper > buf.len() || (lower - HEADER) % 2 != 0 {
            return Err(Self::problem(page, format!("bounds {lower}..{upper}")));
        }
        let mut items = Vec::with_capacity((lower - HEADER) / 2);
        for i in 0..(lower - HEADER) / 2 {
            let at = usize::from(u16_at(buf, HEADER + 2 * i));
            if at < upper || at + 8 > buf.len() {
                return Err(Self::problem(page, format!("node {i} at offset {at}")));
            }
            let (lo, hi) = (u16_at(buf, at), u16_at(buf, at + 2));
            let (nflags, ksize) = (u16_at(buf, at + 4), usize::from(u16_at(buf, at + 6)));
            let key_end = at + 8 + ksize;
            if key_end > buf.len() {
                return Err(Self::problem(page, format!("key of node {i} overruns")));
            }
            if flags & P_BRANCH != 0 {
                let child = u64::from(lo) | u64::from(hi) << 16 | u64::from(nflags) << 32;
                items.push(Item::Child(child));
                continue;
            }
            let key = buf[at + 8..key_end].to_vec();
            let size = (u64::from(lo) | u64::from(hi) << 16) as usize;
            let value = if nflags & F_BIGDATA != 0 {
                if key_end + 8 > buf.len() {
                    return Err(Self::problem(page, format!("node {i} overruns")));
                }
                self.overflow(u64_at(buf, key_end), size, seen)?
            } else {
                if key_end + size > buf.len() {
                    return Err(Self::problem(page, format!("value of node {i} overruns")));
                }
                buf[key_end..key_end + size].to_vec()
            };
            items.push(Item::Entry(key, value, nflags));
        }
        Ok(items)
    }

    /// Every entry of every leaf page in the file that is well formed, whichever tree it
    /// belongs to, live or stale: a scan that follows no page number but overflow values.
    pub fn scan_leaves(&self, visit: &mut dyn FnMut(&[u8], &[u8])) {
        for page in 2..self.pages {
            let Ok(buf) = self.tree_page(page) else {
                continue;
            };
            if u16_at(&buf, 10) & (P_LEAF | P_OVERFLOW | P_BRANCH) != P_LEAF {
                continue;
            }
            if let Ok(items) = self.items(page, &buf, &mut HashSet::new()) {
                for item in items {
                    if let Item::Entry(key, value, _) = item {
                        visit(&key, &value);
                    }
                }
            }
        }
    }

    /// Reads a value stored on overflow pages starting at `page`.
    fn overflow(
        &self,
        page: u64,
        size: usize,
        seen: &mut HashSet<u64>,
    ) -> Result<Vec<u8>, PageProblem> {
        let head = self.tree_page(page)?;
        let count = u64::from(u32_at(&head, 12));
        if u16_at(&head, 10) & P_OVERFLOW == 0
            || count == 0
            || (count * self.page_size) < (HEADER + size) as u64
        {
            return Err(Self::problem(
                page,
                "not an overflow page of the right size",
            ));
        }
        for p in page..page.saturating_add(count) {
            if !seen.insert(p) {
                return Err(Self::problem(p, "overflow page reached twice"));
            }
        }
        let all = self.read(page, count)?;
        Ok(all[HEADER..HEADER + size].to_vec())
    }
}

/// Checks that the meta's two roots are B-tree pages that name themselves, that every entry
/// of the main tree names a tree (braidlog stores nothing else there), and that each of those
/// trees' roots names itself too. A damaged root field usually points at some other page;
/// this reads a few pages, not the trees.
pub fn check_roots(file: &DataFile, meta: &Meta) -> Result<(), String> {
    let root_ok = |name: &str, root: u64| -> Result<(), String> {
        if root == NO_PAGE || root >= file.pages() {
            return Ok(()); // empty, or a truncation the page walk reports
        }
        let page = file
            .tree_page(root)
            .map_err(|p| format!("{name} root: {}", p.what))?;
        if u16_at(&page, 10) & (P_BRANCH | P_LEAF) == 0 {
            return Err(format!("{name} root {root} is not a B-tree page"));
        }
        Ok(())
    };
    // LMDB may leave a few free pages at the end unwritten (pages freed in the transaction
    // that allocated them), never most of the file: a last page far past the end is damage,
    // and LMDB would try to map all of it.
    if meta.last_page > file.pages().saturating_mul(2).saturating_add(64) {
        return Err(format!(
            "last page {} far beyond the file's {} pages",
            meta.last_page,
            file.pages()
        ));
    }
    root_ok("free", meta.free_root)?;
    root_ok("main", meta.main_root)?;
    if meta.free_root != NO_PAGE && meta.free_root < file.pages() {
        check_free_leaf(file, meta)
            .map_err(|p| format!("free tree page {}: {}", p.page, p.what))?;
    }
    if meta.main_root >= file.pages() && meta.main_root != NO_PAGE {
        return Ok(());
    }
    let trees = named_trees(file, meta, &mut HashSet::new())
        .map_err(|p| format!("main tree page {}: {}", p.page, p.what))?;
    for (name, root) in trees {
        root_ok(&String::from_utf8_lossy(&name), root)?;
    }
    Ok(())
}

/// Descends the free tree's leftmost path to a leaf and checks that its entries are free-page
/// records: a transaction id (at most the meta's) mapped to a list of page numbers (a count,
/// then that many u64s). A damaged free root pointing into another tree fails this; LMDB
/// would hand that tree's pages out as free space on the next write.
fn check_free_leaf(file: &DataFile, meta: &Meta) -> Result<(), PageProblem> {
    let mut page = meta.free_root;
    for _ in 0..MAX_DEPTH {
        let buf = file.tree_page(page)?;
        let items = file.items(page, &buf, &mut HashSet::new())?;
        match items.first() {
            Some(Item::Child(child)) => page = *child,
            _ => {
                for item in &items {
                    let Item::Entry(key, value, _) = item else {
                        return Err(DataFile::problem(page, "a leaf with a child"));
                    };
                    let record = key.len() == 8
                        && u64_at(key, 0) <= meta.txnid
                        && value.len() >= 8
                        && value.len() % 8 == 0
                        && u64_at(value, 0) == (value.len() / 8 - 1) as u64;
                    if !record {
                        return Err(DataFile::problem(page, "not a free-page record"));
                    }
                }
                return Ok(());
            }
        }
    }
    Err(DataFile::problem(page, "deeper than any tree"))
}

/// Named trees of the main tree: name -> root page. Every entry of the main tree must name a
/// tree.
pub fn named_trees(
    file: &DataFile,
    meta: &Meta,
    seen: &mut HashSet<u64>,
) -> Result<Vec<(Vec<u8>, u64)>, PageProblem> {
    let mut trees = Vec::new();
    file.walk(meta.main_root, seen, &mut |key, value, flags| {
        if flags & F_SUBDATA == 0 || flags & F_DUPDATA != 0 || value.len() < 48 {
            return Err(DataFile::problem(
                meta.main_root,
                "a main tree entry that names no tree",
            ));
        }
        trees.push((key.to_vec(), u64_at(value, 40)));
        Ok(())
    })?;
    Ok(trees)
}

/// Checks that every page reachable from `meta` (every tree, every overflow value) is in the
/// file and well formed. Returns the number of pages reached.
pub fn check_reachable(file: &DataFile, meta: &Meta) -> Result<usize, PageProblem> {
    let mut seen = HashSet::new();
    for (_, root) in named_trees(file, meta, &mut seen)? {
        // braidlog's trees hold no duplicates, so their entries name no trees below.
        file.walk(root, &mut seen, &mut |_, _, _| Ok(()))?;
    }
    file.walk(meta.free_root, &mut seen, &mut |_, _, _| Ok(()))?;
    Ok(seen.len())
}
