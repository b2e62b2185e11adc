//! HQ's credentials on a store's gRPC port without mutual TLS.
//!
//! Over mutual TLS HQ's client certificate is its credential. On a plaintext port
//! (a store on loopback without `sync.hq_ca`) the store lets a call that changes it
//! through only with HQ's push token or an admin session (see the server's
//! `hq::auth`). [`Credentials`] says which one this client sends; the [`Authorizer`]
//! adds it to every call (a fresh token each time).
//!
//! HQ's key file ([`load_hq_key`], [`write_hq_key`]) holds HQ's Ed25519 secret as 64
//! hex digits and a newline, mode 0600: the secret behind the units'
//! `[security] hq_public_key`. The same key signs push tokens and leases.

use std::path::Path;
use std::sync::Arc;

use outpost_proto::hq::store_service_client::StoreServiceClient;
use outpost_security::lease::HqSigner;
use outpost_security::push_token::{PUSH_TOKEN_METADATA, PushTokenSigner};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A store client that sends [`Credentials`] with every call.
pub type StoreClient = StoreServiceClient<InterceptedService<Channel, Authorizer>>;

/// What HQ's client sends to prove itself on a port without mutual TLS.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Credentials {
    /// Nothing: enough for reads, and over mutual TLS.
    #[default]
    None,
    /// A push token signed with HQ's key, for the store and unit the store reports in
    /// `GetStatus`.
    HqKey(Arc<HqKey>),
    /// `authorization: Bearer <id>` of an admin's session (the `outpost_session`
    /// cookie of `POST /api/v1/auth/login`).
    AdminSession(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::HqKey(k) => f.debug_tuple("HqKey").field(k).finish(),
            Credentials::AdminSession(_) => f.write_str("AdminSession(..)"),
        }
    }
}

/// HQ's signing key: push tokens and leases.
#[derive(Debug)]
pub struct HqKey {
    /// Signs push tokens.
    pub tokens: PushTokenSigner,
    /// Signs leases and lock / unlock / wipe commands.
    pub leases: HqSigner,
}

impl HqKey {
    /// HQ's key from its 32-byte Ed25519 secret.
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        HqKey {
            tokens: PushTokenSigner::from_bytes(secret),
            leases: HqSigner::from_bytes(secret),
        }
    }

    /// The public key as 64 hex digits, the form `[security] hq_public_key` takes.
    pub fn public_hex(&self) -> String {
        hex(self.tokens.verifying_key().as_bytes())
    }
}

/// Why HQ's key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Missing, unreadable, readable by others, or too large.
    #[error(transparent)]
    File(#[from] outpost_security::fsutil::FsError),
    /// The file does not exist.
    #[error("{0} does not exist: create one with `outpost-hq keygen --out FILE`")]
    Missing(String),
    /// Not 64 hex digits.
    #[error("{0}: an HQ key file holds 64 hex digits (the Ed25519 secret)")]
    Format(String),
    /// `keygen` would replace a key units may already trust.
    #[error("{0} exists: a new key would lock out every unit that trusts the old one")]
    Exists(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads HQ's key file (see the module docs); refused unless mode 0600.
pub fn load_hq_key(path: &Path) -> Result<HqKey, KeyFileError> {
    let shown = path.display().to_string();
    let bytes = outpost_security::fsutil::read_private(path, 1024)?
        .ok_or_else(|| KeyFileError::Missing(shown.clone()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| KeyFileError::Format(shown.clone()))?
        .trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyFileError::Format(shown));
    }
    let mut secret = [0u8; 32];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| KeyFileError::Format(shown.clone()))?;
    }
    Ok(HqKey::from_bytes(secret))
}

/// Writes a new random HQ key to `path` (mode 0600; never over an existing file).
pub fn write_hq_key(path: &Path) -> Result<HqKey, KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::Exists(path.display().to_string()));
    }
    let secret: [u8; 32] = rand::random();
    outpost_security::fsutil::write_private(path, format!("{}\n", hex(&secret)).as_bytes())?;
    Ok(HqKey::from_bytes(secret))
}

