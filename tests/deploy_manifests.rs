//! Holds the deployment kit (`deploy/`) to the binary it deploys: every flag
//! the Kubernetes manifests and the systemd unit pass exists in `--help`,
//! every port they publish is the one the server is told to listen on, the
//! stop grace periods outlast `--shutdown-timeout`, every HTTP path a probe
//! or Prometheus requests is served by a real admin listener, every series
//! the alert rules select is one the server exports, and every alert links
//! to its own section of RUNBOOK.md. The top-level Dockerfile's final stage
//! is Ubuntu's LTS image with nothing installed, run by an unprivileged
//! user of its own, and its command, ports, volume and healthcheck work
//! with the binary.
//!
//! The files are read as text, a line at a time: the kit keeps one setting
//! per line, which is all these checks need.

mod common;

use common::{ServerProcess, TempDir};
use std::collections::BTreeMap;
use std::path::Path;

const STATEFULSET: &str = "kubernetes/statefulset.yaml";
const SERVICE: &str = "kubernetes/service.yaml";
const UNIT: &str = "systemd/package-indexer.service";
const SCRAPE_CONFIGS: [&str; 2] = [
    "prometheus/prometheus.yml",
    "prometheus/prometheus-kubernetes.yml",
];

/// Reads a file of the repository, `<relative>` from its root.
fn repo_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Reads a file of the deployment kit, `deploy/<relative>`.
fn kit_file(relative: &str) -> String {
    repo_file(&format!("deploy/{relative}"))
}

/// Values of every `key: value` line (also as a `- key: value` list item),
/// unquoted, in file order.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}:");
    text.lines()
        .map(|line| line.trim_start().trim_start_matches("- "))
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|value| {
            value
                .trim()
                .trim_matches('"')
                .trim_matches('\'')
                .to_string()
        })
        .filter(|value| !value.is_empty())
        .collect()
}

/// The container's `args:` list as flag → value.
fn statefulset_flags() -> BTreeMap<String, String> {
    let text = kit_file(STATEFULSET);
    let mut items = Vec::new();
    let mut in_args = false;
    for line in text.lines().map(str::trim) {
        if line == "args:" {
            in_args = true;
        } else if in_args && line.starts_with('#') {
            continue;
        } else if in_args {
            match line.strip_prefix("- ") {
                Some(item) => items.push(item.trim_matches('"').to_string()),
                None => break,
            }
        }
    }
    let mut flags = BTreeMap::new();
    let mut items = items.into_iter().peekable();
    while let Some(flag) = items.next() {
        assert!(flag.starts_with("--"), "args item {flag:?} is not a flag");
        let value = match items.peek() {
            Some(next) if !next.starts_with("--") => items.next().unwrap_or_default(),
            _ => String::new(),
        };
        flags.insert(flag, value);
    }
    assert!(!flags.is_empty(), "no args found in {STATEFULSET}");
    flags
}

/// The unit's `Environment=PACKAGE_INDEXER_<NAME>=value` settings as
/// `--name` → value, the flag each variable stands for.
fn unit_flags() -> BTreeMap<String, String> {
    let flags: BTreeMap<String, String> = kit_file(UNIT)
        .lines()
        .filter_map(|line| line.strip_prefix("Environment=PACKAGE_INDEXER_"))
        .filter_map(|setting| setting.split_once('='))
        .map(|(name, value)| {
            let flag = format!("--{}", name.to_ascii_lowercase().replace('_', "-"));
            (flag, value.to_string())
        })
        .collect();
    assert!(!flags.is_empty(), "no PACKAGE_INDEXER_ settings in {UNIT}");
    flags
}

/// The value of `Key=` in the systemd unit.
fn unit_setting(key: &str) -> String {
    let prefix = format!("{key}=");
    kit_file(UNIT)
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("{UNIT} has no {key}="))
}

/// The instructions of the final stage of the top-level Dockerfile, as
/// (INSTRUCTION, arguments), continuation lines joined.
fn final_stage() -> Vec<(String, String)> {
    let text = repo_file("Dockerfile").replace("\\\n", " ");
    let instructions: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(' '))
        .map(|(name, rest)| (name.to_ascii_uppercase(), rest.trim().to_string()))
        .collect();
    let from = instructions
        .iter()
        .rposition(|(name, _)| name == "FROM")
        .expect("a FROM in the Dockerfile");
    instructions[from..].to_vec()
}

/// The arguments of the final stage's one `name` instruction.
fn final_instruction(name: &str) -> String {
    let found: Vec<String> = final_stage()
        .into_iter()
        .filter(|(instruction, _)| instruction == name)
        .map(|(_, arguments)| arguments)
        .collect();
    assert_eq!(found.len(), 1, "{name} in the final stage: {found:?}");
    found.into_iter().next().unwrap_or_default()
}

