//! HQ's watch over each unit's audit chain: the last head a unit reported, and an
//! alert for every report that shows the chain went backwards.
//!
//! A unit sends its audit chain's head (`ENVELOPE_KIND_AUDIT_HEAD`: last sequence and
//! hash, and `since`, the head it reported before with the hash its chain has at that
//! sequence now). Cutting entries off the end of a hash chain leaves a valid shorter
//! chain that the unit cannot tell from a genuine one; HQ can, because it remembers
//! what the unit reported. A report is flagged when, against the head HQ holds:
//!
//! - its sequence is lower (the chain went backwards);
//! - its sequence is the same with another hash (the chain was rewritten);
//! - its `since` is not the head HQ holds: missing, another sequence, or the chain no
//!   longer has HQ's hash there (cut and then grown past the cut, or the unit's record
//!   of what it reported is gone, as after restoring an older data dir);
//! - its JSON does not parse (nothing can be checked).
//!
//! The flagged report still becomes the head HQ holds, so one cut raises one alert,
//! not one per later report. Heads and alerts are derived from the stored envelopes
//! alone (replayed in order at open), so they need no storage of their own.

use std::collections::HashMap;

use outpost_proto::hq::{Envelope, EnvelopeKind};
use serde::{Deserialize, Serialize};

/// A head as a unit reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditHead {
    /// The chain's last sequence.
    pub seq: u64,
    /// Its hash (hex).
    pub hash: String,
    /// The envelope that carried it.
    pub envelope_seq: u64,
    /// When the unit wrote it (the envelope's time, Unix milliseconds).
    pub at_unix_ms: i64,
}

/// A report that shows a unit's audit chain went backwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainAlert {
    /// The unit.
    pub unit: String,
    /// The head HQ held before the report, if it held one.
    pub held: Option<AuditHead>,
    /// What the report said (`seq` 0 and an empty hash when it did not parse).
    pub reported: AuditHead,
    /// Why it was flagged, for people.
    pub reason: String,
}

/// The head record's JSON (other fields of the event record are ignored).
#[derive(Debug, Deserialize)]
struct Report {
    seq: u64,
    hash: String,
    since: Option<Since>,
}

#[derive(Debug, Deserialize)]
struct Since {
    seq: u64,
    hash: Option<String>,
}

/// Why `report` does not extend `held`, if it does not.
fn judge(held: &AuditHead, report: &Report) -> Option<String> {
    if report.seq < held.seq {
        return Some(format!(
            "the audit chain went backwards: head {} after {} (entries cut off the end)",
            report.seq, held.seq
        ));
    }
    if report.seq == held.seq && report.hash != held.hash {
        return Some(format!(
            "the audit chain was rewritten: entry {} has another hash than reported before",
            report.seq
        ));
    }
    match &report.since {
        None => Some(format!(
            "the report does not say which head it follows; HQ holds {} (the unit lost its record of what it reported)",
            held.seq
        )),
        Some(s) if s.seq != held.seq => Some(format!(
            "the report follows head {}, but the last one HQ holds is {} (the unit's record of what it reported was rolled back)",
            s.seq, held.seq
        )),
        Some(s) if s.hash.as_deref() != Some(held.hash.as_str()) => Some(match s.hash {
            None => format!(
                "the audit chain no longer reaches entry {}, reported before (entries cut off the end)",
                held.seq
            ),
            Some(_) => format!(
                "the audit chain's entry {} has another hash than reported before (rewritten)",
                held.seq
            ),
        }),
        Some(_) => None,
    }
}

/// The last head per unit and the alerts so far.
#[derive(Debug, Default)]
pub struct AuditWatch {
    heads: HashMap<String, AuditHead>,
    alerts: Vec<ChainAlert>,
}

impl AuditWatch {
    /// Takes in one newly stored envelope of `unit` (any kind; only audit heads
    /// count, in sequence order). Returns the alert it raised, if any.
    pub fn observe(&mut self, unit: &str, env: &Envelope) -> Option<ChainAlert> {
        if env.kind != EnvelopeKind::AuditHead as i32 {
            return None;
        }
        let held = self.heads.get(unit).cloned();
        let (reported, reason) = match serde_json::from_slice::<Report>(&env.json) {
            Ok(report) => {
                let reason = held.as_ref().and_then(|h| judge(h, &report));
                let head = AuditHead {
                    seq: report.seq,
                    hash: report.hash,
                    envelope_seq: env.seq,
                    at_unix_ms: env.at_unix_ms,
                };
                self.heads.insert(unit.to_owned(), head.clone());
                (head, reason)
            }
            Err(e) => (
                AuditHead {
                    seq: 0,
                    hash: String::new(),
                    envelope_seq: env.seq,
                    at_unix_ms: env.at_unix_ms,
                },
                Some(format!("the audit head record does not parse: {e}")),
            ),
        };
        let alert = ChainAlert {
            unit: unit.to_owned(),
            held,
            reported,
            reason: reason?,
        };
        self.alerts.push(alert.clone());
        Some(alert)
    }

