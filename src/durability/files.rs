//! Names, listing, locking and atomic creation of a data directory's files.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::recovery::{io_error, RecoveryError};
use super::Generation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Log,
    Snapshot,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Log => "log-",
            Kind::Snapshot => "snapshot-",
        }
    }
}

const SUFFIX: &str = ".pi";
const TEMP_SUFFIX: &str = ".tmp";
/// Bytes cut off a data file are saved beside it as `<file>.torn-<offset>`
/// by a start (a torn last record), `<file>.cut-<offset>` by `repair`.
pub(super) const SAVED_TORN: &str = "torn-";
pub(super) const SAVED_CUT: &str = "cut-";
/// Locked (with the directory itself) while a process uses the directory.
const LOCK_FILE: &str = "LOCK";

#[derive(Debug)]
pub(super) struct DataFile {
    pub generation: Generation,
    pub path: PathBuf,
}

/// What a directory holds, sorted by generation.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub logs: Vec<DataFile>,
    pub snapshots: Vec<DataFile>,
    /// Leftovers of writes interrupted before their rename.
    pub temporaries: Vec<PathBuf>,
    /// Bytes cut off a data file and saved beside it.
    pub saved: Vec<PathBuf>,
}

pub(super) fn path(dir: &Path, kind: Kind, generation: Generation) -> PathBuf {
    dir.join(format!("{}{}{SUFFIX}", kind.prefix(), generation.value()))
}

fn parse(name: &str) -> Option<(Kind, Generation)> {
    let stem = name.strip_suffix(SUFFIX)?;
    [Kind::Log, Kind::Snapshot].into_iter().find_map(|kind| {
        let digits = stem.strip_prefix(kind.prefix())?;
        let value: u64 = digits.parse().ok()?;
        // Only the canonical spelling, so `log-01.pi` cannot shadow `log-1.pi`.
        (value.to_string() == digits && value > 0).then_some((kind, Generation(value)))
    })
}

/// Whether `name` is that of saved bytes (`log-3.pi.torn-120`,
/// `snapshot-2.pi.cut-12.1`).
fn is_saved(name: &str) -> bool {
    name.split_once(&format!("{SUFFIX}."))
        .is_some_and(|(stem, saved)| {
            parse(&format!("{stem}{SUFFIX}")).is_some()
                && (saved.starts_with(SAVED_TORN) || saved.starts_with(SAVED_CUT))
        })
}

/// Lists the data files of `dir`; other names (`lost+found` on a volume,
/// the lock file) are left alone.
pub(super) fn list(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // A directory under such a name is not ours to read or delete.
        if !entry.file_type()?.is_file() {
            continue;
        }
        if name.strip_suffix(TEMP_SUFFIX).and_then(parse).is_some() {
            listing.temporaries.push(entry.path());
            continue;
        }
        if is_saved(&name) {
            listing.saved.push(entry.path());
            continue;
        }
        if let Some((kind, generation)) = parse(&name) {
            let file = DataFile {
                generation,
                path: entry.path(),
            };
            match kind {
                Kind::Log => listing.logs.push(file),
                Kind::Snapshot => listing.snapshots.push(file),
            }
        }
    }
    listing.logs.sort_by_key(|file| file.generation);
    listing.snapshots.sort_by_key(|file| file.generation);
    listing.temporaries.sort();
    listing.saved.sort();
    Ok(listing)
}

/// A `flock` on the directory, which deleting a file cannot release, and
/// on its `LOCK` file (`docs/durability.md`, "The directory lock").
#[derive(Debug)]
pub(super) struct DirLock {
    _dir: File,
    _lock_file: File,
    /// The directory locked, to notice it being deleted or replaced.
    pub(super) dir: Watched,
}

/// A file at a path, as it was when this process made or opened it.
#[derive(Debug)]
pub(super) struct Watched {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl Watched {
    pub(super) fn at(path: PathBuf) -> io::Result<Watched> {
        let metadata = fs::metadata(&path)?;
        Ok(Watched {
            path,
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }

    /// Fails, saying how, unless the path still names the file watched.
    pub(super) fn check(&self) -> io::Result<()> {
        let path = self.path.display();
        match fs::metadata(&self.path) {
            Ok(found) if (found.dev(), found.ino()) == (self.device, self.inode) => Ok(()),
            Ok(_) => Err(io::Error::other(format!(
                "{path} was replaced while in use"
            ))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{path} was deleted while in use"),
            )),
            Err(error) => Err(error),
        }
    }
}

/// How long a held lock is retried: a process that forks shares its locks
/// with the child until that execs.
const LOCK_RETRY_FOR: Duration = Duration::from_millis(200);

impl DirLock {
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, RecoveryError> {
        let dir_file = File::open(dir).map_err(io_error(dir))?;
        let path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path))?;
        let give_up = Instant::now() + LOCK_RETRY_FOR;
        for (file, path) in [(&dir_file, dir), (&lock_file, &path)] {
            loop {
                match file.try_lock() {
                    Ok(()) => break,
                    Err(TryLockError::WouldBlock) if Instant::now() < give_up => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(TryLockError::WouldBlock) => {
                        let path = path.to_owned();
                        return Err(RecoveryError::Locked { path });
                    }
                    Err(TryLockError::Error(source)) => return Err(io_error(path)(source)),
                }
            }
        }
        Ok(DirLock {
            dir: Watched::at(dir.to_owned()).map_err(io_error(dir))?,
            _dir: dir_file,
            _lock_file: lock_file,
        })
    }
}

