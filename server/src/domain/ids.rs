//! Record ids: UUIDv7, ordered by creation even when the wall clock goes back.
//!
//! A UUIDv7 starts with its Unix time in milliseconds, so sales, refunds and movements
//! list in the order they were made and a cursor is just an id. The wall clock can go
//! back (an NTP step, a technician fixing the date, a dead RTC battery): within one
//! process `Uuid::now_v7` already keeps the highest time seen, but a server restarted
//! with the clock hours back would make ids older than the ones on disk. So ids come
//! from [`next`], which never returns an id at or below the floor, and the store raises
//! the floor at open to the newest id it holds ([`at_least`]). While the clock is
//! behind, new ids carry the floor's time plus a counter; once the clock passes it they
//! carry the clock's time again.

use std::sync::Mutex;

use uuid::Uuid;

/// The highest id handed out or found on disk, as a number.
static FLOOR: Mutex<u128> = Mutex::new(0);

/// The low 62 bits of a UUIDv7 (`rand_b`), which [`successor`] counts in.
const RAND_B: u128 = (1 << 62) - 1;

/// A new id, above every id handed out by this process and every id [`at_least`] was
/// given.
pub fn next() -> Uuid {
    let mut floor = FLOOR.lock().unwrap_or_else(|p| p.into_inner());
    let candidate = Uuid::now_v7().as_u128();
    let id = if candidate > *floor {
        candidate
    } else {
        successor(*floor)
    };
    *floor = id;
    Uuid::from_u128(id)
}

/// Raise the floor to `id`: every later [`next`] is above it.
pub fn at_least(id: Uuid) {
    let mut floor = FLOOR.lock().unwrap_or_else(|p| p.into_inner());
    *floor = (*floor).max(id.as_u128());
}

/// The smallest valid UUIDv7 above `id` (a UUIDv7 itself): one more in its random
/// bits, or, when they are all ones, the next millisecond with them zero.
fn successor(id: u128) -> u128 {
    if id & RAND_B != RAND_B {
        return id + 1;
    }
    let millis = (id >> 80) + 1;
    // Version 7 in bits 76..80, variant 0b10 in bits 62..64.
    (millis << 80) | (0x7 << 76) | (0b10 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(id: Uuid) -> u64 {
        id.get_timestamp()
            .map(|t| {
                let (s, n) = t.to_unix();
                s * 1000 + u64::from(n / 1_000_000)
            })
            .unwrap()
    }

    #[test]
    fn ids_stay_above_a_floor_from_the_future_and_stay_valid_v7() {
        // A floor two hours ahead of the clock: the store found ids made before the
        // clock went back.
        let ahead = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (time::OffsetDateTime::now_utc().unix_timestamp() + 7200) as u64,
            0,
        ));
        at_least(ahead);
        let mut last = ahead;
        for _ in 0..1000 {
            let id = next();
            assert!(id > last, "{id} after {last}");
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            assert!(millis(id) >= millis(ahead));
            last = id;
        }
    }

    #[test]
    fn the_successor_of_all_ones_random_bits_is_the_next_millisecond() {
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            1_800_000_000,
            0,
        ));
        let full = Uuid::from_u128(id.as_u128() | RAND_B);
        let next = Uuid::from_u128(successor(full.as_u128()));
        assert!(next > full);
        assert_eq!(next.get_version_num(), 7);
        assert_eq!(next.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(millis(next), millis(full) + 1);
        assert_eq!(successor(id.as_u128()), id.as_u128() + 1);
    }
}
