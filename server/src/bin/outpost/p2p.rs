//! `outpost p2p id`: this unit's store-mesh peer id.

use crate::cli::P2pWhat;

pub fn run(what: P2pWhat) -> anyhow::Result<()> {
    match what {
        P2pWhat::Id(common) => {
            // The identity is sealed under the data key: open the data dir like the other
            // offline commands.
            let (s, security) = common.open_security()?;
            println!("{}", outpost_server::mesh::peer_id(&s.data_dir, &security)?);
            Ok(())
        }
    }
}
