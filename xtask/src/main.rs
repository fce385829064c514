//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: formatting, clippy, the whole test suite, loom models, the no_std check, rustdoc.
//! - `no-std`: builds every library crate for `thumbv7em-none-eabihf` without `std` or `alloc`.
//! - `bench [crate]`: the criterion benchmarks.
//! - `soak`: the long tests (`SOAK=1`), in release mode.
//! - `fuzz <crate> [target] [seconds]`: the crate's fuzz target (cargo-fuzz, nightly), or for
//!   `scsi` its never-panic property test with many cases.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The embedded target every library crate must build for.
const NO_STD_TARGET: &str = "thumbv7em-none-eabihf";

/// Crates that are std programs or tools, exempt from the no_std check.
const STD_CRATES: &[&str] = &["xtask", "host", "fixtures"];

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("no-std") => no_std(),
        Some("bench") => bench(args.get(1).map(String::as_str), &args[2.min(args.len())..]),
        Some("soak") => soak(),
        Some("fuzz") => fuzz(&args[1.min(args.len())..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print_help();
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         ci              fmt --check, clippy -D warnings, all tests, loom models, no-std, rustdoc\n\
         no-std          build every library crate for {NO_STD_TARGET} without std or alloc\n\
         bench [crate]   run the criterion benchmarks (of one crate, or all); extra args go to criterion\n\
         soak            run the long tests (SOAK=1) in release mode\n\
         fuzz CRATE [TARGET] [SECONDS]\n\
         \x20               run a crate's cargo-fuzz target for SECONDS (default 60; needs nightly and\n\
         \x20               cargo-fuzz); `fuzz scsi [CASES]` runs the never-panic test with CASES cases"
    );
}

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn cargo() -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn run(mut command: Command) -> Result<()> {
    // Debug shows the working directory, the environment changes and the arguments.
    let shown = format!("{command:?}").replace('"', "");
    println!("\n==> {shown}");
    let status = command
        .status()
        .map_err(|e| format!("could not start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

struct Package {
    name: String,
    is_lib: bool,
    dir: PathBuf,
}

fn workspace_packages() -> Result<Vec<Package>> {
    let output = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata output: {e}"))?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?;
    Ok(packages
        .iter()
        .map(|p| Package {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            is_lib: p["targets"].as_array().is_some_and(|targets| {
                targets.iter().any(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "lib"))
                })
            }),
            dir: Path::new(p["manifest_path"].as_str().unwrap_or_default())
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        })
        .collect())
}

fn ci() -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;

    let mut test = cargo();
    test.args(["test", "--workspace", "--all-features"]);
    run(test)?;

    loom()?;
    no_std()?;

    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;
    println!("\nxtask ci: all checks passed");
    Ok(())
}

/// Runs the loom model tests (`tests/loom.rs` of any crate) with `--cfg loom`, in a target
/// directory of their own so the cfg change does not rebuild the main one.
fn loom() -> Result<()> {
    for package in workspace_packages()? {
        if !package.dir.join("tests").join("loom.rs").exists() {
            continue;
        }
        let mut command = cargo();
        command
            .args(["test", "--release", "-p", &package.name, "--test", "loom"])
            .env("RUSTFLAGS", "--cfg loom")
            .env(
                "CARGO_TARGET_DIR",
                workspace_root().join("target").join("loom"),
            );
        run(command)?;
    }
    Ok(())
}

fn ensure_target_installed() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("rustup is needed to check for the {NO_STD_TARGET} target: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == NO_STD_TARGET)
    {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", NO_STD_TARGET])
        .current_dir(workspace_root());
    run(add).map_err(|e| {
        format!("the {NO_STD_TARGET} target is missing and could not be installed ({e}); install it with `rustup target add {NO_STD_TARGET}`")
    })
}

/// Whether a crate's sources pull in `alloc`. Building for a target with no global allocator
/// does not catch it by itself, because `alloc` ships for that target.
fn uses_alloc(dir: &Path) -> Result<Option<PathBuf>> {
    let mut stack = vec![dir.join("src")];
    while let Some(path) = stack.pop() {
        let entries = fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text =
                    fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                if text.lines().any(|l| {
                    let l = l.trim_start();
                    !l.starts_with("//") && l.contains("extern crate alloc")
                }) {
                    return Ok(Some(path));
                }
            }
        }
    }
    Ok(None)
}

