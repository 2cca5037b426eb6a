use super::*;

fn read(text: &str) -> List<'_> {
    List::read(text.as_bytes()).unwrap()
}

fn names<'a>(list: &List<'a>, ids: &[u32]) -> Vec<&'a str> {
    ids.iter().map(|&id| list.name(id)).collect()
}

fn id(list: &List, name: &str) -> u32 {
    (0..list.names.len() as u32)
        .find(|&id| list.name(id) == name)
        .unwrap()
}

fn index_lines(list: &List, ids: &[u32]) -> String {
    let mut lines = Vec::new();
    for &id in ids {
        list.push_index_line(&mut lines, id);
    }
    String::from_utf8(lines).unwrap()
}

#[test]
fn orders_dependencies_first_walking_from_the_list_order() {
    let list = read("app: lib  zlib lib\n\nlib: zlib\nzlib:\ntool:\r\n");
    let order = order(&list, &[]);
    assert_eq!(names(&list, &order.send), ["zlib", "lib", "app", "tool"]);
    assert_eq!(order.send.len(), list.len());
    assert!(order.report.is_empty());
    assert_eq!(
        index_lines(&list, &order.send),
        "INDEX|zlib|\nINDEX|lib|zlib\nINDEX|app|lib,zlib\nINDEX|tool|\n"
    );
}

#[test]
fn a_list_in_dependency_order_is_sent_as_it_is() {
    let list = read("zlib:\nlib: zlib gpg\napp: lib zlib\ntool:\n");
    assert_eq!(
        names(&list, &order(&list, &[]).send),
        ["zlib", "lib", "app", "tool"]
    );
    // Missing a dependency, it is ordered and reported as any list.
    let order = order(&list, &[id(&list, "gpg")]);
    assert_eq!(names(&list, &order.send), ["zlib", "tool"]);
    assert_eq!(
        order.report[1],
        "2 packages depending on those cannot be indexed either: lib, app"
    );
}

#[test]
fn names_without_a_line_come_in_the_order_first_named() {
    let list = read("app: gpg lib docbook2X\nlib: gpg\n");
    let unlisted: Vec<u32> = list.unlisted().collect();
    assert_eq!(names(&list, &unlisted), ["gpg", "docbook2X"]);
    // Met (on the server, or indexed first), they order nothing.
    let order = order(&list, &[]);
    assert_eq!(names(&list, &order.send), ["lib", "app"]);
    assert_eq!(
        index_lines(&list, &unlisted),
        "INDEX|gpg|\nINDEX|docbook2X|\n"
    );
}

#[test]
fn names_missing_dependencies_cycles_and_what_hangs_on_them() {
    let text = "\
ok: base
base:
a: b
b: c base
c: a
d: b
e: missing other
f: e
g: d ok
x: y
y: x z
z: x
";
    let list = read(text);
    let missing = [id(&list, "missing"), id(&list, "other")];
    let order = order(&list, &missing);
    assert_eq!(names(&list, &order.send), ["base", "ok"]);
    assert_eq!(list.len() - order.send.len(), 10);
    assert_eq!(
        order.report,
        [
            "missing dependency missing (not in the list, not on the server), needed by e",
            "missing dependency other (not in the list, not on the server), needed by e",
            "dependency cycle: a -> b -> c -> a",
            "dependency cycle: x -> y -> x; tangled with it in further cycles: z",
            "4 packages depending on those cannot be indexed either: d, e, f, g",
        ]
    );
}

#[test]
fn a_cycle_is_walked_within_its_own_group() {
    // `p` of the second group depends on `r` of the first.
    let list = read("r: s\ns: r\np: r q\nq: p\n");
    assert_eq!(
        order(&list, &[]).report,
        [
            "dependency cycle: r -> s -> r",
            "dependency cycle: p -> q -> p"
        ]
    );
}

#[test]
fn long_name_lists_are_cut_with_a_count() {
    let mut text = String::from("root: gone\n");
    for i in 0..25 {
        text.push_str(&format!("p{i}: root\n"));
    }
    let list = read(&text);
    let report = order(&list, &[id(&list, "gone")]).report;
    assert!(
        report[1].starts_with("26 packages depending on those"),
        "{report:?}"
    );
    assert!(report[1].ends_with("p18 and 6 more"), "{report:?}");
}

#[test]
fn long_cycles_and_many_missing_names_are_cut_too() {
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&format!("c{i}: c{}\n", (i + 1) % 30));
    }
    for i in 0..25 {
        text.push_str(&format!("m{i}: gone{i}\n"));
    }
    let list = read(&text);
    let missing: Vec<u32> = list.unlisted().collect();
    let report = order(&list, &missing).report;
    assert_eq!(report.len(), MAX_REPORTED + 3, "{report:?}");
    assert_eq!(report[MAX_REPORTED], "and 5 more missing dependencies");
    assert!(
        report[MAX_REPORTED + 1].starts_with("dependency cycle of 30 packages: c0 -> c1 -> "),
        "{report:?}"
    );
    assert!(
        report[MAX_REPORTED + 1].ends_with(" -> c19 -> ... -> c0"),
        "{report:?}"
    );
}

