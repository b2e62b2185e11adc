//! Integration tests of outpost-security: each test gets its own temp dir, loopback
//! sockets on port 0, and (with `--features tpm`) its own swtpm.

#[cfg(feature = "tpm")]
mod anchor;
mod at_rest;
mod bench;
mod helpers;
mod logs;
mod tls;
#[cfg(feature = "tpm")]
mod tpm;
