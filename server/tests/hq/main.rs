//! The HQ link: pushes HQ makes to the store, and the uplink of sales to HQ.

/// The store runs in this process: give it the allocator the `outpost` binary has
/// (`server/src/bin/outpost/`), so the snapshot figures in BENCHMARKS.md measure the store
/// as shipped rather than glibc's malloc under a million small allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod artifacts;
mod audit;
mod clock;
mod events;
mod helpers;
mod lease;
mod loyalty;
mod pki;
mod push_auth;
mod push_faults;
mod pushes;
mod settings;
mod shopper;
mod snapshot_load;
mod soak;
mod tls;
mod update_census;
mod uplink;
