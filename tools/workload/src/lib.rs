//! Package graphs for the harness and the benchmark, each a closed (every
//! dependency is itself a package), acyclic [`Package`] list: the Homebrew
//! list the official harness embeds ([`HOMEBREW_LIST`]), a list of that
//! format in a file ([`parse_list`]), or one generated from a seed in the
//! same shape ([`generate`]). [`Rng`] is the seeded generator the tools
//! share, so a printed seed repeats a run. [`start_server`] and [`TempDir`]
//! start a server and hold a scratch directory for the bench and the tests.

mod launch;

pub use launch::{log_field, start_server, Started, TempDir};
use package_indexer::package_list::{self, ListError};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

/// The Homebrew dependency list the challenge's official harness embeds.
pub const HOMEBREW_LIST: &str = include_str!("../../../data/brew-dependencies.txt");

/// One package and the names of the packages it depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub dependencies: Vec<String>,
}

/// Where a tool's packages come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// [`HOMEBREW_LIST`].
    Homebrew,
    /// A Homebrew-style list in a file.
    File(PathBuf),
    /// [`generate`]`(seed, count)`.
    Generated { seed: u64, count: usize },
}

impl Source {
    /// The packages; the error is one line naming the file at fault.
    pub fn load(&self) -> Result<Vec<Package>, String> {
        match self {
            Source::Homebrew => parse_list(HOMEBREW_LIST).map_err(|e| format!("{self}: {e}")),
            Source::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                parse_list(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
            Source::Generated { seed, count } => Ok(generate(*seed, *count)),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Homebrew => f.write_str("the embedded Homebrew list"),
            Source::File(path) => write!(f, "the list in {}", path.display()),
            Source::Generated { seed, .. } => write!(f, "generated from seed {seed}"),
        }
    }
}

/// Parses a Homebrew-style dependency list into a closed, acyclic set.
///
/// Lines are read by [`package_list::parse_line`]. A dependency that has no
/// line of its own (the real dump has two: `docbook2X`, `gpg`) becomes a
/// package without dependencies, appended after the listed ones in the
/// order first mentioned. Besides what a line may not hold, rejects a
/// package listed twice and dependency cycles, since a server must refuse
/// those and the harness could then never finish.
pub fn parse_list(text: &str) -> Result<Vec<Package>, ListError> {
    let mut packages = Vec::new();
    let mut line_of: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let Some(entry) = package_list::parse_line(line, raw)? else {
            continue;
        };
        if let Some(first) = line_of.insert(entry.name.to_string(), line) {
            return Err(ListError {
                line,
                reason: format!("package {:?} already listed on line {first}", entry.name),
            });
        }
        packages.push(Package {
            name: entry.name.to_string(),
            dependencies: entry.dependencies.iter().map(|d| d.to_string()).collect(),
        });
    }

    let mut implied = Vec::new();
    let mut seen_implied = HashSet::new();
    for package in &packages {
        for dependency in &package.dependencies {
            if !line_of.contains_key(dependency) && seen_implied.insert(dependency.as_str()) {
                implied.push(Package {
                    name: dependency.clone(),
                    dependencies: Vec::new(),
                });
            }
        }
    }
    packages.extend(implied);

    if let Some(cycle) = find_cycle(&packages) {
        let line = line_of.get(&cycle[0]).copied().unwrap_or(0);
        return Err(ListError {
            line,
            reason: format!("dependency cycle: {}", cycle.join(" -> ")),
        });
    }
    Ok(packages)
}

/// Finds one dependency cycle in a closed package set, as the names along it
/// with the first repeated at the end; `None` when the graph is acyclic.
fn find_cycle(packages: &[Package]) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = packages
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let dependencies = |i: usize| {
        let names = packages[i].dependencies.iter();
        names.filter_map(|d| index.get(d.as_str()).copied())
    };
    // Kahn's algorithm: peel off the packages whose dependencies are all peeled.
    let mut waiting: Vec<usize> = (0..packages.len())
        .map(|i| dependencies(i).count())
        .collect();
    let mut dependents = vec![Vec::new(); packages.len()];
    for i in 0..packages.len() {
        dependencies(i).for_each(|d| dependents[d].push(i));
    }
    let mut ready: Vec<usize> = (0..packages.len()).filter(|&i| waiting[i] == 0).collect();
    while let Some(peeled) = ready.pop() {
        for &dependent in &dependents[peeled] {
            waiting[dependent] -= 1;
            if waiting[dependent] == 0 {
                ready.push(dependent);
            }
        }
    }
    // The rest lies on a cycle or depends on one: follow unpeeled
    // dependencies until one comes round again.
    let mut path = vec![(0..packages.len()).find(|&i| waiting[i] > 0)?];
    let mut on_path = vec![None; packages.len()];
    loop {
        let last = *path.last()?;
        on_path[last] = Some(path.len() - 1);
        let next = dependencies(last).find(|&d| waiting[d] > 0)?;
        path.push(next);
        if let Some(at) = on_path[next] {
            return Some(
                path[at..]
                    .iter()
                    .map(|&i| packages[i].name.clone())
                    .collect(),
            );
        }
    }
}

