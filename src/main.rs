//! `resflow`: the command line. It parses arguments and calls the libraries; nothing else.

mod bench_commands;
mod compare_command;
mod data_commands;
mod train_commands;

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
    /// Generate the built-in synthetic funnel dataset (Ali-CCP layout) as shards.
    Gen(data_commands::GenArgs),
    /// Convert a CSV file (Ali-CCP, AliExpress or any layout described by a spec) to shards.
    Convert(data_commands::ConvertArgs),
    /// Record the shards of a dataset written before manifests existed (validates them first).
    Manifest(data_commands::ManifestArgs),
    /// Train a model on a dataset (data-parallel, with checkpoints and evaluation).
    Train(train_commands::TrainArgs),
    /// Evaluate an exported model or a checkpoint on a dataset.
    Eval(train_commands::EvalArgs),
    /// Export a checkpoint as a serving model file (BatchNorm folded, no optimiser state).
    Export(train_commands::ExportArgs),
    /// Score a dataset with an exported model into a CSV file.
    Score(train_commands::ScoreArgs),
    /// Generate a synthetic funnel, train ResFlow and its ablation, compare them (about a minute).
    Demo(train_commands::DemoArgs),
    /// Train ResFlow and the baseline multi-task models on the same data and seeds; one table.
    Compare(compare_command::CompareArgs),
    /// Side-by-side benchmarks (ours against a reference, in one run).
    #[command(subcommand)]
    Bench(bench_commands::BenchCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Gen(args) => data_commands::gen_command(args),
        Command::Convert(args) => data_commands::convert_command(args),
        Command::Manifest(args) => data_commands::manifest_command(args),
        Command::Train(args) => train_commands::train(args),
        Command::Eval(args) => train_commands::eval(args),
        Command::Export(args) => train_commands::export(args),
        Command::Score(args) => train_commands::score(args),
        Command::Demo(args) => train_commands::demo(args),
        Command::Compare(args) => compare_command::compare(args),
        Command::Bench(command) => bench_commands::run(command),
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
