//! quarryctl: Quarry's command-line tool (minimal entry point; the lead
//! engineer's main.rs replaces this one).

mod cmd_gen;
mod cmd_gt;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "quarryctl", about = "Quarry data sets, ground truth and LID")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a synthetic clustered data set.
    Gen(cmd_gen::GenArgs),
    /// Exact ground truth.
    Gt(cmd_gt::GtArgs),
    /// Local intrinsic dimension (MLE, k=20) of a vector file.
    Lid(cmd_gen::LidArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Gen(a) => cmd_gen::run(a),
        Cmd::Gt(a) => cmd_gt::run(a),
        Cmd::Lid(a) => cmd_gen::run_lid(a),
    }
}
