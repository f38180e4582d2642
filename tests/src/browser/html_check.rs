//! The Nu HTML checker (the W3C validator's engine, npm package `vnu-jar` pinned in
//! `tests/browser/package-lock.json`), run with the machine's Java on the pages a test
//! recorded: any error fails the test.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::{RecordedPage, PART};

/// The checker's jar, its package installed with `npm ci` (once per lockfile change); `None`
/// (a skip, a failure under `CI=true`) when Java, Node or npm is missing.
pub fn checker() -> Option<PathBuf> {
    for tool in ["java", "node", "npm"] {
        let flag = if tool == "java" {
            "-version"
        } else {
            "--version"
        };
        if Command::new(tool).arg(flag).output().is_err() {
            return testkit::skip(PART, &format!("{tool} is not installed (the HTML checker)"));
        }
    }
    let dir = crate::node::workspace_dir().join("tests/browser");
    crate::node::install(&dir);
    Some(dir.join("node_modules/vnu-jar/build/dist/vnu.jar"))
}

/// Checks every page of `test` in one run of the checker; panics listing each error with the
/// page it is on.
pub fn assert_valid(test: &str, pages: &[RecordedPage]) {
    if pages.is_empty() {
        return;
    }
    let jar = checker().expect("the checker was there when the browser opened");
    let dir = std::env::temp_dir()
        .join("identity-tests-html")
        .join(uuid::Uuid::now_v7().to_string());
    std::fs::create_dir_all(&dir).expect("create the directory of pages to check");
    let files: Vec<PathBuf> = pages
        .iter()
        .enumerate()
        .map(|(i, page)| {
            let file = dir.join(format!("{i:02}-{}.html", page.name));
            std::fs::write(&file, &page.html).expect("write a page to check");
            file
        })
        .collect();
    let output = Command::new("java")
        .arg("-jar")
        .arg(&jar)
        .args([
            "--errors-only",
            "--no-langdetect",
            "--format",
            "json",
            "--stdout",
        ])
        .args(&files)
        .output()
        .expect("run the Nu HTML checker");
    let _ = std::fs::remove_dir_all(&dir);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "the checker's report is not JSON ({error}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let errors: Vec<String> = report["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|message| message["type"] != "info")
        .map(|message| {
            let file = message["url"].as_str().unwrap_or_default();
            let page = file.rsplit('/').next().unwrap_or(file);
            format!(
                "{page}:{}: {} [{}]",
                message["lastLine"],
                message["message"].as_str().unwrap_or_default(),
                message["extract"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        errors.is_empty(),
        "{test}: the HTML of its pages is not valid:\n{}",
        errors.join("\n")
    );
}
