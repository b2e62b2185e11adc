//! Roles and permissions.
//!
//! | permission       | cashier terminal | supervisor | technician | admin |
//! |------------------|:---:|:---:|:---:|:---:|
//! | sell             |  x  |  x  |     |     |
//! | read catalog     |  x  |  x  |  x  |  x  |
//! | refund           |     |  x  |     |     |
//! | void             |     |  x  |     |     |
//! | price override   |     |  x  |     |     |
//! | manage devices   |     |     |  x  |     |
//! | configure        |     |     |  x  |  x  |
//! | read logs        |     |     |  x  |  x  |
//! | manage users     |     |     |     |  x  |
//! | manage terminals |     |     |     |  x  |
//!
//! Least privilege: an admin manages people and terminals but does not sell or refund;
//! someone who needs both holds both roles.

use serde::{Deserialize, Serialize};

use super::AuthError;

/// A role held by a terminal or a staff account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// A POS terminal, kiosk or vending machine with a bearer token.
    CashierTerminal,
    /// A shift supervisor.
    Supervisor,
    /// A field technician.
    Technician,
    /// A store administrator.
    Admin,
}

/// Something a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Permission {
    /// Carts, checkout, payment.
    Sell,
    /// Products, prices, stock.
    ReadCatalog,
    /// Refunds.
    Refund,
    /// Voids.
    Void,
    /// Price overrides.
    PriceOverride,
    /// Device status, tests and drivers.
    ManageDevices,
    /// Server configuration.
    Configure,
    /// Logs and the audit log.
    ReadLogs,
    /// Staff accounts.
    ManageUsers,
    /// Terminal tokens.
    ManageTerminals,
}

impl Permission {
    /// Every permission, for exhaustive tests and matrices.
    pub const ALL: [Permission; 10] = [
        Permission::Sell,
        Permission::ReadCatalog,
        Permission::Refund,
        Permission::Void,
        Permission::PriceOverride,
        Permission::ManageDevices,
        Permission::Configure,
        Permission::ReadLogs,
        Permission::ManageUsers,
        Permission::ManageTerminals,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Sell => "sell",
            Permission::ReadCatalog => "read_catalog",
            Permission::Refund => "refund",
            Permission::Void => "void",
            Permission::PriceOverride => "price_override",
            Permission::ManageDevices => "manage_devices",
            Permission::Configure => "configure",
            Permission::ReadLogs => "read_logs",
            Permission::ManageUsers => "manage_users",
            Permission::ManageTerminals => "manage_terminals",
        }
    }
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [
        Role::CashierTerminal,
        Role::Supervisor,
        Role::Technician,
        Role::Admin,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::CashierTerminal => "cashier_terminal",
            Role::Supervisor => "supervisor",
            Role::Technician => "technician",
            Role::Admin => "admin",
        }
    }

    /// What this role may do (the table in the module docs).
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::CashierTerminal => &[Sell, ReadCatalog],
            Role::Supervisor => &[Sell, ReadCatalog, Refund, Void, PriceOverride],
            Role::Technician => &[ReadCatalog, ManageDevices, Configure, ReadLogs],
            Role::Admin => &[
                ReadCatalog,
                Configure,
                ReadLogs,
                ManageUsers,
                ManageTerminals,
            ],
        }
    }

    /// Whether this role may do `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

/// An authenticated caller: a terminal (by name) or a staff account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Terminal name or username; what the audit log records as the actor.
    pub name: String,
    /// Roles held.
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether any held role allows `permission`.
    pub fn allows(&self, permission: Permission) -> bool {
        self.roles.iter().any(|r| r.allows(permission))
    }

    /// `Ok` when allowed, else [`AuthError::Forbidden`] (HTTP 403).
    pub fn require(&self, permission: Permission) -> Result<(), AuthError> {
        if self.allows(permission) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                role: self
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join("+"),
                permission: permission.as_str().to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_matches_the_documented_table() {
        let expected: &[(Role, &[&str])] = &[
            (Role::CashierTerminal, &["sell", "read_catalog"]),
            (
                Role::Supervisor,
                &["sell", "read_catalog", "refund", "void", "price_override"],
            ),
            (
                Role::Technician,
                &["read_catalog", "manage_devices", "configure", "read_logs"],
            ),
            (
                Role::Admin,
                &[
                    "read_catalog",
                    "configure",
                    "read_logs",
                    "manage_users",
                    "manage_terminals",
                ],
            ),
        ];
        for (role, allowed) in expected {
            for p in Permission::ALL {
                assert_eq!(
                    role.allows(p),
                    allowed.contains(&p.as_str()),
                    "{role:?} {p:?}"
                );
            }
        }
    }

    #[test]
    fn principal_require() {
        let cashier = Principal {
            name: "till-1".into(),
            roles: vec![Role::CashierTerminal],
        };
        assert!(cashier.require(Permission::Sell).is_ok());
        assert_eq!(
            cashier.require(Permission::Refund),
            Err(AuthError::Forbidden {
                role: "cashier_terminal".into(),
                permission: "refund".into()
            })
        );
        let both = Principal {
            name: "boss".into(),
            roles: vec![Role::Admin, Role::Supervisor],
        };
        assert!(both.require(Permission::Refund).is_ok());
        assert!(both.require(Permission::ManageUsers).is_ok());
        assert!(both.require(Permission::ManageDevices).is_err());
        let nobody = Principal {
            name: "x".into(),
            roles: vec![],
        };
        assert!(Permission::ALL.iter().all(|p| nobody.require(*p).is_err()));
        assert_eq!(
            serde_json::to_string(&Role::CashierTerminal).unwrap(),
            "\"cashier_terminal\""
        );
    }
}