/// The strings of an exec-form (JSON array) instruction argument.
fn exec_form(arguments: &str) -> Vec<String> {
    let inner = arguments
        .trim()
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not an exec form: {arguments}"));
    inner
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_string())
        .collect()
}

/// The final stage's `CMD` as flag → value.
fn dockerfile_flags() -> BTreeMap<String, String> {
    let items = exec_form(&final_instruction("CMD"));
    items
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
        .collect()
}

fn help_text() -> String {
    let output = common::binary_command().arg("--help").output().unwrap();
    assert!(output.status.success(), "--help failed: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The `--help` line that documents `flag`.
fn help_line<'a>(help: &'a str, flag: &str) -> Option<&'a str> {
    help.lines().map(str::trim_start).find(|line| {
        line.strip_prefix(flag)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', ',', '=']))
    })
}

fn port_of(host_port: &str) -> u16 {
    let (_, port) = host_port
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{host_port:?} has no port"));
    port.parse()
        .unwrap_or_else(|e| panic!("port in {host_port:?}: {e}"))
}

/// Seconds in a `30s` / `2m` / `45` duration (a bare number is seconds, as
/// in systemd and Kubernetes).
fn seconds(duration: &str) -> u64 {
    let (number, scale) = match duration.strip_suffix('m') {
        Some(minutes) => (minutes, 60),
        None => (duration.trim_end_matches('s'), 1),
    };
    number
        .parse::<u64>()
        .unwrap_or_else(|e| panic!("duration {duration:?}: {e}"))
        * scale
}

/// Pairs each `name:` in a YAML list with the next `key:` after it.
fn named_values(text: &str, key: &str) -> Vec<(String, String)> {
    let mut last_name = None;
    let mut pairs = Vec::new();
    for line in text.lines() {
        if let Some(name) = yaml_values(line, "name").pop() {
            last_name = Some(name);
        } else if let (Some(value), Some(name)) = (yaml_values(line, key).pop(), &last_name) {
            pairs.push((name.clone(), value));
        }
    }
    pairs
}

