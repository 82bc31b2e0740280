//! Harness validation of values that the runtime would otherwise trip over mid-run.

use autoagent_agent::Harness;

fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = d.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

/// A bash timeout below 1 s made every `bash` call panic (`f64::clamp(1.0, max)` with
/// max < 1); an infinite one made `Duration::from_secs_f64` panic. Both are load errors now,
/// as is a script tool's out-of-range timeout.
#[test]
fn out_of_range_timeouts_are_refused_at_load() {
    for bad in ["0.5", "0", "-3", "inf", "nan", "1e300"] {
        let d = dir(&[
            (
                "harness.toml",
                &format!("[agent]\nsystem_prompt = \"s.md\"\n[bash]\ntimeout_sec = {bad}\n"),
            ),
            ("s.md", "x"),
            (
                "tools/t.toml",
                &format!("description = \"d\"\nscript = \"t.sh\"\ntimeout_sec = {bad}\n"),
            ),
            ("tools/t.sh", "true"),
        ]);
        let text = Harness::load(d.path()).unwrap_err().to_string();
        assert!(
            text.contains("harness.toml: `bash.timeout_sec`: must be between 1 and 86400 seconds"),
            "{bad}: {text}"
        );
        assert!(
            text.contains("tools/t.toml: `timeout_sec`: must be between 1 and 86400 seconds"),
            "{bad}: {text}"
        );
    }
    let d = dir(&[
        (
            "harness.toml",
            "[agent]\nsystem_prompt = \"s.md\"\n[bash]\ntimeout_sec = 1\n",
        ),
        ("s.md", "x"),
    ]);
    assert_eq!(
        Harness::load(d.path()).unwrap().config.bash.timeout_sec,
        1.0
    );
}
