//! Blinded key escrow: the McCallum–Relyea exchange that clevis and tang use, on
//! Ristretto255.
//!
//! HQ holds a secret scalar `s` ([`EscrowSecret`]) and publishes `S = s·G`
//! ([`EscrowPublic`]). A unit that wants a key only HQ can help it rebuild:
//!
//! 1. **Provision** ([`provision`]), once, offline: pick a random `c`, keep the point
//!    `C = c·G` ([`ClientPoint`], stored in clear beside what it protects), derive the
//!    [`WrapKey`] from `c·S`, and forget `c`. Nobody now knows the wrap key: the unit
//!    has only `C`, HQ only `s`.
//! 2. **Recover**, each time the key is needed: [`blind`] `C` with a fresh random `e`,
//!    `X = C + e·G`, and send `X` to HQ; HQ answers `Y = s·X` ([`EscrowSecret::respond`]);
//!    [`unblind`] computes `Y − e·S = s·C = c·S` and derives the same wrap key.
//!
//! HQ sees only `X`, a uniformly random point that changes every time (the blinding `e`
//! is fresh), so it learns neither `C` nor the wrap key, and cannot link two requests
//! of the same unit. Someone who steals the unit's disk has `C` but needs HQ to answer.
//! An eavesdropper sees `X` and `Y` and, without `e`, learns nothing.
//!
//! HQ answers whoever asks: deciding *whether* to answer (the unit's TLS identity, a
//! unit reported stolen) is the caller's business, not this module's.
//!
//! The wrap key is BLAKE3 `derive_key("outpost escrow v1 " + purpose, compress(c·S))`,
//! so one HQ key can serve several purposes (the envelope's network share and its
//! recovery box) without one wrap key opening the other's box.
//!
//! Points on the wire are 32-byte compressed Ristretto encodings. A non-canonical
//! encoding or the identity point is refused everywhere ([`EscrowError::BadPoint`]):
//! the identity would make `Y` independent of `s` and so reveal nothing, or leak
//! everything, depending on the side.

use std::fmt;
use std::str::FromStr;

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use zeroize::{Zeroize, Zeroizing};

/// Why an escrow step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EscrowError {
    /// A point is not a canonical Ristretto encoding, or is the identity.
    #[error("The {0} is not a valid escrow point (non-canonical encoding or identity)")]
    BadPoint(&'static str),
    /// A secret scalar is not a canonical non-zero scalar.
    #[error("The escrow secret is not a canonical non-zero scalar")]
    BadSecret,
    /// A hex string does not encode 32 bytes.
    #[error("An escrow key must be 64 hex digits: {0}")]
    BadHex(String),
}

fn random_scalar() -> Scalar {
    loop {
        let mut wide = Zeroizing::new([0u8; 64]);
        rand::fill(&mut wide[..]);
        let scalar = Scalar::from_bytes_mod_order_wide(&wide);
        if scalar != Scalar::ZERO {
            return scalar;
        }
    }
}

fn decompress(bytes: &[u8; 32], what: &'static str) -> Result<RistrettoPoint, EscrowError> {
    let point = CompressedRistretto(*bytes)
        .decompress()
        .ok_or(EscrowError::BadPoint(what))?;
    if point.is_identity() {
        return Err(EscrowError::BadPoint(what));
    }
    Ok(point)
}

fn derive_wrap_key(shared: &RistrettoPoint, purpose: &str) -> WrapKey {
    let compressed = Zeroizing::new(shared.compress().to_bytes());
    WrapKey(Zeroizing::new(blake3::derive_key(
        &format!("outpost escrow v1 {purpose}"),
        &compressed[..],
    )))
}

/// HQ's escrow secret `s`. Zeroized on drop; `Debug` never shows it.
pub struct EscrowSecret(Scalar);

impl EscrowSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        Self(random_scalar())
    }

    /// The secret from its 32-byte storage form ([`EscrowSecret::to_bytes`]); refuses a
    /// non-canonical or zero scalar.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, EscrowError> {
        let scalar = Option::<Scalar>::from(Scalar::from_canonical_bytes(*bytes))
            .ok_or(EscrowError::BadSecret)?;
        if scalar == Scalar::ZERO {
            return Err(EscrowError::BadSecret);
        }
        Ok(Self(scalar))
    }

    /// The 32-byte storage form (little-endian scalar), zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key `S = s·G` that units are provisioned with.
    pub fn public(&self) -> EscrowPublic {
        EscrowPublic(RistrettoPoint::mul_base(&self.0).compress().to_bytes())
    }

    /// HQ's answer to a unit's blinded request: `Y = s·X`.
    ///
    /// Refuses a request that is not a canonical point or is the identity.
    pub fn respond(&self, request: &[u8; 32]) -> Result<[u8; 32], EscrowError> {
        let x = decompress(request, "request")?;
        Ok((self.0 * x).compress().to_bytes())
    }
}