/// A small, fast, seeded pseudo-random generator (splitmix64).
///
/// Not for cryptography; chosen because it is tiny, has no bad seeds and
/// gives the same stream on every platform.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..bound`; `bound` must be non-zero.
    // The low half of the product is compared on purpose; the high half
    // fits a u64 whole.
    #[allow(clippy::cast_possible_truncation)]
    pub fn below(&mut self, bound: u64) -> u64 {
        // Lemire's multiply-shift with rejection keeps the result unbiased.
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniform index into a collection of `len` items; `len` must be non-zero.
    pub fn index(&mut self, len: usize) -> usize {
        let below = self.below(len as u64);
        // Below `len`, which is a usize.
        usize::try_from(below).unwrap_or(len - 1)
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `percent`/100 (100 and above: always).
    pub fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }

    /// One item of a non-empty slice, uniformly.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.index(i + 1));
        }
    }
}

/// The dependency-count distribution of the packages in the Homebrew dump
/// that have any: at each cumulative fraction, the count, interpolated
/// linearly between them. About 43% of all packages have none; see
/// [`NO_DEPENDENCY_PERCENT`].
const DEPENDENCY_FRACTIONS: [f64; 18] = [
    0.0, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 0.98, 0.99,
    0.995, 1.0,
];
const DEPENDENCY_COUNTS: [f64; 18] = [
    1.0, 1.0, 2.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 26.0, 40.0, 48.0, 54.0, 61.0, 69.0, 78.0, 85.0,
    110.0,
];

/// Chance that a package which could have dependencies has none. Homebrew
/// has 1,459 of 3,370 (43%) without; the bottom library layer, about 5% of
/// all packages, has none by construction, so the rest draw slightly fewer.
const NO_DEPENDENCY_PERCENT: u32 = 41;

/// Share of Homebrew packages that anything depends on (780 of 3,370); the
/// generator makes this many "libraries" and lets only them be dependencies.
const LIBRARY_PERCENT: usize = 23;

/// Libraries are built in this many layers, each depending only on lower
/// ones, so dependency chains stay as short as Homebrew's (at most 6 packages).
const LIBRARY_LAYERS: usize = 5;

/// How strongly dependencies favour the oldest libraries. Homebrew's are very
/// concentrated (pkg-config and xz are each needed by about 1,000 packages);
/// a target drawn as `pool * u^BIAS` for uniform `u` gives a similar skew.
const POPULARITY_BIAS: i32 = 3;

