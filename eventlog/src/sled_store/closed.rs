//! The closed store's record (`store.closed`): what sled's files held when a store was closed
//! cleanly, checked before sled opens them again.
//!
//! sled's recovery takes the first message that fails its checksum for the torn end of the
//! last write and discards everything after it: right after a crash, that is how an
//! unfinished group goes; on files damaged while the store was closed (a flipped bit on the
//! disk), it silently zeroes the intact records after the damage while opening them. So a
//! clean close writes, for each of sled's files (`conf`, `db`, `snap.*`, `blobs/*`), its
//! length and the BLAKE3 of each 8 MiB block; the next open compares them before sled sees
//! the files, refuses a folder whose files changed (naming the file and the byte range) and
//! leaves it byte for byte as it was; a folder that matches has its record removed (sled
//! writes from then on) and opens as before.
//!
//! Invariants: the record is written only while this process holds the lock sled takes on
//! `db` (so no store has the folder open), by an atomic rename after an fsync; it is removed,
//! durably, before sled opens the folder. A folder without it (a crash, an older version, a
//! store still open) is opened as before, where a crash's torn end must be cut.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::Head;

/// The record's file name in the data folder.
pub const FILE_NAME: &str = "store.closed";

/// Its first line.
const MAGIC: &str = "oacis-store-closed 1";

/// Bytes per checked block: a change is named to the block.
const BLOCK: usize = 8 * 1024 * 1024;

/// One of sled's files as it was at close: path relative to the folder, length, and the
/// BLAKE3 (hex) of each [`BLOCK`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    name: String,
    len: u64,
    blocks: Vec<String>,
}

/// sled's files in `folder`, by name: `conf`, `db`, `snap.*` and what `blobs/` holds.
fn sled_files(folder: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name == "conf" || name == "db" || name.starts_with("snap.") {
            names.push(name);
        }
    }
    match std::fs::read_dir(folder.join("blobs")) {
        Ok(blobs) => {
            for entry in blobs {
                names.push(format!("blobs/{}", entry?.file_name().to_string_lossy()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    names.sort();
    Ok(names)
}

/// The state of one of sled's files: its blocks read and hashed by up to four threads at
/// once (the data file of a million-customer store is a few GB; on two cores this halves the
/// time a start and a clean stop spend on it).
fn state_of(folder: &Path, name: &str) -> std::io::Result<FileState> {
    use std::os::unix::fs::FileExt;
    let file = File::open(folder.join(name))?;
    let len = file.metadata()?.len();
    let count = usize::try_from(len.div_ceil(BLOCK as u64)).unwrap_or(usize::MAX);
    let threads =
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).clamp(1, 4).min(count.max(1));
    let hash_block = |index: usize, buffer: &mut Vec<u8>| -> std::io::Result<String> {
        let from = index as u64 * BLOCK as u64;
        let size = usize::try_from((len - from).min(BLOCK as u64)).unwrap_or(BLOCK);
        buffer.resize(size, 0);
        file.read_exact_at(buffer, from)?;
        Ok(blake3::hash(buffer).to_hex().to_string())
    };
    let mut blocks = vec![String::new(); count];
    std::thread::scope(|scope| -> std::io::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let hash_block = &hash_block;
                scope.spawn(move || -> std::io::Result<Vec<(usize, String)>> {
                    let mut buffer = Vec::with_capacity(BLOCK);
                    (t..count).step_by(threads).map(|i| hash_block(i, &mut buffer).map(|h| (i, h))).collect()
                })
            })
            .collect();
        for worker in workers {
            let hashed = worker.join().map_err(|_| std::io::Error::other("a hashing thread panicked"))??;
            for (i, hash) in hashed {
                blocks[i] = hash;
            }
        }
        Ok(())
    })?;
    Ok(FileState { name: name.to_owned(), len, blocks })
}

/// The record's text: [`MAGIC`], a line per file (`name length block,block,...`), and last
/// `blake3 <hex>` of everything before it, so that a damaged record is told from damaged
/// files.
fn render(states: &[FileState]) -> String {
    let mut out = format!("{MAGIC}\n");
    for s in states {
        out.push_str(&format!("{} {} {}\n", s.name, s.len, s.blocks.join(",")));
    }
    let sum = blake3::hash(out.as_bytes()).to_hex();
    out.push_str(&format!("blake3 {sum}\n"));
    out
}

fn parse(text: &str) -> Option<Vec<FileState>> {
    let body = text.strip_suffix('\n')?;
    let (body, sum) = body.rsplit_once('\n').map(|(b, last)| (format!("{b}\n"), last))?;
    if sum.strip_prefix("blake3 ")? != blake3::hash(body.as_bytes()).to_hex().as_str() {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    lines
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let (name, len, blocks) = (parts.next()?, parts.next()?.parse().ok()?, parts.next().unwrap_or(""));
            let blocks = blocks.split(',').filter(|b| !b.is_empty()).map(str::to_owned).collect();
            Some(FileState { name: name.to_owned(), len, blocks })
        })
        .collect()
}

/// Whether `folder` holds an embedded store: sled's data file, or the record of a store
/// closed there (whose data file, if it is gone, is damage the open names, not an empty
/// folder).
#[must_use]
pub fn holds_store(folder: &Path) -> bool {
    folder.join("db").exists() || folder.join(FILE_NAME).exists()
}

/// The folders this process opened a store in ([`opened`]), for [`record_opened`].
static OPENED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Notes that this process opened the store in `folder` (called by `SledStore::open`).
pub(crate) fn opened(folder: &Path) {
    let mut opened = OPENED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !opened.iter().any(|f| f == folder) {
        opened.push(folder.to_path_buf());
    }
}

