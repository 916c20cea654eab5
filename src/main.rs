//! `resflow`: the command line. It parses arguments and calls the libraries; nothing else.

mod bench_commands;
mod common;
mod compare_command;
mod data_commands;
mod eval_options;
mod train_commands;

use std::io::Write;

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
    // A reader that stops early (`resflow eval ... | head -1`) closes our stdout: the next
    // print fails. That is not an error of the command: stop quietly, as other tools do,
    // with the status a SIGPIPE gives (128 + 13).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_closed_output(info.payload()) {
            hook(info);
        }
    }));
    let result = std::panic::catch_unwind(|| run(cli));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            std::process::exit(1);
        }
        Err(payload) if is_closed_output(payload.as_ref()) => std::process::exit(141),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Whether a panic is the standard library's report of a print to a closed pipe.
fn is_closed_output(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    text.starts_with("failed printing to std") && text.contains("Broken pipe")
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    // A bad RESFLOW_KERNEL is the user's to fix: say so before any work, never panic later.
    if !matches!(cli.command, Command::Info) {
        tensor::Tier::from_env().map_err(|e| format!("RESFLOW_KERNEL: {e}"))?;
    }
    match cli.command {
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
    }
}

fn info() -> Result<(), Box<dyn std::error::Error>> {
    let tier = tensor::Tier::from_env()?;
    let supported: Vec<_> = tensor::Tier::supported().iter().map(|t| t.name()).collect();
    println!("cpu:                {}", tensor::Cpu::detect());
    println!("kernel tier in use: {tier}");
    println!("tiers supported:    {}", supported.join(", "));
    println!(
        "int8 kernel:        {}",
        tensor::quant::Int8Kernel::for_tier(tier).name()
    );
    Ok(())
}
