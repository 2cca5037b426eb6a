//! Helpers shared by the durability test files: scratch directories and
//! owned changes.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use package_indexer::durability::{recover, Change, OwnedChange, Recovered, RecoveryError};

/// A fresh directory under the system temp dir, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(label: &str) -> ScratchDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "package-indexer-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn index(package: &str, dependencies: &[&str]) -> OwnedChange {
    OwnedChange::Index {
        package: package.to_owned(),
        dependencies: dependencies.iter().map(|&d| d.to_owned()).collect(),
    }
}

pub fn remove(package: &str) -> OwnedChange {
    OwnedChange::Remove {
        package: package.to_owned(),
    }
}

/// Lends `change` as a borrowed [`Change`].
pub fn with_change<R>(change: &OwnedChange, f: impl FnOnce(&Change<'_>) -> R) -> R {
    match change {
        OwnedChange::Index {
            package,
            dependencies,
        } => {
            let dependencies: Vec<&str> = dependencies.iter().map(String::as_str).collect();
            f(&Change::Index {
                package,
                dependencies: &dependencies,
            })
        }
        OwnedChange::Remove { package } => f(&Change::Remove { package }),
    }
}

/// Recovers `dir`, collecting the replayed changes.
pub fn recover_changes(dir: &Path) -> Result<(Vec<OwnedChange>, Recovered), RecoveryError> {
    let mut changes = Vec::new();
    let recovered = recover(dir, |change| {
        changes.push(OwnedChange::from(change));
        Ok(())
    })?;
    Ok((changes, recovered))
}

/// Every file of `dir` but the lock file, with its contents.
pub fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name() != "LOCK")
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// Total bytes of the files in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}