impl Drop for EscrowSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for EscrowSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EscrowSecret(..)")
    }
}

/// HQ's escrow public key `S`, a compressed Ristretto point (32 bytes; 64 hex digits
/// in text and in serde).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EscrowPublic([u8; 32]);

impl EscrowPublic {
    /// Checks and wraps a compressed point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, EscrowError> {
        decompress(bytes, "escrow public key")?;
        Ok(Self(*bytes))
    }

    /// The compressed point.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// From 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, EscrowError> {
        Self::from_bytes(&hex_decode_32(text)?)
    }

    fn point(&self) -> Result<RistrettoPoint, EscrowError> {
        decompress(&self.0, "escrow public key")
    }
}

impl fmt::Debug for EscrowPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EscrowPublic({})", self.to_hex())
    }
}

impl fmt::Display for EscrowPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for EscrowPublic {
    type Err = EscrowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl serde::Serialize for EscrowPublic {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for EscrowPublic {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// The unit's stored point `C = c·G` (public: without HQ it gives nothing).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientPoint([u8; 32]);

impl ClientPoint {
    /// Checks and wraps a stored point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, EscrowError> {
        decompress(bytes, "client point")?;
        Ok(Self(*bytes))
    }

    /// The compressed point, for storage.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl fmt::Debug for ClientPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientPoint({})", hex_encode(&self.0))
    }
}

/// A 32-byte key derived from `c·S`: what an escrow box is sealed under. Zeroized on
/// drop; `Debug` never shows it.
pub struct WrapKey(Zeroizing<[u8; 32]>);

impl WrapKey {
    /// The key bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for WrapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrapKey(..)")
    }
}

/// The blinding scalar `e` of one request: needed once to [`unblind`] HQ's reply, then
/// dropped (zeroized). `Debug` never shows it.
pub struct Blinding(Scalar);

impl Drop for Blinding {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Blinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Blinding(..)")
    }
}

/// Provisions a new escrow for `purpose` against HQ's key: returns the point to store
/// and the wrap key to seal a box with. The client scalar `c` is dropped (zeroized)
/// before this returns, so the wrap key can only be rebuilt with HQ's help.
pub fn provision(
    public: &EscrowPublic,
    purpose: &str,
) -> Result<(ClientPoint, WrapKey), EscrowError> {
    let s = public.point()?;
    let mut c = random_scalar();
    let client = ClientPoint(RistrettoPoint::mul_base(&c).compress().to_bytes());
    let mut shared = c * s;
    let key = derive_wrap_key(&shared, purpose);
    c.zeroize();
    shared.zeroize();
    Ok((client, key))
}

/// Blinds the stored point for one request to HQ: `X = C + e·G` with a fresh `e`.
pub fn blind(client: &ClientPoint) -> Result<([u8; 32], Blinding), EscrowError> {
    let c = decompress(&client.0, "client point")?;
    let e = random_scalar();
    let x = c + RistrettoPoint::mul_base(&e);
    Ok((x.compress().to_bytes(), Blinding(e)))
}