/// Builds `count` packages shaped like the Homebrew dump, the same for the
/// same seed.
///
/// The first `LIBRARY_PERCENT` of the packages created are libraries in
/// `LIBRARY_LAYERS` layers; every package depends only on libraries of
/// lower layers (applications on any library), so the graph is acyclic and
/// closed. The result is sorted by name so that its order says nothing about
/// the dependency order.
pub fn generate(seed: u64, count: usize) -> Vec<Package> {
    let mut rng = Rng::new(seed);
    let names = generate_names(&mut rng, count);
    let libraries = count * LIBRARY_PERCENT / 100;
    let mut packages: Vec<Package> = Vec::with_capacity(count);
    for (created, name) in names.into_iter().enumerate() {
        // Libraries below this one's layer: ceil(layer * libraries / LAYERS).
        let pool = if created < libraries {
            let layer = created * LIBRARY_LAYERS / libraries;
            (layer * libraries).div_ceil(LIBRARY_LAYERS)
        } else {
            libraries
        };
        let wanted = dependency_count(&mut rng).min(pool);
        let dependencies = pick_popular(&mut rng, pool, wanted)
            .into_iter()
            .map(|t| packages[t].name.clone())
            .collect();
        packages.push(Package { name, dependencies });
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    packages
}

/// Draws a dependency count from the Homebrew-like distribution.
// A rounded count of at least 1: the float-to-int cast saturates.
#[allow(clippy::cast_possible_truncation)]
fn dependency_count(rng: &mut Rng) -> usize {
    if rng.percent(NO_DEPENDENCY_PERCENT) {
        return 0;
    }
    let u = rng.unit();
    let upper = DEPENDENCY_FRACTIONS
        .iter()
        .position(|&fraction| fraction > u)
        .unwrap_or(DEPENDENCY_FRACTIONS.len() - 1)
        .max(1);
    let (f0, f1) = (DEPENDENCY_FRACTIONS[upper - 1], DEPENDENCY_FRACTIONS[upper]);
    let (c0, c1) = (DEPENDENCY_COUNTS[upper - 1], DEPENDENCY_COUNTS[upper]);
    let count = c0 + (c1 - c0) * (u - f0) / (f1 - f0);
    count.round().max(1.0) as usize
}

/// Picks `wanted` distinct indices below `pool` (requires `wanted <= pool`),
/// favouring low ones.
// A fraction of `pool` as an index: the float-to-int cast saturates.
#[allow(clippy::cast_possible_truncation)]
fn pick_popular(rng: &mut Rng, pool: usize, wanted: usize) -> Vec<usize> {
    const BIASED_TRIES: usize = 8;
    let mut chosen: Vec<usize> = Vec::with_capacity(wanted);
    while chosen.len() < wanted {
        let mut candidate = None;
        for _ in 0..BIASED_TRIES {
            let pick = (pool as f64 * rng.unit().powi(POPULARITY_BIAS)) as usize;
            let pick = pick.min(pool - 1);
            if !chosen.contains(&pick) {
                candidate = Some(pick);
                break;
            }
        }
        // When the popular ones are all taken, walk to the next free index;
        // one exists because fewer than `pool` are chosen.
        let pick = candidate.unwrap_or_else(|| {
            let mut walk = rng.index(pool);
            while chosen.contains(&walk) {
                walk = (walk + 1) % pool;
            }
            walk
        });
        chosen.push(pick);
    }
    chosen
}

/// Letters weighted roughly like English, as package names are.
const LETTERS: &[u8] = b"eeeeiiiiooottttaaaannnnllllrrrsssccgggppmmbbddffhhkkuuxxyzzvwjq";

/// Fragments real packages often start with.
const PREFIXES: [&str; 6] = ["lib", "py", "git-", "gnu-", "x", "open"];

/// Builds `count` distinct valid names over the whole protocol alphabet,
/// mostly lowercase words like Homebrew's, some with digits, `-`, `_`, `+`,
/// `.`, `@` versions, an uppercase letter, or a `tap/` prefix.
fn generate_names(rng: &mut Rng, count: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    let mut taken = HashSet::with_capacity(count);
    while names.len() < count {
        let mut name = generate_name(rng);
        if taken.contains(&name) {
            // Collisions are rare; a numeric suffix keeps the name plausible.
            name = format!("{name}{}", names.len());
        }
        if taken.insert(name.clone()) {
            names.push(name);
        }
    }
    names
}

// Offsets into a letter or digit range, each below 26.
#[allow(clippy::cast_possible_truncation)]
fn generate_name(rng: &mut Rng) -> String {
    let mut name = String::new();
    if rng.percent(3) {
        name.push_str(rng.pick(&["homebrew/", "tap/", "cask/"]));
    }
    if rng.percent(15) {
        name.push_str(rng.pick(&PREFIXES));
    }
    let words = 1 + usize::from(rng.percent(25)) + usize::from(rng.percent(5));
    for word in 0..words {
        if word > 0 {
            name.push(if rng.percent(90) { '-' } else { '_' });
        }
        let length = 2 + rng.index(7);
        for _ in 0..length {
            name.push(char::from(rng.pick(LETTERS)));
        }
    }
    if rng.percent(1) {
        // Homebrew has the odd capital, as in docbook2X.
        name.push(char::from(b'A' + rng.below(26) as u8));
    }
    match rng.below(100) {
        0..=4 => name.push(char::from(b'0' + rng.below(10) as u8)),
        5 => name.push_str(rng.pick(&["+", "++"])),
        6..=7 => {
            name.push('@');
            name.push_str(&format!("{}.{}", 1 + rng.below(3), rng.below(12)));
        }
        8 => name.push_str(&format!(".{}", rng.below(10))),
        _ => {}
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use package_indexer::PackageName;
    use std::path::Path;

    fn names_of(packages: &[Package]) -> Vec<&str> {
        packages.iter().map(|p| p.name.as_str()).collect()
    }

    /// Closed: every dependency is a package. Returns the map name -> package.
    fn assert_closed(packages: &[Package]) -> HashMap<&str, &Package> {
        let by_name: HashMap<&str, &Package> =
            packages.iter().map(|p| (p.name.as_str(), p)).collect();
        assert_eq!(by_name.len(), packages.len(), "names are unique");
        for package in packages {
            for dependency in &package.dependencies {
                assert!(
                    by_name.contains_key(dependency.as_str()),
                    "{} depends on missing {dependency}",
                    package.name
                );
            }
        }
        by_name
    }

    #[test]
    fn parses_lines_with_irregular_spacing_and_implied_packages() {
        let text = "b: a  c \n\na:\nd: c c a\n";
        let packages = parse_list(text).unwrap();
        assert_eq!(names_of(&packages), ["b", "a", "d", "c"]);
        assert_eq!(packages[0].dependencies, ["a", "c"]);
        assert!(packages[1].dependencies.is_empty());
        assert_eq!(packages[2].dependencies, ["c", "a"], "repeats count once");
        assert!(packages[3].dependencies.is_empty(), "implied leaf");
    }

    #[test]
    fn tolerates_crlf_line_ends() {
        let packages = parse_list("a:\r\nb: a\r\n").unwrap();
        assert_eq!(packages[1].dependencies, ["a"]);
    }

    #[test]
    fn parse_errors_name_the_line_and_reason() {
        let cases: [(&str, usize, &str); 3] = [
            ("a:\n\nno colon here\n", 3, "no `:`"),
            ("a:\nb:\na: b\n", 3, "already listed on line 1"),
            ("x:\na: b\nb: c\nc: a\n", 2, "cycle: a -> b -> c -> a"),
        ];
        for (text, line, reason) in cases {
            let error = parse_list(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.reason.contains(reason), "{text:?}: {error}");
            assert!(error.to_string().starts_with(&format!("line {line}: ")));
        }
    }

    #[test]
    fn the_embedded_homebrew_list_is_closed_and_acyclic() {
        let packages = Source::Homebrew.load().unwrap();
        assert_eq!(packages.len(), 3370);
        assert_closed(&packages);
        let leaves = packages
            .iter()
            .filter(|p| p.dependencies.is_empty())
            .count();
        assert_eq!(leaves, 1459);
        let most = packages.iter().map(|p| p.dependencies.len()).max();
        assert_eq!(most, Some(110));
    }

    #[test]
    fn sources_load_files_and_name_the_one_at_fault() {
        let shipped =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/brew-dependencies.txt");
        let from_file = Source::File(shipped.clone()).load().unwrap();
        assert_eq!(from_file, Source::Homebrew.load().unwrap());
        assert_eq!(
            Source::File(shipped.clone()).to_string(),
            format!("the list in {}", shipped.display())
        );

        let missing = Source::File(PathBuf::from("/nonexistent/brew.txt"));
        let error = missing.load().unwrap_err();
        assert!(
            error.starts_with("cannot read /nonexistent/brew.txt: "),
            "{error}"
        );
        let not_a_list = Source::File(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        let error = not_a_list.load().unwrap_err();
        assert!(error.contains("Cargo.toml: line 1: "), "{error}");

        let generated = Source::Generated { seed: 4, count: 30 };
        assert_eq!(generated.load().unwrap(), generate(4, 30));
        assert_eq!(generated.to_string(), "generated from seed 4");
    }

    #[test]
    fn generated_graph_is_closed_acyclic_and_valid() {
        let sizes = (0..40).chain([3370]);
        for (seed, count) in [0, 1, 42, u64::MAX].into_iter().cycle().zip(sizes) {
            let packages = generate(seed, count);
            assert_eq!(packages.len(), count);
            assert_closed(&packages);
            assert_eq!(find_cycle(&packages), None, "seed {seed}");
            for package in &packages {
                assert!(
                    PackageName::new(package.name.as_bytes()).is_some(),
                    "{:?}",
                    package.name
                );
                let unique: HashSet<&String> = package.dependencies.iter().collect();
                assert_eq!(unique.len(), package.dependencies.len());
                assert!(!package.dependencies.contains(&package.name));
            }
        }
    }

    /// Packages on the longest dependency chain starting at `name`.
    fn chain_length<'a>(
        name: &'a str,
        by_name: &HashMap<&'a str, &'a Package>,
        known: &mut HashMap<&'a str, usize>,
    ) -> usize {
        if let Some(&length) = known.get(name) {
            return length;
        }
        let below = by_name[name]
            .dependencies
            .iter()
            .map(|d| chain_length(d, by_name, known))
            .max();
        let length = 1 + below.unwrap_or(0);
        known.insert(name, length);
        length
    }

    #[test]
    fn generated_graph_has_the_homebrew_shape() {
        let packages = generate(7, 3370);
        let leaves = packages
            .iter()
            .filter(|p| p.dependencies.is_empty())
            .count();
        assert!((1200..=1700).contains(&leaves), "{leaves} without deps");
        let most = packages.iter().map(|p| p.dependencies.len()).max();
        assert!(most.is_some_and(|m| (50..=110).contains(&m)), "{most:?}");
        let edges: usize = packages.iter().map(|p| p.dependencies.len()).sum();
        assert!((15_000..=30_000).contains(&edges), "{edges} edges");
        let by_name = assert_closed(&packages);
        let mut chain_lengths = HashMap::new();
        let longest = packages
            .iter()
            .map(|p| chain_length(&p.name, &by_name, &mut chain_lengths))
            .max();
        assert_eq!(longest, Some(6), "longest dependency chain, as in Homebrew");
        let alphabet: HashSet<u8> = packages.iter().flat_map(|p| p.name.bytes()).collect();
        for special in b"+-.@_/" {
            assert!(alphabet.contains(special), "{}", char::from(*special));
        }
    }

    #[test]
    fn generation_is_deterministic_per_seed() {
        assert_eq!(generate(5, 500), generate(5, 500));
        assert_ne!(generate(5, 500), generate(6, 500));
        assert!(generate(5, 0).is_empty());
        assert_eq!(generate(5, 1)[0].dependencies, Vec::<String>::new());
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(9);
        let mut b = Rng::new(9);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(7) < 7);
            let x = a.unit();
            assert!((0.0..1.0).contains(&x));
            b.below(7);
            b.unit();
        }
        assert!(!Rng::new(1).percent(0));
        assert!(Rng::new(1).percent(100));
        let mut items: Vec<u32> = (0..50).collect();
        Rng::new(3).shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }
}