/// Saves `bytes` beside `path` as `<file name>.<suffix>`, durably, and
/// returns where. Evidence is never overwritten: if that name holds other
/// bytes, `.1`, `.2`, ... is appended.
pub(super) fn save_beside(path: &Path, suffix: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let mut base = path.as_os_str().to_owned();
    base.push(".");
    base.push(suffix);
    for attempt in 0u32.. {
        let mut name = base.clone();
        if attempt > 0 {
            name.push(format!(".{attempt}"));
        }
        let target = PathBuf::from(name);
        let saved = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
        {
            Ok(mut file) => file.write_all(bytes).map(|()| file)?,
            // Saved by an earlier attempt that stopped before the cut, maybe
            // before its syncs too: synced below all the same.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                if fs::read(&target)? != bytes {
                    continue;
                }
                File::open(&target)?
            }
            Err(error) => return Err(error),
        };
        saved.sync_all()?;
        // Its name too, before the caller cuts the bytes from the original:
        // a crash between the two must not lose both.
        sync_dir(parent_dir(&target))?;
        return Ok(target);
    }
    Err(io::Error::other("no free name to save the bytes under"))
}

/// Makes renames and removals in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory `path` is in; a bare file name lives in the current one.
pub(super) fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `final_path` atomically and durably from what `fill` writes;
/// returns the file, open at its end, and its length.
pub(crate) fn write_atomically(
    final_path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<(File, u64)> {
    let mut temp_name = final_path.as_os_str().to_owned();
    temp_name.push(TEMP_SUFFIX);
    let temp_path = PathBuf::from(temp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp_path)?;
        fill(&mut file)?;
        file.sync_all()?;
        let len = file.metadata()?.len();
        fs::rename(&temp_path, final_path)?;
        sync_dir(parent_dir(final_path))?;
        Ok((file, len))
    })();
    if result.is_err() {
        // Best effort: a leftover temporary is ignored by recovery anyway.
        let _ = fs::remove_file(&temp_path);
    }
    result
}

/// Deletes every log and snapshot older than `generation`, and temporaries
/// when `with_temporaries` (only while no snapshot is being written). A
/// failure costs disk space, not correctness: recovery ignores stale files.
pub(super) fn remove_older_than(
    dir: &Path,
    generation: Generation,
    with_temporaries: bool,
) -> io::Result<()> {
    let listing = list(dir)?;
    let stale = listing
        .logs
        .iter()
        .chain(&listing.snapshots)
        .filter(|file| file.generation < generation)
        .map(|file| &file.path);
    let temporaries = listing.temporaries.iter().filter(|_| with_temporaries);
    for path in stale.chain(temporaries) {
        match fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_bytes_never_overwrite_other_evidence() {
        let dir = std::env::temp_dir().join(format!("pi-save-beside-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log-1.pi");
        let first = save_beside(&log, "torn-12", b"abc").unwrap();
        assert_eq!(first, dir.join("log-1.pi.torn-12"));
        assert_eq!(save_beside(&log, "torn-12", b"abc").unwrap(), first);
        let second = save_beside(&log, "torn-12", b"xyz").unwrap();
        assert_eq!(second, dir.join("log-1.pi.torn-12.1"));
        assert_eq!(fs::read(&first).unwrap(), b"abc");
        assert_eq!(fs::read(&second).unwrap(), b"xyz");
        let listing = list(&dir).unwrap();
        assert!(listing.logs.is_empty() && listing.temporaries.is_empty());
        assert_eq!(listing.saved, [first, second]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_round_trip_and_odd_names_are_ignored() {
        let dir = Path::new("/d");
        let log = path(dir, Kind::Log, Generation(7));
        assert_eq!(log, Path::new("/d/log-7.pi"));
        assert_eq!(parse("log-7.pi"), Some((Kind::Log, Generation(7))));
        assert_eq!(
            parse("snapshot-12.pi"),
            Some((Kind::Snapshot, Generation(12)))
        );
        for odd in [
            "log-07.pi",
            "log-0.pi",
            "log-.pi",
            "log-1.pi.tmp",
            "lost+found",
            "log-x.pi",
        ] {
            assert_eq!(parse(odd), None, "{odd}");
        }
        for saved in [
            "log-7.pi.torn-12",
            "snapshot-2.pi.cut-0",
            "log-1.pi.cut-40.1",
        ] {
            assert!(is_saved(saved), "{saved}");
        }
        for other in [
            "log-7.pi",
            "log-07.pi.torn-1",
            "log-7.pi.tmp",
            "x.pi.cut-1",
            "LOCK",
        ] {
            assert!(!is_saved(other), "{other}");
        }
    }
}
