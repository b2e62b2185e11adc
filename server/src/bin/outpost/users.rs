//! `outpost users add|list|disable`: staff accounts, on a stopped server's data dir.

use outpost_security::auth::password::generate_password;
use outpost_security::auth::roles::Role;

use crate::cli::UsersWhat;

pub fn run(what: UsersWhat) -> anyhow::Result<()> {
    match what {
        UsersWhat::List { common } => {
            let (_, security) = common.open_security()?;
            for u in security.users() {
                let names: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
                let state = if u.disabled { "disabled" } else { "enabled" };
                println!("{}\t{}\t{state}", u.username, names.join(","));
            }
            Ok(())
        }
        UsersWhat::Disable { username, common } => {
            let (_, security) = common.open_security()?;
            if security.disable_user("cli", &username)? {
                println!("Disabled {username}");
                Ok(())
            } else {
                anyhow::bail!("no staff account {username:?}")
            }
        }
        UsersWhat::Add {
            username,
            roles,
            common,
        } => {
            // Checked before the data dir is opened: a typo is refused without touching it.
            let roles = roles
                .iter()
                .map(|r| parse_role(r.trim()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (_, security) = common.open_security()?;
            let password = generate_password();
            security.set_user("cli", &username, &password, roles)?;
            eprintln!("User {username} added. The password is shown once:");
            println!("{}", secrecy::ExposeSecret::expose_secret(&password));
            Ok(())
        }
    }
}

fn parse_role(name: &str) -> anyhow::Result<Role> {
    match name {
        "supervisor" => Ok(Role::Supervisor),
        "technician" => Ok(Role::Technician),
        "admin" => Ok(Role::Admin),
        other => Err(anyhow::anyhow!(
            "unknown role {other:?}: use supervisor, technician or admin"
        )),
    }
}