/// [`record`]s every folder this process opened a store in, for a program to call once it
/// is done with them (a store still open is waited for at most `wait`, then left
/// unrecorded). Answers each folder with its outcome.
pub fn record_opened(wait: Duration) -> Vec<(std::path::PathBuf, Result<bool>)> {
    let folders = std::mem::take(&mut *OPENED.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    folders
        .into_iter()
        .map(|folder| {
            let outcome = record(&folder, wait);
            (folder, outcome)
        })
        .collect()
}

/// Once no store has `folder` open (sled's lock on `db` can be taken, waited for at most
/// `wait`), writes the closed store's record. `Ok(false)` when the folder holds no sled
/// store or the lock stayed taken (nothing written: the next open is unchecked, as after a
/// crash).
///
/// # Errors
/// I/O on the folder's files.
pub fn record(folder: &Path, wait: Duration) -> Result<bool> {
    let db = folder.join("db");
    let lock = match File::options().read(true).write(true).open(&db) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(&db, e)),
    };
    let started = Instant::now();
    while lock.try_lock().is_err() {
        if started.elapsed() >= wait {
            tracing::warn!(folder = %folder.display(), "the store was not released in time; its files are not recorded at close");
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let names = sled_files(folder).map_err(|e| Error::io(folder, e))?;
    let hashing = Instant::now();
    let states: Vec<FileState> =
        names.iter().map(|n| state_of(folder, n).map_err(|e| Error::io(folder.join(n), e))).collect::<Result<_>>()?;
    tracing::info!(
        bytes = states.iter().map(|s| s.len).sum::<u64>(),
        seconds = hashing.elapsed().as_secs_f64(),
        "the closed store's files recorded"
    );
    let path = folder.join(FILE_NAME);
    let partial = folder.join(format!("{FILE_NAME}.partial"));
    let mut file = File::create(&partial).map_err(|e| Error::io(&partial, e))?;
    file.write_all(render(&states).as_bytes()).and_then(|()| file.sync_all()).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))?;
    File::open(folder).and_then(|dir| dir.sync_all()).map_err(|e| Error::io(folder, e))?;
    drop(lock);
    Ok(true)
}

/// Before sled opens `folder`: if it holds a closed store's record, checks sled's files
/// against it ([`check`]) and removes it ([`clear`]) when they match. `SledStore::open` calls
/// it; a program may check earlier, alongside other work (`oacis serve`, while the key store
/// opens), and clear once it goes on to open the store, which then finds no record.
///
/// # Errors
/// As [`check`] and [`clear`].
pub fn check_and_clear(folder: &Path, recorded: Option<Head>) -> Result<()> {
    check(folder, recorded)?;
    clear(folder)
}

/// Removes `folder`'s closed store's record, durably (sled writes from now on).
///
/// # Errors
/// I/O.
pub fn clear(folder: &Path) -> Result<()> {
    let path = folder.join(FILE_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => File::open(folder).and_then(|dir| dir.sync_all()).map_err(|e| Error::io(folder, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Checks sled's files in `folder` against its closed store's record, if it holds one,
/// changing nothing. `recorded` is the acknowledged head, named in the error.
///
/// # Errors
/// [`Error::Damaged`] naming the first file that changed (and the byte range of its first
/// changed block), or an unreadable record. I/O.
pub fn check(folder: &Path, recorded: Option<Head>) -> Result<()> {
    let path = folder.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let damaged = |reason: String| Error::Damaged { path: folder.to_path_buf(), reason, recorded };
    let Some(expected) = parse(&text) else {
        return Err(damaged(format!(
            "{} is damaged (its own BLAKE3 does not match): the files cannot be checked against it. Check a \
             copy with `oacis verify --data` first; moving the record aside opens the folder unchecked, and \
             the engine's recovery then cuts the log at any damage",
            path.display()
        )));
    };
    let checking = Instant::now();
    let names = sled_files(folder).map_err(|e| Error::io(folder, e))?;
    let listed: Vec<&str> = expected.iter().map(|s| s.name.as_str()).collect();
    if let Some(extra) = names.iter().find(|n| !listed.contains(&n.as_str())) {
        return Err(damaged(format!("its file {extra} appeared after it was closed cleanly; nothing was opened")));
    }
    for want in &expected {
        let have = match state_of(folder, &want.name) {
            Ok(have) => have,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(damaged(format!(
                    "its file {} is gone since it was closed cleanly; nothing was opened",
                    want.name
                )))
            }
            Err(e) => return Err(Error::io(folder.join(&want.name), e)),
        };
        if have == *want {
            continue;
        }
        // The first block that differs, or the first one only one of them has.
        let block = have
            .blocks
            .iter()
            .zip(&want.blocks)
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.blocks.len().min(want.blocks.len()));
        let from = block as u64 * BLOCK as u64;
        let to = (from + BLOCK as u64).min(have.len.max(want.len));
        return Err(damaged(format!(
            "its file {} changed after it was closed cleanly (bytes {from}..{to} differ; {} bytes then, {} now); \
             nothing was opened, so the folder is as it was",
            want.name, want.len, have.len
        )));
    }
    tracing::info!(
        bytes = expected.iter().map(|s| s.len).sum::<u64>(),
        seconds = checking.elapsed().as_secs_f64(),
        "the closed store's files checked"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let states = vec![
            FileState { name: "conf".into(), len: 63, blocks: vec!["ab".into()] },
            FileState { name: "blobs/7".into(), len: 0, blocks: vec![] },
        ];
        assert_eq!(parse(&render(&states)), Some(states.clone()));
        assert_eq!(parse("something else\n"), None);
        let flipped = render(&states).replacen("63", "64", 1);
        assert_eq!(parse(&flipped), None, "its own hash no longer matches");
        let text = render(&states);
        assert_eq!(parse(&text[..text.len() - 10]), None, "cut short");
    }
}
