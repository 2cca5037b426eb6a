//! Every relative link in the repository's Markdown files leads somewhere:
//! the file (or folder) exists, and a `#section` names a heading of the
//! file it points to, as GitHub makes anchors of headings. Links to other
//! sites are not followed (CI has no network), and nothing may point
//! outside the repository.
//!
//! Comments in the code, the scripts and the deployment kit name pages of
//! the contract by their path from the top (`docs/protocol.md#answers`);
//! those must lead somewhere too.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The repository's top level.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of the repository, outside build output and hidden folders,
/// whose name `wanted` accepts.
fn files_named(dir: &Path, wanted: &dyn Fn(&str) -> bool, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            files_named(&path, wanted, found);
        } else if wanted(&name) {
            found.push(path);
        }
    }
}

/// Every Markdown file of the repository.
fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    files_named(dir, &|name| name.ends_with(".md"), found);
}

/// Whether a file holds code, scripts or configuration whose comments may
/// name a page of `docs/`.
fn is_commented_source(name: &str) -> bool {
    const EXTENSIONS: [&str; 5] = [".rs", ".sh", ".yml", ".yaml", ".toml"];
    EXTENSIONS.iter().any(|extension| name.ends_with(extension))
        || name == "Makefile"
        || name == "Dockerfile"
}

/// The references to pages of `docs/` (a page's path from the top, with
/// or without `#heading`) in the comment lines (`//...` or `#...`) of
/// `text`.
fn comment_references(text: &str) -> Vec<String> {
    let mut references = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if !line.starts_with("//") && !line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("docs/") {
            let starts_a_path =
                !rest[..at].ends_with(|c: char| c.is_alphanumeric() || "/-_.".contains(c));
            let candidate = &rest[at..];
            let end = candidate
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-#".contains(c)))
                .unwrap_or(candidate.len());
            let reference = candidate[..end].trim_end_matches('.');
            if starts_a_path && reference.contains(".md") {
                references.push(reference.to_string());
            }
            rest = &candidate[end.max(1)..];
        }
    }
    references
}

/// The targets of the inline links `[text](target)` of `text`, outside
/// code blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        // Code spans hold examples, not links.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(at, _)| at % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or_default();
            targets.push(target.to_string());
            rest = &after[end..];
        }
    }
    targets
}

/// The anchors GitHub gives the headings of `text`: lower case, spaces to
/// hyphens, punctuation other than hyphens and underscores dropped, and
/// `-1`, `-2`... for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !in_block) else {
            continue;
        };
        let title = heading.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut unique = slug.clone();
        let mut repeat = 0;
        while !anchors.insert(unique.clone()) {
            repeat += 1;
            unique = format!("{slug}-{repeat}");
        }
    }
    anchors
}

/// `path` without `.` and `..` parts; `None` when it climbs out of the top.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<Component> = Vec::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !matches!(parts.pop(), Some(Component::Normal(_))) {
                    return None;
                }
            }
            other => parts.push(other),
        }
    }
    Some(parts.iter().collect())
}

#[test]
fn every_relative_link_in_the_markdown_files_resolves() {
    let root = root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(files.len() >= 3, "found only {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() {
                Some(file.clone())
            } else {
                normalize(&file.parent().unwrap().join(path))
            };
            let Some(linked) = linked.filter(|linked| linked.starts_with(&root)) else {
                broken.push(format!("{shown}: {target} points outside the repository"));
                continue;
            };
            if !linked.exists() {
                broken.push(format!("{shown}: {target} does not exist"));
                continue;
            }
            if let Some(anchor) = anchor {
                let headings = anchors(&fs::read_to_string(&linked).unwrap_or_default());
                if !headings.contains(anchor) {
                    broken.push(format!("{shown}: {target} names no heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 0, "no relative links were checked");
}

#[test]
fn every_page_named_in_a_comment_exists() {
    let root = root();
    let mut files = Vec::new();
    files_named(&root, &is_commented_source, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&root).unwrap().display().to_string();
        for reference in comment_references(&text) {
            checked += 1;
            let (path, anchor) = match reference.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (reference.as_str(), None),
            };
            let Ok(page) = fs::read_to_string(root.join(path)) else {
                broken.push(format!("{shown}: {reference} does not exist"));
                continue;
            };
            if anchor.is_some_and(|anchor| !anchors(&page).contains(anchor)) {
                broken.push(format!("{shown}: {reference} names no heading"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken references:\n{}",
        broken.join("\n")
    );
    assert!(checked > 0, "no references to docs/ were checked");
}

#[test]
fn anchors_follow_githubs_rules() {
    let text =
        "# Backup and restore\n## A REMOVE fails: who depends on it\n## Backup and restore\n";
    let anchors = anchors(text);
    assert!(anchors.contains("backup-and-restore"));
    assert!(anchors.contains("backup-and-restore-1"));
    assert!(anchors.contains("a-remove-fails-who-depends-on-it"));
    assert_eq!(normalize(Path::new("a/../../b")), None);
    assert_eq!(
        link_targets("see [x](docs/a.md#b) and `[y](z)`"),
        ["docs/a.md#b"]
    );
    let comments =
        "//! See `docs/a.md#b-c`, docs/d.md.\nlet x = \"docs/e.md\";\n# wt-docs/f.md docs/ alone\n";
    assert_eq!(comment_references(comments), ["docs/a.md#b-c", "docs/d.md"]);
}
