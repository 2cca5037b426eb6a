//! Every relative link in the repository's Markdown files leads somewhere:
//! the file (or folder) exists, and a `#section` names a heading of the
//! file it points to, as GitHub makes anchors of headings. Links to other
//! sites are not followed (CI has no network), and nothing may point
//! outside the repository.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The repository's top level.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file tracked in the repository, outside build output.
fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            markdown_files(&path, found);
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
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
fn anchors_follow_githubs_rules() {
    let text = "# Backup and restore\n## A REMOVE fails: who depends on it\n## Backup and restore\n";
    let anchors = anchors(text);
    assert!(anchors.contains("backup-and-restore"));
    assert!(anchors.contains("backup-and-restore-1"));
    assert!(anchors.contains("a-remove-fails-who-depends-on-it"));
    assert_eq!(normalize(Path::new("a/../../b")), None);
    assert_eq!(link_targets("see [x](docs/a.md#b) and `[y](z)`"), ["docs/a.md#b"]);
}
