//! The Debian package: built by scripts/deb from this test's binary (the
//! same assembly as the release package, a debug build inside), then
//! installed into a fresh Debian root by scripts/test-package, which checks
//! the files, the units, completions, man pages, `config show`, the
//! controller started by its unit's ExecStart= line, and purge. Root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[test]
fn the_debian_package_installs_runs_and_purges() {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let built = Command::new(scripts.join("deb"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_vmfabric"))
        .arg("--out")
        .arg(out.path())
        // xz takes half a minute over a debug binary; the files are the same.
        .args(["--compression", "gzip"])
        .output()
        .expect("scripts/deb (bash, dpkg-deb, binutils)");
    assert!(
        built.status.success(),
        "scripts/deb: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_string();
    println!(
        "built {deb} ({} KiB) in {:.1} s",
        std::fs::metadata(&deb).unwrap().len() / 1024,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let tested = Command::new(scripts.join("test-package"))
        .arg(&deb)
        .output()
        .expect("scripts/test-package");
    let text = String::from_utf8_lossy(&tested.stdout);
    println!("{text}");
    println!("checked in {:.1} s", t.elapsed().as_secs_f64());
    assert!(
        tested.status.success(),
        "scripts/test-package failed:\n{text}\n{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(text.contains("package checks passed"));
    // The test says why the controller did not run under systemd.
    assert!(text.contains("NOTE: ") || text.contains("under systemd"));
}