#[test]
fn every_flag_the_kit_passes_is_in_help() {
    let help = help_text();
    let mut checked = 0;
    for (file, flags) in [
        (STATEFULSET, statefulset_flags()),
        (UNIT, unit_flags()),
        ("Dockerfile", dockerfile_flags()),
    ] {
        for flag in flags.keys() {
            let line = help_line(&help, flag).unwrap_or_else(|| {
                panic!(
                    "{file} passes {flag}, which `package-indexer --help` does not list:\n{help}"
                )
            });
            if file == UNIT {
                // The unit sets variables, not flags: the name must be the
                // one the server reads for this flag.
                let variable = format!(
                    "PACKAGE_INDEXER_{}",
                    flag[2..].to_ascii_uppercase().replace('-', "_")
                );
                assert!(
                    line.contains(&variable),
                    "{file} sets {variable}, but --help names another variable for {flag}: {line}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "found only {checked} flags in the kit");
}

#[test]
fn the_kits_settings_start_a_server() {
    for (file, flags) in [
        (STATEFULSET, statefulset_flags()),
        (UNIT, unit_flags()),
        ("Dockerfile", dockerfile_flags()),
    ] {
        // Same settings, but on ephemeral loopback ports and a scratch
        // data directory.
        let data_dir = TempDir::new("deploy-settings").unwrap();
        let mut args = Vec::new();
        for (flag, value) in &flags {
            let value = match flag.as_str() {
                "--addr" | "--admin-addr" => "127.0.0.1:0".to_string(),
                "--data-dir" => data_dir.path().display().to_string(),
                _ => value.clone(),
            };
            args.push(flag.clone());
            args.push(value);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = ServerProcess::try_start(&args).unwrap_or_else(|(status, logs)| {
            panic!(
                "the server refused {file}'s settings {args:?} ({status:?}):\n{}",
                logs.join("\n")
            )
        });
        assert_eq!(server.http("GET", "/readyz").0, 200, "{file}: not ready");
        assert_eq!(server.connect().ask("INDEX|a|"), "OK", "{file}");
    }
}

#[test]
fn published_ports_are_the_ports_the_server_listens_on() {
    let help = help_text();
    let container_flags = statefulset_flags();
    let protocol_port = port_of(&container_flags["--addr"]);
    let admin_port = port_of(&container_flags["--admin-addr"]);

    // The kit uses the default ports, so a server started without flags
    // matches it too.
    for (flag, port) in [("--addr", protocol_port), ("--admin-addr", admin_port)] {
        let line = help_line(&help, flag).unwrap_or_else(|| panic!("--help lacks {flag}"));
        assert!(
            line.contains(&format!(":{port}")),
            "the kit listens on port {port} for {flag}, but its default is not that: {line}"
        );
    }

    let container_ports: BTreeMap<String, u16> =
        named_values(&kit_file(STATEFULSET), "containerPort")
            .into_iter()
            .map(|(name, port)| (name, port.parse().unwrap()))
            .collect();
    assert_eq!(container_ports.get("protocol"), Some(&protocol_port));
    assert_eq!(container_ports.get("admin"), Some(&admin_port));

    // Probes name the admin port.
    let probe_ports = yaml_values(&kit_file(STATEFULSET), "port");
    assert!(!probe_ports.is_empty(), "no probe ports in {STATEFULSET}");
    for port in probe_ports {
        assert_eq!(port, "admin", "a probe in {STATEFULSET} uses port {port}");
    }

    // Services forward their ports to the container ports of the same name,
    // under the same numbers.
    let service = kit_file(SERVICE);
    let service_ports = named_values(&service, "port");
    assert!(!service_ports.is_empty(), "no ports in {SERVICE}");
    for (name, port) in service_ports {
        let container_port = container_ports
            .get(&name)
            .unwrap_or_else(|| panic!("{SERVICE} port {name} has no container port"));
        assert_eq!(
            port.parse::<u16>().unwrap(),
            *container_port,
            "{SERVICE} port {name}"
        );
    }
    for (name, target) in named_values(&service, "targetPort") {
        assert_eq!(name, target, "{SERVICE} port {name} targets {target}");
    }

    // Prometheus on Kubernetes scrapes the admin port found by DNS.
    let k8s_scrape = kit_file(SCRAPE_CONFIGS[1]);
    assert_eq!(yaml_values(&k8s_scrape, "port"), [admin_port.to_string()]);

    // On a host, the unit's listeners and the static scrape target agree.
    let host_flags = unit_flags();
    assert_eq!(port_of(&host_flags["--addr"]), protocol_port);
    let host_admin = &host_flags["--admin-addr"];
    assert_eq!(port_of(host_admin), admin_port);
    let static_targets: Vec<String> = kit_file(SCRAPE_CONFIGS[0])
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter(|item| {
            item.rsplit_once(':')
                .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        })
        .map(str::to_string)
        .collect();
    assert_eq!(
        static_targets,
        [host_admin.as_str()],
        "static scrape targets"
    );
}

#[test]
fn stop_grace_periods_outlast_the_shutdown_timeout() {
    let container_timeout = seconds(&statefulset_flags()["--shutdown-timeout"]);
    let grace = yaml_values(&kit_file(STATEFULSET), "terminationGracePeriodSeconds");
    assert_eq!(grace.len(), 1, "terminationGracePeriodSeconds: {grace:?}");
    assert!(
        seconds(&grace[0]) > container_timeout,
        "terminationGracePeriodSeconds {} does not exceed --shutdown-timeout {container_timeout}s",
        grace[0]
    );

    let unit_timeout = seconds(&unit_flags()["--shutdown-timeout"]);
    let stop = unit_setting("TimeoutStopSec");
    assert!(
        seconds(&stop) > unit_timeout,
        "TimeoutStopSec={stop} does not exceed the shutdown timeout {unit_timeout}s"
    );
}

#[test]
fn every_path_the_kit_requests_is_served_by_the_admin_listener() {
    let mut paths = yaml_values(&kit_file(STATEFULSET), "path");
    for scrape_config in SCRAPE_CONFIGS {
        paths.extend(yaml_values(&kit_file(scrape_config), "metrics_path"));
    }
    paths.sort();
    paths.dedup();
    // Liveness, readiness and the scrape at least; the server decides below
    // whether each one exists.
    assert!(paths.len() >= 3, "found only {paths:?} in the kit");

    let server = ServerProcess::start(&[]);
    for path in &paths {
        let (status, body) = server.http("GET", path);
        assert_ne!(
            status, 404,
            "the admin listener does not serve {path}: {body}"
        );
    }
    // The check above means something only if unknown paths do get 404.
    let (status, _) = server.http("GET", "/no-such-path");
    assert_eq!(status, 404, "an unknown admin path answered {status}");
}

#[test]
fn every_alert_links_to_its_runbook_section() {
    let rules = kit_file("prometheus/alerts.yml");
    let alerts = yaml_values(&rules, "alert");
    let links = yaml_values(&rules, "runbook_url");
    assert!(!alerts.is_empty(), "no alerts in alerts.yml");
    let runbook = repo_file("RUNBOOK.md");
    let sections: Vec<&str> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .collect();
    assert_eq!(
        links.len(),
        alerts.len(),
        "every alert needs one runbook link"
    );
    for (alert, link) in alerts.iter().zip(&links) {
        assert_eq!(
            link,
            &format!(
                "{{{{ $externalLabels.runbook_base }}}}#{}",
                alert.to_lowercase()
            ),
            "the runbook link of {alert}"
        );
        assert!(
            sections.contains(&alert.as_str()),
            "RUNBOOK.md has no section \"## {alert}\""
        );
    }
}

#[test]
fn kustomization_applies_every_manifest() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut manifests: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    manifests.sort();
    let mut listed: Vec<String> = kit_file("kubernetes/kustomization.yaml")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .map(str::to_string)
        .collect();
    listed.sort();
    assert_eq!(listed, manifests, "kustomization.yaml resources");
}

/// Every `name{label="value",...}` the rules select from the server's own
/// metrics, as the name and its label matchers other than `job`.
fn rule_selectors(rules: &str) -> Vec<(String, Vec<String>)> {
    let mut selectors = Vec::new();
    let mut rest = rules;
    while let Some(start) = ["package_indexer_", "process_"]
        .iter()
        .filter_map(|prefix| rest.find(prefix))
        .min()
    {
        rest = &rest[start..];
        let name_end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_string();
        rest = &rest[name_end..];
        let mut matchers = Vec::new();
        if let Some(inside) = rest.strip_prefix('{') {
            let close = inside.find('}').unwrap_or(inside.len());
            matchers = inside[..close]
                .split(',')
                .map(|matcher| matcher.trim().to_string())
                .filter(|matcher| !matcher.is_empty() && !matcher.starts_with("job="))
                .collect();
        }
        selectors.push((name, matchers));
    }
    selectors
}

#[test]
fn every_series_the_rules_select_is_exported() {
    let selectors = rule_selectors(&kit_file("prometheus/alerts.yml"));
    assert!(selectors.len() >= 10, "found only {selectors:?}");

    // With a data directory, so the durability series exist too.
    let data_dir = TempDir::new("deploy-metrics").unwrap();
    let data_dir = data_dir.path().display().to_string();
    let server = ServerProcess::start(&["--data-dir", &data_dir]);
    let (status, metrics) = server.http("GET", "/metrics");
    assert_eq!(status, 200);
    let samples: Vec<&str> = metrics.lines().filter(|l| !l.starts_with('#')).collect();
    for (name, matchers) in selectors {
        let exported = samples.iter().any(|sample| {
            sample.strip_prefix(name.as_str()).is_some_and(|labels| {
                labels.starts_with(['{', ' '])
                    && matchers
                        .iter()
                        .all(|matcher| labels.contains(matcher.as_str()))
            })
        });
        assert!(
            exported,
            "the rules select {name}{{{}}}, which /metrics does not export:\n{metrics}",
            matchers.join(",")
        );
    }
}

#[test]
fn the_image_is_ubuntu_lts_with_nothing_installed_run_by_its_own_unprivileged_user() {
    let stage = final_stage();
    assert_eq!(
        stage[0].1, "docker.io/library/ubuntu:24.04",
        "the final stage's base"
    );
    for (name, arguments) in &stage {
        assert!(
            !["apt-get", "apt ", "dpkg", "curl", "wget"]
                .iter()
                .any(|tool| arguments.contains(tool)),
            "the final stage installs something: {name} {arguments}"
        );
    }
    // The user is made in the image, and is the one the kit runs as.
    let run = final_instruction("RUN");
    assert!(
        run.contains("useradd --uid 1000 ") && run.contains(" package-indexer"),
        "{run}"
    );
    assert_eq!(final_instruction("USER"), "1000:1000");
    let statefulset = kit_file(STATEFULSET);
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert_eq!(yaml_values(&statefulset, key), ["1000"], "{key}");
    }
    assert_eq!(final_instruction("ENTRYPOINT"), "[\"package-indexer\"]");

    // Ports, volume and healthcheck match what the command tells the
    // binary, and the healthcheck passes against a server started so.
    let flags = dockerfile_flags();
    let ports: Vec<u16> = final_instruction("EXPOSE")
        .split_whitespace()
        .map(|port| port.parse().unwrap())
        .collect();
    assert_eq!(
        ports,
        [port_of(&flags["--addr"]), port_of(&flags["--admin-addr"])]
    );
    let data_dir = flags["--data-dir"].clone();
    assert_eq!(exec_form(&final_instruction("VOLUME")), [data_dir]);
    let healthcheck = final_instruction("HEALTHCHECK");
    let command = exec_form(
        healthcheck
            .split_once("CMD ")
            .map(|(_, command)| command)
            .unwrap_or_else(|| panic!("HEALTHCHECK has no CMD: {healthcheck}")),
    );
    assert_eq!(command[..2], ["package-indexer", "healthcheck"]);
    assert_eq!(command[2], "--admin-addr");
    assert_eq!(port_of(&command[3]), port_of(&flags["--admin-addr"]));

    let server = ServerProcess::start(&[]);
    let admin = server.admin_addr.unwrap().to_string();
    let status = common::binary_command()
        .args(["healthcheck", "--admin-addr", &admin])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "the image's healthcheck fails");
}
