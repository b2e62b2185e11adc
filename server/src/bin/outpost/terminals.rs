//! `outpost terminals add|list|revoke`: terminal bearer tokens, on a stopped
//! server's data dir.

use crate::cli::TerminalsWhat;

pub fn run(what: TerminalsWhat) -> anyhow::Result<()> {
    match what {
        TerminalsWhat::Add { name, common } => {
            let (_, security) = common.open_security()?;
            let (record, token) = security.add_terminal("cli", &name)?;
            eprintln!(
                "Terminal {} (id {}) added. Its token is shown once; configure the terminal with it:",
                record.name, record.id
            );
            println!("{}", secrecy::ExposeSecret::expose_secret(&token));
            Ok(())
        }
        TerminalsWhat::List { common } => {
            let (_, security) = common.open_security()?;
            for t in security.terminals() {
                let revoked = match t.revoked_at {
                    Some(at) => format!("revoked at {at}"),
                    None => "active".into(),
                };
                println!(
                    "{}\t{}\tcreated at {}\t{revoked}",
                    t.name, t.id, t.created_at
                );
            }
            Ok(())
        }
        TerminalsWhat::Revoke { name, common } => {
            let (_, security) = common.open_security()?;
            if security.revoke_terminal("cli", &name)? {
                println!("Revoked the token of terminal {name}");
                Ok(())
            } else {
                anyhow::bail!("terminal {name:?} has no active token")
            }
        }
    }
}
