//! The HQ link: pushes HQ makes to the store, and the uplink of sales to HQ.

mod artifacts;
mod events;
mod helpers;
mod lease;
mod pki;
mod pushes;
mod settings;
mod snapshot_load;
mod tls;
mod uplink;
