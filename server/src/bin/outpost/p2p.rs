//! `outpost p2p id`: this unit's store-mesh peer id.

use crate::cli::P2pWhat;

pub fn run(what: P2pWhat) -> anyhow::Result<()> {
    match what {
        P2pWhat::Id(common) => {
            let s = common.settings()?;
            println!("{}", outpost_server::mesh::peer_id(&s.data_dir)?);
            Ok(())
        }
    }
}