fn no_std() -> Result<()> {
    ensure_target_installed()?;
    let libraries: Vec<Package> = workspace_packages()?
        .into_iter()
        .filter(|p| p.is_lib && !STD_CRATES.contains(&p.name.as_str()))
        .collect();
    for package in &libraries {
        if let Some(file) = uses_alloc(&package.dir)? {
            return Err(format!(
                "{} uses `alloc` ({}); library crates must not",
                package.name,
                file.display()
            ));
        }
        let mut build = cargo();
        build.args([
            "build",
            "-p",
            &package.name,
            "--lib",
            "--no-default-features",
            "--target",
            NO_STD_TARGET,
        ]);
        run(build)?;
    }
    let names: Vec<&str> = libraries.iter().map(|p| p.name.as_str()).collect();
    println!(
        "\nxtask no-std: {} built for {NO_STD_TARGET} without std or alloc",
        names.join(", ")
    );
    Ok(())
}

fn bench(package: Option<&str>, extra: &[String]) -> Result<()> {
    let mut command = cargo();
    command.arg("bench");
    match package {
        Some(name) => command.args(["-p", name]),
        None => command.arg("--workspace"),
    };
    let extra = match extra.first() {
        Some(first) if first == "--" => &extra[1..],
        _ => extra,
    };
    if !extra.is_empty() {
        command.arg("--").args(extra);
    }
    run(command)
}

fn soak() -> Result<()> {
    let mut command = cargo();
    command
        .args(["test", "--release", "--workspace", "--all-features"])
        .env("SOAK", "1");
    run(command)
}

/// Runs a crate's fuzzing: `scsi` feeds its never-panic property test arbitrary commands (stable
/// Rust); the crates with a `fuzz/` cargo-fuzz project run their libFuzzer target (nightly).
fn fuzz(args: &[String]) -> Result<()> {
    let Some(krate) = args.first() else {
        return Err("usage: cargo xtask fuzz CRATE [TARGET] [SECONDS]".into());
    };
    if krate == "scsi" {
        let cases = args.get(1).map(String::as_str).unwrap_or("100000");
        cases
            .parse::<u64>()
            .map_err(|_| format!("`{cases}` is not a number of cases"))?;
        let mut command = cargo();
        command
            .args(["test", "--release", "-p", "scsi", "--test", "never_panic"])
            .env("SCSI_FUZZ_CASES", cases);
        return run(command);
    }
    let dir = workspace_root().join(krate).join("fuzz");
    let manifest = dir.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).map_err(|_| {
        format!(
            "{krate} has no cargo-fuzz project ({} is missing)",
            manifest.display()
        )
    })?;
    // The targets are the `[[bin]]` names of the fuzz project.
    let mut targets: Vec<String> = text
        .split("[[bin]]")
        .skip(1)
        .filter_map(|section| {
            section.lines().find_map(|l| {
                let value = l
                    .trim()
                    .strip_prefix("name")?
                    .trim_start()
                    .strip_prefix('=')?;
                Some(value.trim().trim_matches('"').to_string())
            })
        })
        .collect();
    targets.sort();
    let target = match args.get(1) {
        Some(t) if targets.contains(t) => t.clone(),
        Some(t) => {
            return Err(format!(
                "{krate} has no fuzz target `{t}`; it has: {}",
                targets.join(", ")
            ));
        }
        None => targets
            .first()
            .cloned()
            .ok_or(format!("{krate} has no fuzz targets"))?,
    };
    let seconds = args.get(2).map(String::as_str).unwrap_or("60");
    seconds
        .parse::<u64>()
        .map_err(|_| format!("`{seconds}` is not a number of seconds"))?;
    let has_cargo_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_fuzz {
        return Err("fuzzing needs a nightly toolchain and cargo-fuzz: `rustup toolchain install nightly && cargo install cargo-fuzz`".into());
    }
    let mut command = Command::new("cargo");
    command.current_dir(&dir).args([
        "+nightly",
        "fuzz",
        "run",
        &target,
        "--",
        &format!("-max_total_time={seconds}"),
    ]);
    run(command)
}
