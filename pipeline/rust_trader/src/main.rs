//! The bundled reference trader in Rust: the same pipeline, probe points, stage names, risk
//! rules, FIX session and stats file as pipeline/trader.py, so sessions of the two compare stage
//! by stage (`tickscope profile --trader rust`). The loop and its probe points: trader.rs; the
//! tokio loop (`--loop tokio`, built from tokio/Cargo.toml with the `tokio-loop` feature):
//! tokio_loop.rs.

mod args;
mod book;
mod error;
mod fix;
mod gateway;
mod in_flight;
mod itch;
mod oms;
mod probes;
mod risk;
mod session;
mod stats;
mod strategy;
mod sys;
#[cfg(feature = "tokio-loop")]
mod tokio_loop;
mod trader;
mod usage;

use args::Command;
use error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use trader::Trader;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_sig: std::os::raw::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Every line the trader writes to stderr; `profile` shows the last one when the trader fails.
pub fn log(line: &str) {
    eprintln!("trader: {}", line);
}

/// One line and the error's exit code (2 at start-up, 3 for orders unanswered). Destructors do
/// not run: a trader that fails leaves its rings not marked closed, which the collector reports.
fn fail(e: Error) -> ! {
    log(&e.to_string());
    std::process::exit(e.exit_code());
}

fn main() {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Run(a)) => *a,
        Ok(Command::Help) => {
            println!("{}", usage::USAGE);
            return;
        }
        Err(e) => fail(e),
    };
    // A stop is a flag the loop tests, so an order is never cut between its send and its count.
    // Installed for SIGINT too: a trader started from a background job inherits SIGINT ignored.
    sys::install_stop_handler(request_stop);
    let mut trader = Trader::new(args).unwrap_or_else(|e| fail(e));
    if STOP.load(Ordering::Relaxed) {
        trader.close();
        return;
    }
    log(&trader.started());
    let mut trader = run_loop(trader);
    sys::ignore_sigterm();
    trader.close();
    let (summary, outcome) = trader.finish();
    log(&summary);
    if let Err(e) = outcome {
        fail(e); // the last line: what `profile` reports as the trader's failure
    }
}

#[cfg(feature = "tokio-loop")]
fn run_loop(mut trader: Trader) -> Trader {
    if trader.tokio() {
        return tokio_loop::run(trader, &STOP).unwrap_or_else(|e| fail(e));
    }
    trader.run(&STOP);
    trader
}

#[cfg(not(feature = "tokio-loop"))]
fn run_loop(mut trader: Trader) -> Trader {
    trader.run(&STOP);
    trader
}