/// Removes the blinding from HQ's reply `Y` and derives the wrap key:
/// `derive(Y − e·S)`. Refuses a reply that is not a canonical point or is the
/// identity. A reply from another HQ key (or a wrong one) gives another wrap key,
/// which the box it is used on then refuses.
pub fn unblind(
    blinding: Blinding,
    public: &EscrowPublic,
    reply: &[u8; 32],
    purpose: &str,
) -> Result<WrapKey, EscrowError> {
    let y = decompress(reply, "reply")?;
    let s = public.point()?;
    let mut shared = y - blinding.0 * s;
    if shared.is_identity() {
        return Err(EscrowError::BadPoint("reply"));
    }
    let key = derive_wrap_key(&shared, purpose);
    shared.zeroize();
    Ok(key)
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn hex_decode_32(text: &str) -> Result<[u8; 32], EscrowError> {
    let text = text.trim();
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return Err(EscrowError::BadHex(format!("{} characters", digits.len())));
    }
    let nibble = |c: u8| -> Result<u8, EscrowError> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(EscrowError::BadHex(format!(
                "{:?} is not a hex digit",
                c as char
            ))),
        }
    };
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PURPOSE: &str = "test";

    fn round_trip(hq: &EscrowSecret, client: &ClientPoint, purpose: &str) -> WrapKey {
        let (request, blinding) = blind(client).unwrap();
        let reply = hq.respond(&request).unwrap();
        unblind(blinding, &hq.public(), &reply, purpose).unwrap()
    }

    #[test]
    fn a_blinded_round_trip_gives_back_the_wrap_key() {
        let hq = EscrowSecret::generate();
        let (client, key) = provision(&hq.public(), PURPOSE).unwrap();
        assert_eq!(round_trip(&hq, &client, PURPOSE).expose(), key.expose());
        // Again: each request is blinded afresh and still gives the same key.
        assert_eq!(round_trip(&hq, &client, PURPOSE).expose(), key.expose());
    }

    #[test]
    fn the_request_reveals_nothing_stable() {
        let hq = EscrowSecret::generate();
        let (client, _) = provision(&hq.public(), PURPOSE).unwrap();
        let (x1, _) = blind(&client).unwrap();
        let (x2, _) = blind(&client).unwrap();
        assert_ne!(x1, x2, "two blinds of one point differ");
        assert_ne!(x1, client.to_bytes(), "the request is not the stored point");
        assert_ne!(x2, client.to_bytes());
    }

    #[test]
    fn another_hq_key_or_purpose_gives_another_wrap_key() {
        let hq = EscrowSecret::generate();
        let other = EscrowSecret::generate();
        let (client, key) = provision(&hq.public(), PURPOSE).unwrap();
        // The other HQ answers; the unit unblinds against the key it was provisioned with.
        let (request, blinding) = blind(&client).unwrap();
        let reply = other.respond(&request).unwrap();
        let wrong = unblind(blinding, &hq.public(), &reply, PURPOSE).unwrap();
        assert_ne!(wrong.expose(), key.expose());
        // The right HQ, another purpose.
        assert_ne!(round_trip(&hq, &client, "other").expose(), key.expose());
        // Two provisions of one HQ key give unrelated points and keys.
        let (client2, key2) = provision(&hq.public(), PURPOSE).unwrap();
        assert_ne!(client2.to_bytes(), client.to_bytes());
        assert_ne!(key2.expose(), key.expose());
    }

    #[test]
    fn bad_points_are_refused() {
        let hq = EscrowSecret::generate();
        let identity = RistrettoPoint::default().compress().to_bytes();
        // Not canonical: the field element p (all ones but the top bit), and a
        // negative x (the low bit of the encoding set).
        let mut non_canonical = [0xffu8; 32];
        non_canonical[31] = 0x7f;
        let mut negative = hq.public().to_bytes();
        negative[0] |= 1;
        for bad in [identity, non_canonical, negative] {
            assert!(matches!(hq.respond(&bad), Err(EscrowError::BadPoint(_))));
            assert!(EscrowPublic::from_bytes(&bad).is_err());
            assert!(ClientPoint::from_bytes(&bad).is_err());
            let (client, _) = provision(&hq.public(), PURPOSE).unwrap();
            let (_, blinding) = blind(&client).unwrap();
            assert!(matches!(
                unblind(blinding, &hq.public(), &bad, PURPOSE),
                Err(EscrowError::BadPoint("reply"))
            ));
        }
    }

    #[test]
    fn the_secret_round_trips_through_bytes_and_refuses_junk() {
        let hq = EscrowSecret::generate();
        let again = EscrowSecret::from_bytes(&hq.to_bytes()).unwrap();
        assert_eq!(again.public(), hq.public());
        assert_eq!(
            EscrowSecret::from_bytes(&[0; 32]).unwrap_err(),
            EscrowError::BadSecret
        );
        assert_eq!(
            EscrowSecret::from_bytes(&[0xff; 32]).unwrap_err(),
            EscrowError::BadSecret,
            "not reduced mod l"
        );
        assert_eq!(format!("{hq:?}"), "EscrowSecret(..)");
    }

    #[test]
    fn the_public_key_round_trips_through_hex_and_serde() {
        let public = EscrowSecret::generate().public();
        assert_eq!(EscrowPublic::from_hex(&public.to_hex()).unwrap(), public);
        assert_eq!(
            public
                .to_hex()
                .to_uppercase()
                .parse::<EscrowPublic>()
                .unwrap(),
            public
        );
        let json = serde_json::to_string(&public).unwrap();
        assert_eq!(json, format!("\"{}\"", public.to_hex()));
        assert_eq!(serde_json::from_str::<EscrowPublic>(&json).unwrap(), public);
        assert!(matches!(
            EscrowPublic::from_hex("abc"),
            Err(EscrowError::BadHex(_))
        ));
        assert!(matches!(
            EscrowPublic::from_hex(&"zz".repeat(32)),
            Err(EscrowError::BadHex(_))
        ));
        assert!(serde_json::from_str::<EscrowPublic>("\"00\"").is_err());
    }
}
