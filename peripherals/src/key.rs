//! The caller's key for a command that moves money or goods.

/// The caller's key for one command that moves money or goods (a vend, a deposit).
/// The device or its driver remembers what happened under each key, so after a lost
/// answer the caller asks about the key instead of repeating the command.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct CommandKey(pub String);

impl std::fmt::Display for CommandKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
