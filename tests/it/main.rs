//! The whole-workspace tests, one binary with a module per subject (one
//! link of the world instead of one per file): architecture and tidiness
//! rules, the real binaries driven by the AWS SDK, the AWS CLI and hostile
//! clients, and the fuzz harness. `cargo test -p ses-export-tests --test it
//! wire::` runs one subject.

mod architecture;
mod backfill;
mod cli;
mod cli_habits;
mod client;
mod cluster;
mod console;
mod definitions;
mod destinations;
mod e2e;
mod expectations;
mod fuzz;
mod hostile;
mod intake;
mod network;
mod operations;
mod regions;
mod segments;
mod sns;
mod tidy;
mod tls;
mod wire;