/// Adds the credential to each call.
#[derive(Clone)]
pub struct Authorizer {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    None,
    Token {
        key: Arc<HqKey>,
        store: String,
        unit: String,
    },
    Bearer(AsciiMetadataValue),
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::None => "none",
            Kind::Token { .. } => "hq token",
            Kind::Bearer(_) => "admin session",
        };
        f.debug_struct("Authorizer").field("kind", &kind).finish()
    }
}

impl Authorizer {
    /// Sends nothing.
    pub fn none() -> Self {
        Authorizer { kind: Kind::None }
    }

    /// Sends a fresh push token for `unit` of `store` with each call; `Err` when
    /// those ids cannot be signed (empty, over 64 bytes, control characters).
    pub fn hq_token(key: Arc<HqKey>, store: &str, unit: &str) -> Result<Self, String> {
        key.tokens.mint(store, unit).map_err(|e| {
            format!("cannot sign a push token for store {store:?} unit {unit:?}: {e}")
        })?;
        Ok(Authorizer {
            kind: Kind::Token {
                key,
                store: store.to_owned(),
                unit: unit.to_owned(),
            },
        })
    }

    /// Sends `authorization: Bearer <session>`.
    pub fn admin_session(session: &str) -> Result<Self, String> {
        let value = MetadataValue::try_from(format!("Bearer {}", session.trim()))
            .map_err(|_| "the admin session id is not a valid header value".to_owned())?;
        Ok(Authorizer {
            kind: Kind::Bearer(value),
        })
    }
}

impl Interceptor for Authorizer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        match &self.kind {
            Kind::None => {}
            Kind::Token { key, store, unit } => {
                let token = key
                    .tokens
                    .mint(store, unit)
                    .map_err(|e| tonic::Status::internal(format!("push token: {e}")))?;
                let value = MetadataValue::try_from(token)
                    .map_err(|_| tonic::Status::internal("push token is not ASCII"))?;
                request.metadata_mut().insert(PUSH_TOKEN_METADATA, value);
            }
            Kind::Bearer(value) => {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_round_trips_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hq.key");
        let written = write_hq_key(&path).unwrap();
        let read = load_hq_key(&path).unwrap();
        assert_eq!(written.public_hex(), read.public_hex());
        assert_eq!(
            read.tokens.verifying_key(),
            read.leases.verifying_key(),
            "one key signs both"
        );
        assert!(matches!(write_hq_key(&path), Err(KeyFileError::Exists(_))));
        assert_eq!(
            load_hq_key(&path).unwrap().public_hex(),
            written.public_hex()
        );
    }

    #[test]
    fn a_bad_key_file_is_refused_with_the_reason() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hq.key");
        assert!(matches!(load_hq_key(&path), Err(KeyFileError::Missing(_))));
        outpost_security::fsutil::write_private(&path, b"abc\n").unwrap();
        assert!(matches!(load_hq_key(&path), Err(KeyFileError::Format(_))));
        std::fs::write(&path, "ab".repeat(32)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_hq_key(&path).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn the_authorizer_adds_a_fresh_token_or_the_bearer_to_each_call() {
        let key = Arc::new(HqKey::from_bytes([4; 32]));
        let mut a = Authorizer::hq_token(key.clone(), "store-1", "unit-1").unwrap();
        let first = a.call(tonic::Request::new(())).unwrap();
        let second = a.call(tonic::Request::new(())).unwrap();
        let t1 = first.metadata().get(PUSH_TOKEN_METADATA).unwrap();
        let t2 = second.metadata().get(PUSH_TOKEN_METADATA).unwrap();
        assert_ne!(t1, t2);
        let token = outpost_security::push_token::PushToken::verify_text(
            t1.to_str().unwrap(),
            &key.tokens.verifying_key(),
        )
        .unwrap();
        assert_eq!(
            (token.store.as_str(), token.unit.as_str()),
            ("store-1", "unit-1")
        );
        assert!(Authorizer::hq_token(key, "", "unit-1").is_err());

        let mut b = Authorizer::admin_session("abc").unwrap();
        let r = b.call(tonic::Request::new(())).unwrap();
        assert_eq!(r.metadata().get("authorization").unwrap(), "Bearer abc");
        assert!(Authorizer::admin_session("a\nb").is_err());
        let r = Authorizer::none().call(tonic::Request::new(())).unwrap();
        assert!(r.metadata().is_empty());
    }
}
