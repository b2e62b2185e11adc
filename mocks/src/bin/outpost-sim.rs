//! `outpost-sim`: the wire-level device simulators, standalone, for a technician's
//! bench: `outpost-sim printer --listen ADDR`, `outpost-sim payment --listen ADDR`,
//! `outpost-sim scanner|scale|mdb|changer|validator ...`. Point Outpost's real drivers at them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Outpost's device simulators, speaking the devices' real wire protocols.
#[derive(Debug, Parser)]
#[command(name = "outpost-sim", version)]
struct Cli {
    #[command(subcommand)]
    device: Device,
}

#[derive(Debug, Subcommand)]
enum Device {
    /// An ESC/POS receipt printer on TCP; prints each receipt to standard output.
    Printer(outpost_mocks::sim::escpos::Args),
    /// A nexo-style payment terminal on TCP, with fault modes and a control channel.
    Payment(outpost_mocks::sim::payment::Args),
    /// A serial barcode scanner, over TCP.
    Scanner(outpost_mocks::sim::scanner::Args),
    /// An MT-SICS scale, over TCP.
    Scale(outpost_mocks::sim::scale::Args),
    /// An MDB cashless reader behind a serial bridge, over TCP.
    Mdb(outpost_mocks::sim::mdb::Args),
    /// An MDB coin changer behind a serial bridge, over TCP.
    Changer(outpost_mocks::sim::changer::Args),
    /// An MDB bill validator with escrow behind a serial bridge, over TCP.
    Validator(outpost_mocks::sim::validator::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.device {
            Device::Printer(args) => outpost_mocks::sim::escpos::run(args).await,
            Device::Payment(args) => outpost_mocks::sim::payment::run(args).await,
            Device::Scanner(args) => outpost_mocks::sim::scanner::run(args).await,
            Device::Scale(args) => outpost_mocks::sim::scale::run(args).await,
            Device::Mdb(args) => outpost_mocks::sim::mdb::run(args).await,
            Device::Changer(args) => outpost_mocks::sim::changer::run(args).await,
            Device::Validator(args) => outpost_mocks::sim::validator::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
