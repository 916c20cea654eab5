//! `resflow`: the command line. It parses arguments and calls the libraries; nothing else.

use clap::{Parser, Subcommand};

/// Train, evaluate, benchmark and serve ResFlow, the residual multi-task ranker.
#[derive(Parser)]
#[command(name = "resflow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CPU kernel tiers this machine supports and the one in use.
    Info,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn info() -> Result<(), Box<dyn std::error::Error>> {
    let tier = tensor::Tier::from_env()?;
    let supported: Vec<_> = tensor::Tier::supported().iter().map(|t| t.name()).collect();
    println!("kernel tier in use: {tier}");
    println!("tiers supported:    {}", supported.join(", "));
    Ok(())
}
