//! Tells the build the git commit it is built from, for the
//! `package_indexer_build_info` metric: `GIT_COMMIT` when set
//! (a container build, where `.git` is not copied in), else `git rev-parse
//! HEAD` in a checkout, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    // A new commit moves HEAD or the branch it points at. (A path that does
    // not exist would make cargo rerun this on every build.)
    for moved in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(moved).exists() {
            println!("cargo:rerun-if-changed={moved}");
        }
    }
    let commit = std::env::var("GIT_COMMIT")
        .ok()
        .filter(|commit| !commit.is_empty())
        .or_else(head_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
}

/// The commit checked out, when this is a git checkout with git installed.
fn head_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_string();
    let is_hex = !commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit());
    is_hex.then_some(commit)
}
