//! `quarryctl verify`: every checksum and the graph invariants.

use anyhow::Result;
use std::path::PathBuf;

/// Arguments of `quarryctl verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Index directory.
    #[arg(long)]
    pub index: PathBuf,
}

/// Runs `quarryctl verify`; exits non-zero with the error on any problem.
pub fn run(a: VerifyArgs) -> Result<()> {
    let t = std::time::Instant::now();
    let s = quarry_engine::index::verify_index(&a.index)?;
    eprintln!(
        "ok: {} files, {} bytes, {} nodes, mean degree {:.1}, max degree {}, every node reachable from the medoid ({:.1} s)",
        s.files_checked,
        s.bytes_read,
        s.nodes,
        s.mean_degree,
        s.max_degree,
        t.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}