#[test]
fn errors_name_their_lines_duplicates_both() {
    let text = b"a: b\nb:\nbad line\na:\nc: \xff\n";
    let errors = List::read(text).unwrap_err();
    assert_eq!(errors.len(), 3);
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        shown[0].starts_with("line 3: expected `name: dep dep ...`"),
        "{shown:?}"
    );
    assert_eq!(
        shown[1],
        "line 4: package a is listed twice, on line 1 and on line 4"
    );
    assert_eq!(shown[2], "line 5: not valid UTF-8");
}

#[test]
fn every_error_comes_back_in_line_order() {
    let text = format!("a:\n{}a:\n", "?\n".repeat(MAX_REPORTED + 5));
    let errors = List::read(text.as_bytes()).unwrap_err();
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, (2..MAX_REPORTED + 8).collect::<Vec<_>>());
    assert!(errors.last().unwrap().reason.contains("listed twice"));
}

#[test]
fn a_name_listed_again_after_new_names_is_named_once() {
    let errors = List::read(b"a:\nb:\na:\nc:\nb:\n").unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "line 3: package a is listed twice, on line 1 and on line 3",
            "line 5: package b is listed twice, on line 2 and on line 5",
        ]
    );
}

#[test]
fn the_table_grows_past_its_first_size() {
    // One package naming thousands of names without a line.
    let deps: Vec<String> = (0..5000).map(|i| format!("d{i}")).collect();
    let text = format!("top: {}\nd7: d8\n", deps.join(" "));
    let list = read(&text);
    assert_eq!(list.unlisted().len(), 4999);
    assert_eq!(list.name(id(&list, "d4999")), "d4999");
    assert_eq!(list.dependencies(0).len(), 5000);
    assert_eq!(list.dependencies(1), [id(&list, "d8")]);
}

#[test]
fn a_shuffled_list_is_sent_whole_each_package_after_its_dependencies() {
    // Each package depends on up to three earlier ones, listed last first.
    let packages = 20_000;
    let mut seed = 7u64;
    let mut text = String::new();
    for i in (0..packages).rev() {
        let mut deps = Vec::new();
        for _ in 0..3.min(i) {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            deps.push(format!(
                "a-name-longer-than-sixteen-bytes-{}",
                (seed >> 33) as usize % i
            ));
        }
        let line = format!("a-name-longer-than-sixteen-bytes-{i}: {}\n", deps.join(" "));
        text.push_str(&line);
    }
    let list = read(&text);
    assert_eq!(list.len(), packages);
    assert!(list.unlisted().is_empty());
    let first = order(&list, &[]);
    assert_eq!(first.send.len(), packages);
    let mut position = vec![0; packages];
    for (at, &package) in first.send.iter().enumerate() {
        position[package as usize] = at;
    }
    for package in 0..packages as u32 {
        for &dependency in list.dependencies(package) {
            assert!(position[dependency as usize] < position[package as usize]);
        }
    }
    assert_eq!(order(&list, &[]).send, first.send);
    // And each line sent is the line as listed.
    let sent = index_lines(&list, &first.send);
    let mut sent: Vec<&str> = sent.lines().collect();
    sent.sort_unstable();
    let mut listed: Vec<String> = text
        .lines()
        .map(|line| {
            let entry = crate::package_list::parse_line(1, line).unwrap().unwrap();
            let deps: Vec<&str> = entry.dependencies.iter().map(|d| d.as_str()).collect();
            format!("INDEX|{}|{}", entry.name, deps.join(","))
        })
        .collect();
    listed.sort_unstable();
    assert_eq!(sent, listed);
}

#[test]
fn names_hash_apart() {
    let mut slots = std::collections::HashSet::new();
    for i in 0..1000 {
        slots.insert(hash(format!("pkg{i:05}").as_bytes()) & 0xFFF);
    }
    assert!(slots.len() > 800, "{}", slots.len());
    let tags: std::collections::HashSet<u64> = (0..1000)
        .map(|i| hash(format!("pkg{i}").as_bytes()) >> 32)
        .collect();
    assert_eq!(tags.len(), 1000);
}

#[test]
fn a_name_listed_twice_is_an_error_and_later_packages_are_not() {
    let text = b"a:\nb: a\na:\nc: b\n";
    let errors = List::read(text).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 3);
    assert!(
        errors[0].reason.contains("on line 1 and on line 3"),
        "{}",
        errors[0].reason
    );
}
