//! Self-update in the server: the health gate a new release must pass after it starts
//! ([`gate`]), what passing or failing it means ([`probation`]), and a release
//! applied by the running server ([`live`]), from a bundle on disk or from the store
//! mesh ([`distribute`]). The release root
//! and the anti-rollback floor are kept by `access::releases`; verifying, staging,
//! switching and rolling back are `outpost-updater`'s; `docs/updates.md` tells the
//! whole flow.

pub mod distribute;
pub mod gate;
pub mod live;
pub mod probation;
