//! The phone-side packages under `clients/` (the mini-program SDK and demo), driven with the
//! machine's Node and npm so `cargo test --workspace` covers them too.
//!
//! Their dependencies come from the npm registry with `npm ci`, once per package per change of
//! its lockfile: test binaries run in parallel, so installs are serialised by a lock file.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A package directory under `clients/`, its dependencies installed; `None` (a skip, which
/// fails under `CI=true`) when Node or npm is missing.
pub fn npm_package(name: &str) -> Option<PathBuf> {
    for tool in ["node", "npm"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return testkit::skip(name, &format!("{tool} is not installed"));
        }
    }
    let dir = clients_dir().join(name);
    install(&dir);
    Some(dir)
}

/// The SDK package, installed and its `miniprogram_dist/` built from the current sources. The
/// build runs under the install lock, and only when a source is newer than the build, so test
/// binaries running at once never rewrite it under each other.
pub fn built_sdk() -> Option<PathBuf> {
    let sdk = npm_package("miniprogram")?;
    let _lock = lock(&sdk);
    let built = modified(&sdk.join("miniprogram_dist/index.js"));
    let sources = fs::read_dir(sdk.join("src")).expect("the SDK's sources");
    let newest = sources
        .filter_map(Result::ok)
        .filter_map(|entry| modified(&entry.path()))
        .max();
    if built.is_none() || newest > built {
        npm_run(&sdk, "build");
    }
    Some(sdk)
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Held while a package's `node_modules` or build is written.
fn lock(dir: &Path) -> File {
    let lock = File::create(dir.join("node_modules.lock")).expect("create the install lock");
    lock.lock().expect("take the install lock");
    lock
}

/// `clients/` at the workspace root.
pub fn clients_dir() -> PathBuf {
    workspace_dir().join("clients")
}

/// The workspace root.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Runs `npm run <script>` in `dir`, panicking with its output when it fails.
pub fn npm_run(dir: &Path, script: &str) -> Output {
    let mut npm = Command::new("npm");
    npm.args(["run", "--silent", script]).current_dir(dir);
    testkit::run_ok(
        &mut npm,
        &format!("`npm run {script}` in {}", dir.display()),
    )
}

/// `npm ci` unless `node_modules` was installed from this very lockfile (a stamp written
/// after the last successful install holds the lockfile it installed).
pub(crate) fn install(dir: &Path) {
    let _lock = lock(dir);
    let wanted = fs::read(dir.join("package-lock.json")).expect("the package has a lockfile");
    let stamp = dir.join("node_modules/.installed-from");
    if fs::read(&stamp).is_ok_and(|installed| installed == wanted) {
        return;
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"]).current_dir(dir);
    testkit::run_ok(&mut npm, &format!("`npm ci` in {}", dir.display()));
    fs::write(&stamp, &wanted).expect("stamp the install");
}