    /// The last head `unit` reported.
    pub fn head(&self, unit: &str) -> Option<AuditHead> {
        self.heads.get(unit).cloned()
    }

    /// Every alert, oldest first.
    pub fn alerts(&self) -> &[ChainAlert] {
        &self.alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64, hash: &str, since: Option<(u64, Option<&str>)>) -> Envelope {
        head_at(seq, seq, hash, since)
    }

    fn head_at(
        envelope_seq: u64,
        seq: u64,
        hash: &str,
        since: Option<(u64, Option<&str>)>,
    ) -> Envelope {
        let since = since.map(|(s, h)| serde_json::json!({"seq": s, "hash": h}));
        Envelope {
            seq: envelope_seq,
            kind: EnvelopeKind::AuditHead as i32,
            id: format!("id-{envelope_seq}"),
            at_unix_ms: 1,
            json: serde_json::json!({"type": "audit_head", "id": "x", "at": "t", "dropped_before": 0, "seq": seq, "hash": hash, "since": since})
                .to_string()
                .into_bytes(),
        }
    }

    #[test]
    fn a_chain_that_only_grows_raises_nothing() {
        let mut w = AuditWatch::default();
        assert_eq!(w.observe("u", &head(3, "c", None)), None);
        assert_eq!(w.observe("u", &head(7, "g", Some((3, Some("c"))))), None);
        assert_eq!(w.head("u").map(|h| (h.seq, h.hash)), Some((7, "g".into())));
        // Other kinds are not looked at.
        let mut sale = head(9, "x", None);
        sale.kind = EnvelopeKind::Sale as i32;
        assert_eq!(w.observe("u", &sale), None);
        assert!(w.alerts().is_empty());
        assert_eq!(w.head("other"), None);
    }

    #[test]
    fn every_way_of_going_backwards_is_flagged_once() {
        type Case = (&'static str, Envelope, &'static str);
        let cases: [Case; 6] = [
            ("lower", head(4, "d", Some((7, None))), "went backwards"),
            ("same seq", head(7, "G", Some((3, Some("c")))), "rewritten"),
            (
                "cut and grown",
                head(9, "i", Some((7, None))),
                "no longer reaches entry 7",
            ),
            (
                "rewritten below",
                head(9, "i", Some((7, Some("G")))),
                " another hash",
            ),
            ("no since", head(9, "i", None), "does not say"),
            (
                "rolled back",
                head(9, "i", Some((3, Some("c")))),
                "rolled back",
            ),
        ];
        for (what, report, why) in cases {
            let mut w = AuditWatch::default();
            w.observe("u", &head(7, "g", None));
            let alert = w
                .observe("u", &report)
                .unwrap_or_else(|| panic!("{what}: not flagged"));
            assert!(alert.reason.contains(why), "{what}: {}", alert.reason);
            assert_eq!(alert.held.map(|h| h.seq), Some(7), "{what}");
            // The report is the head now: the next one that follows it is fine.
            let seq = w.head("u").unwrap().seq;
            let hash = w.head("u").unwrap().hash;
            let next = head_at(20, seq + 1, "z", Some((seq, Some(&hash))));
            assert_eq!(w.observe("u", &next), None, "{what}");
            assert_eq!(w.alerts().len(), 1, "{what}");
        }
    }

    #[test]
    fn an_unreadable_report_is_flagged_and_keeps_the_head() {
        let mut w = AuditWatch::default();
        w.observe("u", &head(7, "g", None));
        let mut bad = head(8, "h", None);
        bad.json = b"{\"type\":\"audit_head\"}".to_vec();
        let alert = w.observe("u", &bad).unwrap();
        assert!(alert.reason.contains("does not parse"), "{}", alert.reason);
        assert_eq!(w.head("u").unwrap().seq, 7);
    }
}
