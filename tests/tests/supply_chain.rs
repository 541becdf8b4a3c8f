//! What the build takes from outside: read from the lock file, the Python
//! requirements and the CI script themselves.

use std::path::PathBuf;

fn root() -> PathBuf {
    infra::template::template_path()
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `dependencies` of a package in Cargo.lock (names only).
fn locked_dependencies(lock: &str, name: &str) -> Vec<String> {
    let block = lock
        .split("[[package]]")
        .find(|b| b.contains(&format!("\nname = \"{name}\"\n")))
        .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
    let Some(deps) = block.split("dependencies = [").nth(1) else {
        return vec![];
    };
    deps.split(']')
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .map(|l| l.split([' ', '"']).next().unwrap().to_string())
        .collect()
}

#[test]
fn aes_gcm_wipes_its_key_schedules() {
    let lock = read("Cargo.lock");
    for crate_name in ["aes-gcm", "aes", "ghash"] {
        assert!(
            locked_dependencies(&lock, crate_name).contains(&"zeroize".to_string()),
            "{crate_name} is built without its zeroize feature"
        );
    }
}

#[test]
fn the_yaml_crate_is_a_maintained_one() {
    let lock = read("Cargo.lock");
    for unmaintained in ["serde_yaml", "serde_yml"] {
        assert!(
            !lock.contains(&format!("\nname = \"{unmaintained}\"\n")),
            "{unmaintained} is in Cargo.lock"
        );
    }
    assert!(locked_dependencies(&lock, "infra").contains(&"yaml_serde".to_string()));
}

#[test]
fn every_python_package_is_pinned_with_its_hashes_and_installed_by_them() {
    let scripts = root().join("scripts");
    let mut groups = 0;
    for entry in std::fs::read_dir(&scripts).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(group) = name
            .strip_prefix("requirements-")
            .and_then(|n| n.strip_suffix(".in"))
        else {
            continue;
        };
        groups += 1;
        let compiled = read(&format!("scripts/requirements-{group}.txt"));
        // Each requirement: `name==version \` then its `--hash=sha256:` lines.
        let mut packages = 0;
        let lines: Vec<&str> = compiled.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.is_empty() || line.starts_with([' ', '#']) {
                continue;
            }
            assert!(
                line.contains("==") && line.ends_with('\\'),
                "{group}: {line}"
            );
            assert!(
                lines
                    .get(i + 1)
                    .is_some_and(|h| h.trim_start().starts_with("--hash=sha256:")),
                "{group}: {line} has no hash"
            );
            packages += 1;
        }
        // The tools asked for are among them, at the same pins.
        for pin in read(&format!("scripts/requirements-{group}.in"))
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            assert!(
                compiled.contains(&format!("\n{} \\", pin.to_ascii_lowercase())),
                "{group}: {pin} not in the compiled file"
            );
        }
        // (standardwebhooks, the receiver group's one package, has no
        // dependencies.)
        assert!(
            packages > 1 || group == "receiver",
            "{group}: its dependencies are pinned too"
        );
    }
    assert_eq!(groups, 5, "api, build, checkov, receiver, test");
    // test and build share one venv: one version of each package they share.
    let pins = |group: &str| -> std::collections::BTreeMap<String, String> {
        read(&format!("scripts/requirements-{group}.txt"))
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_alphanumeric()))
            .filter_map(|l| {
                let (name, version) = l.split_whitespace().next()?.split_once("==")?;
                Some((name.split('[').next()?.to_string(), version.to_string()))
            })
            .collect()
    };
    let (test, build) = (pins("test"), pins("build"));
    for (name, version) in &test {
        if let Some(other) = build.get(name) {
            assert_eq!(
                version, other,
                "{name}: test and build pin different versions"
            );
        }
    }
    // One installer, with --require-hashes; no other pip install -r.
    let lib = read("scripts/lib.sh");
    assert!(lib.contains("--require-hashes -r \"$req\""));
    for script in [
        "api-test",
        "check-template",
        "test",
        "local-stack",
        "browser-test",
        "receiver-python",
    ] {
        let text = read(&format!("scripts/{script}"));
        assert!(
            !text.contains("pip install"),
            "scripts/{script} installs itself"
        );
    }
}

#[test]
fn ci_runs_cargo_deny_offline_with_every_check() {
    let ci = read(".ci/run");
    assert!(ci.lines().any(|l| l.trim() == "scripts/deny"), "{ci}");
    let deny = read("scripts/deny");
    assert!(deny.contains("cargo deny --offline --locked check \"${checks[@]}\""));
    assert!(deny.contains("checks=(bans sources licenses)"));
    assert!(deny.contains("checks=(advisories \"${checks[@]}\")"));
    let config = read("deny.toml");
    for section in ["[advisories]", "[licenses]", "[bans]", "[sources]"] {
        assert!(config.contains(section), "deny.toml has no {section}");
    }
    assert!(config.contains("unknown-registry = \"deny\""));
    assert!(config.contains("unknown-git = \"deny\""));
}
