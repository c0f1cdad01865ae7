//! Records the commit quarryd is built from (`quarry_build_info`):
//! `QUARRY_COMMIT` if set, else `git rev-parse --short=12 HEAD` of the
//! checkout, else "unknown" (a source tree without git).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=QUARRY_COMMIT");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = root.join(".git");
    for f in ["HEAD", "refs/heads", "packed-refs"] {
        let p = git.join(f);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    let commit = std::env::var("QUARRY_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(&root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()))
                .unwrap_or_else(|| "unknown".into())
        });
    println!("cargo:rustc-env=QUARRY_COMMIT={commit}");
}
