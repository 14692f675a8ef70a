//! Start-up: the encoder choice each machine remembers (`encode::cache`), and the real pipeline
//! that checks it.

use std::path::{Path, PathBuf};

use crate::util::*;

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect()).unwrap_or_default();
    files.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("encoder-choice-")));
    files
}

/// Ten frames to a pipe, with the lock directory (where the choice is kept) given; the stream must
/// decode to ten pictures.
fn start(locks: &Path, out_dir: &Path, name: &str) -> String {
    let args = ["--width", "640", "--height", "360", "--frames", "10", "--lock-dir", locks.to_str().unwrap()];
    let out = run(&args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{name}: {err}");
    let path = write(out_dir, &format!("{name}.h264"), &out.stdout);
    assert_eq!(probe(&path).frames.len(), 10, "{name}: {err}");
    err
}

/// The first start probes and remembers its choice; the next takes it without probing; a choice
/// that no longer opens (here an encoder that is not installed) is found out by the pipeline that
/// opens it, forgotten, and the candidates are probed again in the same start.
#[test]
fn the_encoder_choice_is_remembered_and_a_wrong_one_is_probed_again() {
    let dir = tempdir();
    let locks = dir.path().join("locks");
    let auto = machine()["auto_encoder"].as_str().expect("doctor's auto_encoder").to_string();

    let first = start(&locks, dir.path(), "first");
    assert!(first.contains("(opened with a test frame)"), "{first}");
    let files = cache_files(&locks);
    assert_eq!(files.len(), 1, "one entry for one set of inputs: {files:?}");
    let entry: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(entry["element"], auto.as_str(), "{entry}");

    let second = start(&locks, dir.path(), "second");
    assert!(second.contains("(remembered from "), "{second}");
    assert!(!second.contains("(opened with a test frame)"), "the remembered choice is not probed again:\n{second}");

    // Another machine's answer, as if the encoder had been uninstalled since (the key is this one).
    let missing = if auto == "nvh264enc" { "vaapih264enc" } else { "nvh264enc" };
    let mut wrong = entry.clone();
    wrong["element"] = missing.into();
    std::fs::write(&files[0], wrong.to_string()).unwrap();
    let third = start(&locks, dir.path(), "third");
    assert!(
        third.contains(&format!("the remembered choice {missing} did not open"))
            && third.contains("probing the candidates again"),
        "{third}"
    );
    assert!(third.contains("(opened with a test frame)"), "{third}");
    let entry: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(entry["element"], auto.as_str(), "the probe's answer replaces the wrong one: {entry}");

    // Other settings are another entry: nothing remembered for them yet.
    let out = run(&["--width", "640", "--height", "480", "--frames", "2", "--lock-dir", locks.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(opened with a test frame)"));
    assert_eq!(cache_files(&locks).len(), 2);
}
