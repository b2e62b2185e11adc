//! Key layout of the journal tree.
//!
//! Everything a sale writes lives in one sled tree under short prefixes, so one atomic
//! `Batch` covers a whole group of sales:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `i/` | keyed BLAKE3 hash of idempotency scope and key (32 bytes) | idempotency record |
//! | `s/` | sale id (16 bytes, UUIDv7: time order) | sale |
//! | `r/` | refund id | refund |
//! | `x/` | sale id + refund id | empty: refunds of a sale |
//! | `p/` | sale or refund id | a checkout or refund waiting on the payment terminal |
//! | `sf/` | payment key | an offline approval not yet forwarded (`sales::exposure`) |
//! | `k/` | SKU | stock level, i64 big-endian |
//! | `m/` | movement id | inventory movement |
//! | `n/` | SKU, 0, movement id | empty: movements of a SKU |
//! | `ob/` | first outbox sequence of the block, u64 big-endian | a block of outbox entries for HQ, each with its record's bytes (`store::writer`) |
//! | `o/` | outbox sequence, u64 big-endian | outbox entry naming its record (schema ≤ 3 only; moved into blocks at open by `migrate`) |
//! | `q/` | enqueue id (UUIDv7) | receipt waiting for the printer (`devices::receipts`) |
//! | `t/` | sale id | receipt printed: copies and time (`devices::receipts`) |
//! | `l/` | keyed BLAKE3 hash of the rest (32 bytes) | customers, cards, vouchers and loyalty totals (`loyalty`) |
//! | `meta/outbox_next` | | next outbox sequence |
//! | `meta/outbox_bytes` | | bytes of the records waiting for HQ |
//! | `meta/outbox_acked` | | highest sequence HQ acknowledged and the store deleted |
//!
//! Every value is sealed (`super::crypt`) with the tree and the physical key as
//! associated data. Callers build keys with the functions below; [`physical`] (applied
//! by the store and `Tx`) replaces the client-chosen part of an `i/` or `l/` key with its
//! keyed hash, so the idempotency keys terminals send, and loyalty card numbers and
//! voucher codes, never reach the disk.

use uuid::Uuid;

use super::StoreError;

/// The next outbox sequence number.
pub const OUTBOX_NEXT: &[u8] = b"meta/outbox_next";
/// Bytes of the records the outbox names (see `WriterStats::outbox_bytes`).
pub const OUTBOX_BYTES: &[u8] = b"meta/outbox_bytes";
/// The acknowledged watermark (see `WriterStats::outbox_acked`).
pub const OUTBOX_ACKED: &[u8] = b"meta/outbox_acked";
/// Idempotency records.
pub const IDEM: &[u8] = b"i/";
/// Sales.
pub const SALE: &[u8] = b"s/";
/// Refunds.
pub const REFUND: &[u8] = b"r/";
/// Refunds by sale.
pub const SALE_REFUNDS: &[u8] = b"x/";
/// Pending payments.
pub const PENDING: &[u8] = b"p/";
/// Stock levels.
pub const STOCK: &[u8] = b"k/";
/// Inventory movements.
pub const MOVEMENT: &[u8] = b"m/";
/// Outbox entries of schema ≤ 3 (one key per entry, naming its record).
pub const OUTBOX: &[u8] = b"o/";
/// Outbox blocks.
pub const OUTBOX_BLOCKS: &[u8] = b"ob/";
/// Movements by SKU.
pub const SKU_MOVEMENTS: &[u8] = b"n/";

/// Customers, cards, vouchers and loyalty totals (`crate::loyalty`), hashed like `i/`.
pub const LOYALTY: &[u8] = b"l/";