/// The launcher's tests, here rather than in its file, which every
/// integration test includes.
#[cfg(test)]
mod launch_tests {
    use super::launch::*;
    use std::process::Command;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn log_fields_come_from_text_and_json_lines() {
        let text = "ts=x level=info msg=\"listening\" addr=127.0.0.1:40123 admin_addr=\"[::1]:9\"";
        assert_eq!(log_field(text, "addr").as_deref(), Some("127.0.0.1:40123"));
        assert_eq!(log_field(text, "admin_addr").as_deref(), Some("[::1]:9"));
        let json = r#"{"msg":"listening","addr":"127.0.0.1:1","packages":7}"#;
        assert_eq!(log_field(json, "addr").as_deref(), Some("127.0.0.1:1"));
        assert_eq!(log_field(json, "packages").as_deref(), Some("7"));
        assert_eq!(log_field(json, "missing"), None);
    }

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn a_start_line_gives_the_addresses_and_an_early_exit_its_status() {
        let script = "echo 'level=info msg=\"listening\" addr=127.0.0.1:5 admin_addr=off' >&2; exec sleep 30";
        let mut started = start_server(shell(script), |_| {}, Duration::from_secs(10)).unwrap();
        assert_eq!(started.addr, "127.0.0.1:5".parse().unwrap());
        assert_eq!(started.admin_addr, None);
        started.child.kill().unwrap();
        started.child.wait().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&lines);
        let on_line = move |line: &str| seen.lock().unwrap().push(line.to_string());
        let status = start_server(
            shell("echo oops >&2; exit 3"),
            on_line,
            Duration::from_secs(10),
        );
        assert_eq!(status.err().flatten().and_then(|s| s.code()), Some(3));
        assert_eq!(*lines.lock().unwrap(), ["oops"]);
        let silent = start_server(shell("exec sleep 30"), |_| {}, Duration::from_millis(100));
        assert!(matches!(silent, Err(None)));
        let dir = TempDir::new("launch-test").unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }
}