/// The key stored in sled for `key`: an `i/` or `l/` key's client-chosen rest becomes
/// its keyed hash (32 bytes); every other key is stored as it is.
pub(crate) fn physical(keys: &super::crypt::Keys, key: &[u8]) -> Vec<u8> {
    if let Some(rest) = key.strip_prefix(IDEM) {
        return join(IDEM, &keys.hash_key(rest));
    }
    if let Some(rest) = key.strip_prefix(LOYALTY) {
        // The same keyed hash, told apart from an `i/` key by a domain byte.
        let mut tagged = Vec::with_capacity(rest.len() + 1);
        tagged.push(b'l');
        tagged.extend_from_slice(rest);
        return join(LOYALTY, &keys.hash_key(&tagged));
    }
    key.to_vec()
}

fn join(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// Key of an idempotency record in `scope` (e.g. `checkout`).
pub fn idem(scope: &str, key: &str) -> Vec<u8> {
    join(IDEM, format!("{scope}\0{key}").as_bytes())
}
/// Key of a sale.
pub fn sale(id: Uuid) -> Vec<u8> {
    join(SALE, id.as_bytes())
}
/// Key of a refund.
pub fn refund(id: Uuid) -> Vec<u8> {
    join(REFUND, id.as_bytes())
}
/// Index key linking a refund to its sale.
pub fn sale_refund(sale: Uuid, refund: Uuid) -> Vec<u8> {
    let mut k = join(SALE_REFUNDS, sale.as_bytes());
    k.extend_from_slice(refund.as_bytes());
    k
}
/// Prefix of the refunds of a sale.
pub fn sale_refunds(sale: Uuid) -> Vec<u8> {
    join(SALE_REFUNDS, sale.as_bytes())
}
/// Key of a pending payment operation.
pub fn pending(id: Uuid) -> Vec<u8> {
    join(PENDING, id.as_bytes())
}
/// Key of a stock level.
pub fn stock(sku: &str) -> Vec<u8> {
    join(STOCK, sku.as_bytes())
}
/// Key of an inventory movement.
pub fn movement(id: Uuid) -> Vec<u8> {
    join(MOVEMENT, id.as_bytes())
}
/// Prefix of the movements of a SKU.
pub fn sku_movements(sku: &str) -> Vec<u8> {
    let mut k = join(SKU_MOVEMENTS, sku.as_bytes());
    k.push(0);
    k
}
/// Index key linking a movement to its SKU.
pub fn sku_movement(sku: &str, id: Uuid) -> Vec<u8> {
    let mut k = sku_movements(sku);
    k.extend_from_slice(id.as_bytes());
    k
}
/// Key of a schema-3 outbox entry.
pub fn outbox(seq: u64) -> Vec<u8> {
    join(OUTBOX, &seq.to_be_bytes())
}
/// Key of the outbox block whose first entry is `first`.
pub fn outbox_block(first: u64) -> Vec<u8> {
    join(OUTBOX_BLOCKS, &first.to_be_bytes())
}
/// The first sequence of an outbox block key.
pub fn outbox_block_first(key: &[u8]) -> Result<u64, StoreError> {
    decode_u64(key.get(OUTBOX_BLOCKS.len()..).unwrap_or_default())
}

/// Decode a big-endian u64 value.
pub fn decode_u64(v: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt("u64 value".into()))?;
    Ok(u64::from_be_bytes(b))
}

/// Decode a big-endian i64 value.
pub fn decode_i64(v: &[u8]) -> Result<i64, StoreError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt("i64 value".into()))?;
    Ok(i64::from_be_bytes(b))
}

/// The id at the end of a key with a 2-byte prefix.
pub fn uuid_suffix(key: &[u8]) -> Result<Uuid, StoreError> {
    let tail = key.get(key.len().saturating_sub(16)..).unwrap_or_default();
    Uuid::from_slice(tail).map_err(|_| StoreError::Corrupt("id in key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sale_keys_sort_by_time() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        assert!(sale(a) < sale(b));
        assert_eq!(uuid_suffix(&sale(b)).unwrap(), b);
        assert!(outbox(2) < outbox(256), "big-endian keeps numeric order");
    }
}
