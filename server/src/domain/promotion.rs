//! Promotions and how a cart gets them: good for the customer, deterministic, no stacking.
//!
//! # Kinds
//!
//! - [`PromotionKind::PercentOff`]: a percentage of each eligible line,
//!   `div_round_half_up(gross × bp, 10000)` per line.
//! - [`PromotionKind::AmountOff`]: a fixed amount off each unit of an each-line, once per
//!   weight line, never more than the line.
//! - [`PromotionKind::BuyXGetY`]: units of all eligible each-lines are pooled, sorted from
//!   the most to the least expensive and cut into groups of `buy + get`; in each complete
//!   group the `get` cheapest units are free. Sorting first puts expensive units together,
//!   so the free units are as expensive as they can be: the best split for the customer.
//! - [`PromotionKind::NForPrice`]: pooled the same way, every `n` units cost `price`. The
//!   most expensive units are grouped first (best for the customer); a group is only
//!   formed while it saves money, so a group of cheap units that would cost more than
//!   their shelf price is never made.
//!
//! Pooled kinds ignore weight lines.
//!
//! # Choosing promotions
//!
//! Each cart line gets at most one promotion (no stacking). Percent and amount off are
//! *per-line* kinds: what they take off a line depends on that line alone, so one such
//! promotion can discount any number of lines, each independently. Buy X get Y and N for
//! price are *pooled* kinds: their discount depends on which lines are pooled together.
//!
//! Finding the best assignment is a set-partitioning problem, so [`apply_promotions`]
//! does not search for it. It computes two deterministic greedy assignments and returns
//! the one with the larger total discount; on a tie, the per-line-aware one.
//!
//! ## Per-line-aware greedy
//!
//! A greedy over candidates:
//!
//! - a per-line candidate is one (promotion, line) pair with a positive discount; it is
//!   computed once, as it never changes;
//! - a pooled candidate is one pooled promotion evaluated on all its still-free eligible
//!   lines; it uses every line with a unit in a complete (applied) group, even one whose
//!   units were all paid for (it "bought" the free item). Lines that only contributed to
//!   an incomplete remainder stay free for other promotions.
//!
//! Each round:
//!
//! 1. Rank the candidates on free lines by discount, largest first; ties go to the
//!    higher `priority`, then to the smaller `id`, then to the lower line index (for a
//!    pooled candidate, the lowest line it uses), so the same cart always prices the
//!    same way.
//! 2. A pooled candidate is skipped this round unless its discount is strictly greater
//!    than the sum, over the lines it would use, of each line's best per-line discount
//!    (0 for a line no per-line promotion discounts). A skipped candidate competes
//!    again in later rounds, re-evaluated on what is left once some of its lines were
//!    taken.
//! 3. The best remaining candidate takes its lines. A pooled promotion is then done: its
//!    leftover lines cannot form another saving group (fewer units than a group for buy X
//!    get Y; only groups no dearer than one that already did not save for N for price).
//! 4. Repeat until no candidate with a positive discount is left. Every round takes at
//!    least one line (a pooled candidate is only skipped when some line of it has a
//!    positive per-line candidate), so there are at most as many rounds as lines.
//!
//! ## Whole-promotion greedy
//!
//! The rule before per-line candidates: every promotion, of any kind, competes as a
//! whole. Each round, each promotion not yet applied is evaluated on all its free
//! eligible lines (a per-line kind on each of them, a pooled kind as above); the one
//! with the largest total takes every line it uses, ties going to the higher `priority`,
//! then to the smaller `id`. Repeat until no promotion saves anything; each promotion
//! applies at most once, so there are at most as many rounds as promotions.
//!
//! ## Guarantee and known gaps
//!
//! The result never saves the customer less than either greedy alone. With only
//! per-line promotions it is optimal: the per-line-aware greedy gives every line its
//! best discount, and the tie rule keeps that assignment. With pooled promotions it is
//! still a heuristic, not a proven optimum. Known misses, all on the pooled side:
//!
//! - a pooled promotion always pools *all* its free eligible lines, in both greedies:
//!   neither tries a subset. It can take a line it barely needs (or only pays with)
//!   that a per-line promotion would have discounted more, where pooling a subset and
//!   leaving that line to the per-line promotion saves more (buy 1 get 1 on four 1.00
//!   items plus 70 % off two of them: both greedies give 2.00 instead of 2.40);
//! - the per-line-aware greedy only compares a pooled candidate with per-line
//!   alternatives, not with what another pooled promotion would give the same lines,
//!   and the whole-promotion greedy lets a wide promotion block better line-by-line
//!   discounts: each covers some of the other's misses, not all of them, and a cart can
//!   need a mix of the two rules that neither produces.
//!
//! On random small carts misses are rare; the tests pin an example of the first one and
//! one where the whole-promotion greedy is the better of the two.
//!
//! Per-line discounts are integers in minor units. Pooled kinds give each line the value
//! of its own free units (buy X get Y) or a share of the saving proportional to the line's
//! units in the applied groups (N for price), split with the largest-remainder method so
//! the shares add up exactly to the promotion's total.
//!
//! # Speed
//!
//! [`PromotionSet`] indexes promotions by SKU and by category, so a cart only looks at the
//! promotions that target its lines; that lookup is done once and shared by both
//! greedies, which then roughly double the work of one. In the per-line-aware greedy,
//! per-line candidates are computed and sorted once and a cursor walks them, skipping
//! lines already taken. In both, a promotion competing as a whole is only re-evaluated
//! after a round took one of its lines (found through a per-line list of candidates);
//! the rest keep their result.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::money::{Money, div_round_half_up};
use super::product::Quantity;
use super::product::Sku;

/// Longest promotion id accepted.
pub const PROMOTION_ID_MAX_LEN: usize = 64;

/// A promotion as configured by the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    /// Stable key; also the last tie-breaker between equally good promotions.
    pub id: String,
    /// Printed on receipts under the discounted lines.
    pub name: String,
    /// What the promotion gives.
    pub kind: PromotionKind,
    /// Which lines it applies to.
    pub target: Target,
    /// First instant the promotion applies (inclusive), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// First instant it no longer applies (exclusive), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Breaks ties between promotions giving the same discount; higher wins.
    #[serde(default)]
    pub priority: i32,
}

/// What a promotion gives. JSON: `{"type": "percent_off", "percent_bp": 1500}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PromotionKind {
    /// A percentage off each eligible line.
    PercentOff {
        /// Basis points, 1..=10000 (1500 = 15 %).
        percent_bp: u32,
    },
    /// A fixed amount off each unit (each-lines) or once per line (weight lines).
    AmountOff {
        /// Minor units off; capped at the line's gross.
        amount: Money,
    },
    /// For every `buy + get` eligible units, the `get` cheapest are free.
    BuyXGetY {
        /// Units paid for in each group (at least 1).
        buy: u32,
        /// Units free in each group (at least 1).
        get: u32,
    },
    /// Every `n` eligible units cost `price`.
    NForPrice {
        /// Units in a group (at least 2).
        n: u32,
        /// What a whole group costs, in minor units.
        price: Money,
    },
}

/// Which lines a promotion applies to: a line is eligible if its SKU is listed or its
/// category is listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Products targeted one by one.
    #[serde(default)]
    pub skus: Vec<Sku>,
    /// Whole categories targeted (exact match on `Product::category`).
    #[serde(default)]
    pub categories: Vec<String>,
}

/// Why a promotion is malformed; [`PromotionError::field`] names the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromotionError {
    /// Empty, blank or longer than [`PROMOTION_ID_MAX_LEN`].
    #[error("id must be 1 to {PROMOTION_ID_MAX_LEN} non-blank characters")]
    Id,
    /// Empty or only whitespace.
    #[error("name must not be blank")]
    NameBlank,
    /// `ends_at` is not after `starts_at`, so the promotion could never apply.
    #[error("ends_at must be after starts_at")]
    Schedule,
    /// Outside 1..=10000 basis points.
    #[error("percent_bp must be between 1 and 10000 (got {percent_bp})")]
    Percent {
        /// The rejected value.
        percent_bp: u32,
    },
    /// Below zero.
    #[error("amount must not be negative")]
    AmountNegative,
    /// Zero.
    #[error("buy must be at least 1")]
    Buy,
    /// Zero.
    #[error("get must be at least 1")]
    Get,
    /// Below 2 (a group of one is just a price change).
    #[error("n must be at least 2 (got {n})")]
    GroupSize {
        /// The rejected value.
        n: u32,
    },
    /// Below zero.
    #[error("price must not be negative")]
    PriceNegative,
    /// Neither SKUs nor categories: the promotion would apply to nothing.
    #[error("target must list at least one SKU or category")]
    TargetEmpty,
}

impl PromotionError {
    /// The JSON field at fault, e.g. `"kind.percent_bp"`.
    pub fn field(&self) -> &'static str {
        match self {
            PromotionError::Id => "id",
            PromotionError::NameBlank => "name",
            PromotionError::Schedule => "ends_at",
            PromotionError::Percent { .. } => "kind.percent_bp",
            PromotionError::AmountNegative => "kind.amount",
            PromotionError::Buy => "kind.buy",
            PromotionError::Get => "kind.get",
            PromotionError::GroupSize { .. } => "kind.n",
            PromotionError::PriceNegative => "kind.price",
            PromotionError::TargetEmpty => "target",
        }
    }
}

impl Promotion {
    /// Checks that the promotion is well-formed; the first problem found is reported.
    pub fn validate(&self) -> Result<(), PromotionError> {
        let id_len = self.id.chars().count();
        if id_len == 0 || id_len > PROMOTION_ID_MAX_LEN || self.id.trim().is_empty() {
            return Err(PromotionError::Id);
        }
        if self.name.trim().is_empty() {
            return Err(PromotionError::NameBlank);
        }
        if self.ends_at <= self.starts_at {
            return Err(PromotionError::Schedule);
        }
        match self.kind {
            PromotionKind::PercentOff { percent_bp } => {
                if !(1..=10_000).contains(&percent_bp) {
                    return Err(PromotionError::Percent { percent_bp });
                }
            }
            PromotionKind::AmountOff { amount } => {
                if amount.is_negative() {
                    return Err(PromotionError::AmountNegative);
                }
            }
            PromotionKind::BuyXGetY { buy, get } => {
                if buy == 0 {
                    return Err(PromotionError::Buy);
                }
                if get == 0 {
                    return Err(PromotionError::Get);
                }
            }
            PromotionKind::NForPrice { n, price } => {
                if n < 2 {
                    return Err(PromotionError::GroupSize { n });
                }
                if price.is_negative() {
                    return Err(PromotionError::PriceNegative);
                }
            }
        }
        if self.target.skus.is_empty() && self.target.categories.is_empty() {
            return Err(PromotionError::TargetEmpty);
        }
        Ok(())
    }

    /// Whether the promotion applies at `t`: `starts_at <= t < ends_at`.
    pub fn is_active_at(&self, t: OffsetDateTime) -> bool {
        self.starts_at <= t && t < self.ends_at
    }
}

/// The store's promotions, indexed for pricing carts.
#[derive(Clone, Debug, Default)]
pub struct PromotionSet {
    /// Sorted by id, so indices double as the id tie-breaker.
    promotions: Vec<Promotion>,
    /// Promotion indices (ascending) per targeted SKU.
    by_sku: HashMap<String, Vec<u32>>,
    /// Promotion indices (ascending) per targeted category.
    by_category: HashMap<String, Vec<u32>>,
}

impl PromotionSet {
    /// Builds the set and its indexes.
    ///
    /// Promotions that fail [`Promotion::validate`] are kept (so [`PromotionSet::all`]
    /// shows them) but never applied: one bad record must not break pricing.
    pub fn new(mut promotions: Vec<Promotion>) -> PromotionSet {
        // Stable, so duplicate ids keep their given order and stay deterministic.
        promotions.sort_by(|a, b| a.id.cmp(&b.id));
        let mut by_sku: HashMap<String, Vec<u32>> = HashMap::new();
        let mut by_category: HashMap<String, Vec<u32>> = HashMap::new();
        for (index, promotion) in promotions.iter().enumerate() {
            if promotion.validate().is_err() {
                continue;
            }
            // Promotion counts are far below u32::MAX; the index stays compact.
            let index = index as u32;
            for sku in &promotion.target.skus {
                push_once(by_sku.entry(sku.as_str().to_owned()).or_default(), index);
            }
            for category in &promotion.target.categories {
                push_once(by_category.entry(category.clone()).or_default(), index);
            }
        }
        PromotionSet {
            promotions,
            by_sku,
            by_category,
        }
    }

    /// Every promotion, sorted by id.
    pub fn all(&self) -> &[Promotion] {
        &self.promotions
    }

    /// The promotion with this id, if any.
    pub fn get(&self, id: &str) -> Option<&Promotion> {
        self.promotions
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.promotions.get(i))
    }

    /// The valid promotions that apply at `t`, sorted by id.
    pub fn active_at(&self, t: OffsetDateTime) -> Vec<&Promotion> {
        self.promotions
            .iter()
            .filter(|p| p.is_active_at(t) && p.validate().is_ok())
            .collect()
    }

    /// Number of promotions, valid or not.
    pub fn len(&self) -> usize {
        self.promotions.len()
    }

    /// Whether there are no promotions at all.
    pub fn is_empty(&self) -> bool {
        self.promotions.is_empty()
    }
}

/// Indices are pushed in ascending order, so a duplicate can only be the last entry.
fn push_once(list: &mut Vec<u32>, index: u32) {
    if list.last() != Some(&index) {
        list.push(index);
    }
}

/// A cart line as promotions see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoLine {
    /// Matched against [`Target::skus`].
    pub sku: Sku,
    /// Matched against [`Target::categories`].
    pub category: String,
    /// Per unit, or per kilogram for weight lines.
    pub unit_price: Money,
    /// Units or grams; pooled kinds only use unit lines.
    pub quantity: Quantity,
    /// What the line costs before discounts; no discount exceeds it.
    pub gross: Money,
}

/// The promotion a line got and what it took off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDiscount {
    /// Id of the promotion.
    pub promotion_id: String,
    /// Name of the promotion, for receipts.
    pub promotion_name: String,
    /// Minor units off this line; can be zero for a line that only paid for its part of
    /// a pooled group (e.g. the "buy" units of buy-2-get-1), which still used the line.
    pub amount: Money,
}

/// Applies promotions to `lines` at time `at`, one per line at most. Result index = line
/// index; `None` for lines without a promotion.
///
/// Computes two greedy assignments, the per-line-aware one and the whole-promotion one,
/// and returns the one with the larger total discount (the per-line-aware one on a tie).
/// The customer never saves less than with either, but the result is not a proven
/// optimum: see the module docs for the rules and the known misses.
pub fn apply_promotions(
    set: &PromotionSet,
    lines: &[PromoLine],
    at: OffsetDateTime,
) -> Vec<Option<LineDiscount>> {
    let targeted = targeted(set, lines, at);
    let per_line = per_line_greedy(&targeted, lines);
    let whole = whole_promotion_greedy(&targeted, lines);
    if total_discount(&whole) > total_discount(&per_line) {
        whole
    } else {
        per_line
    }
}

/// What an assignment takes off the cart in total, in minor units.
fn total_discount(result: &[Option<LineDiscount>]) -> i128 {
    result
        .iter()
        .flatten()
        .map(|d| i128::from(d.amount.minor()))
        .sum()
}

/// The per-line-aware greedy: per-line kinds compete line by line, pooled kinds as a
/// whole but only against the per-line alternatives on their lines (module docs,
/// "Per-line-aware greedy").
fn per_line_greedy(targeted: &[Targeted<'_>], lines: &[PromoLine]) -> Vec<Option<LineDiscount>> {
    let mut result: Vec<Option<LineDiscount>> = vec![None; lines.len()];
    let Candidates {
        mut pooled,
        per_line,
        best_per_line,
        pooled_by_line,
    } = candidates(targeted, lines);
    let mut assigned = vec![false; lines.len()];
    let mut free = Vec::with_capacity(lines.len());
    let mut just_taken = Vec::with_capacity(lines.len());
    // Per-line candidates never change, so the best free one is the first whose line is
    // still free: this cursor only moves forward.
    let mut next_per_line = 0;

    loop {
        while per_line
            .get(next_per_line)
            .is_some_and(|c| assigned[c.taken.0])
        {
            next_per_line += 1;
        }
        let mut best: Option<(Rank, Choice)> = per_line
            .get(next_per_line)
            .map(|c| (c.rank, Choice::PerLine(next_per_line)));
        for (ci, candidate) in pooled.iter_mut().enumerate() {
            if !candidate.refresh(&assigned, &mut free, lines) {
                continue;
            }
            let total = candidate.eval.total;
            if total <= 0 {
                continue;
            }
            let rank = Rank {
                total,
                priority: candidate.promotion.priority,
                promotion: candidate.index,
                line: candidate
                    .eval
                    .lines
                    .iter()
                    .map(|&(l, _)| l)
                    .min()
                    .unwrap_or(0),
            };
            if best.as_ref().is_some_and(|(b, _)| !rank.beats(b)) {
                continue;
            }
            // Skipped this round if the same lines are worth at least as much to the
            // per-line promotions; it can only pass once other promotions took some of
            // its lines and it was re-evaluated.
            let alternatives: i128 = candidate
                .eval
                .lines
                .iter()
                .map(|&(l, _)| i128::from(best_per_line[l]))
                .sum();
            if total > alternatives {
                best = Some((rank, Choice::Pooled(ci)));
            }
        }
        let Some((_, choice)) = best else {
            break;
        };
        let (promotion, taken): (&Promotion, &[(usize, i64)]) = match choice {
            Choice::PerLine(i) => {
                let c = &per_line[i];
                (c.promotion, std::slice::from_ref(&c.taken))
            }
            Choice::Pooled(ci) => {
                let chosen = &mut pooled[ci];
                // Its leftover lines cannot form another saving group: see the module docs.
                chosen.done = true;
                (chosen.promotion, &chosen.eval.lines)
            }
        };
        just_taken.clear();
        for &(line, amount) in taken {
            assigned[line] = true;
            just_taken.push(line);
            result[line] = Some(LineDiscount {
                promotion_id: promotion.id.clone(),
                promotion_name: promotion.name.clone(),
                amount: Money(amount),
            });
        }
        for &line in &just_taken {
            for &ci in &pooled_by_line[line] {
                pooled[ci].stale = true;
            }
        }
    }
    result
}

/// The whole-promotion greedy, the rule before per-line candidates: every promotion
/// competes as a whole on its free eligible lines (module docs, "Whole-promotion
/// greedy").
///
/// Each round the promotion with the largest total on its free lines (ties: higher
/// `priority`, then smaller id) takes every line it uses and is done; promotions that
/// lost a line are re-evaluated, the others keep their result. Stops when no promotion
/// saves anything.
fn whole_promotion_greedy(
    targeted: &[Targeted<'_>],
    lines: &[PromoLine],
) -> Vec<Option<LineDiscount>> {
    let mut result: Vec<Option<LineDiscount>> = vec![None; lines.len()];
    let mut candidates: Vec<WholeCandidate<'_>> =
        targeted.iter().map(WholeCandidate::new).collect();
    let mut by_line: Vec<Vec<usize>> = vec![Vec::new(); lines.len()];
    for (ci, candidate) in candidates.iter().enumerate() {
        for &line in candidate.eligible {
            by_line[line].push(ci);
        }
    }
    let mut assigned = vec![false; lines.len()];
    let mut free = Vec::with_capacity(lines.len());
    loop {
        let mut best: Option<usize> = None;
        for ci in 0..candidates.len() {
            if !candidates[ci].refresh(&assigned, &mut free, lines) {
                continue;
            }
            let c = &candidates[ci];
            if c.eval.total <= 0 {
                continue;
            }
            // Candidates are in id order: on equal (total, priority) the first one seen,
            // with the smaller id, stays.
            let beats = |b: usize| {
                let b = &candidates[b];
                (c.eval.total, c.promotion.priority) > (b.eval.total, b.promotion.priority)
            };
            if best.is_none_or(beats) {
                best = Some(ci);
            }
        }
        let Some(ci) = best else {
            break;
        };
        let chosen = &mut candidates[ci];
        chosen.done = true;
        let promotion = chosen.promotion;
        let taken = std::mem::take(&mut chosen.eval.lines);
        for &(line, amount) in &taken {
            assigned[line] = true;
            result[line] = Some(LineDiscount {
                promotion_id: promotion.id.clone(),
                promotion_name: promotion.name.clone(),
                amount: Money(amount),
            });
        }
        for &(line, _) in &taken {
            for &cj in &by_line[line] {
                candidates[cj].stale = true;
            }
        }
    }
    result
}

/// Orders candidates: larger discount, then higher priority, then smaller promotion id
/// (set index), then lower line index.
#[derive(Clone, Copy, Debug)]
struct Rank {
    total: i128,
    priority: i32,
    /// Index in the id-sorted [`PromotionSet`], so duplicate ids stay ordered too.
    promotion: u32,
    /// The line (per-line kinds) or the lowest line used (pooled kinds).
    line: usize,
}

impl Rank {
    fn beats(&self, other: &Rank) -> bool {
        use std::cmp::Reverse;
        (
            self.total,
            self.priority,
            Reverse(self.promotion),
            Reverse(self.line),
        ) > (
            other.total,
            other.priority,
            Reverse(other.promotion),
            Reverse(other.line),
        )
    }
}

/// The winner of a round.
#[derive(Clone, Copy, Debug)]
enum Choice {
    /// Index into [`Candidates::per_line`].
    PerLine(usize),
    /// Index into [`Candidates::pooled`].
    Pooled(usize),
}

/// An active, valid promotion that targets at least one line of the cart.
struct Targeted<'a> {
    promotion: &'a Promotion,
    /// Position in the id-sorted [`PromotionSet`], the id tie-breaker.
    index: u32,
    /// Lines it targets, ascending.
    eligible: Vec<usize>,
}

/// Everything the per-line-aware greedy competes over, built once per cart.
struct Candidates<'a> {
    /// Pooled promotions (buy X get Y, N for price), in id order.
    pooled: Vec<WholeCandidate<'a>>,
    /// Every (per-line promotion, line) pair with a positive discount, best first.
    per_line: Vec<PerLineCandidate<'a>>,
    /// Per line: the largest discount any per-line promotion gives it (0 if none), what
    /// a pooled promotion must beat to take the line.
    best_per_line: Vec<i64>,
    /// Per line: the pooled candidates that target it, to mark them stale.
    pooled_by_line: Vec<Vec<usize>>,
}

/// A per-line promotion (percent or amount off) on one line; its discount depends on
/// that line only, so it is computed once.
struct PerLineCandidate<'a> {
    promotion: &'a Promotion,
    /// `(line, amount)`, the shape the loop assigns from.
    taken: (usize, i64),
    rank: Rank,
}

/// A promotion competing as a whole on its free eligible lines: a pooled promotion in
/// the per-line-aware greedy, any promotion in the whole-promotion greedy.
struct WholeCandidate<'a> {
    promotion: &'a Promotion,
    /// Position in the id-sorted set, for tie-breaking.
    index: u32,
    /// Lines it targets, ascending.
    eligible: &'a [usize],
    /// Its result on the lines that were free when it was last evaluated.
    eval: Eval,
    /// Some of its lines were taken since `eval` was computed.
    stale: bool,
    /// Applied already, or nothing left for it.
    done: bool,
}

impl<'a> WholeCandidate<'a> {
    fn new(targeted: &'a Targeted<'_>) -> WholeCandidate<'a> {
        WholeCandidate {
            promotion: targeted.promotion,
            index: targeted.index,
            eligible: &targeted.eligible,
            eval: Eval::default(),
            stale: true,
            done: false,
        }
    }

    /// Re-evaluates the candidate on its free lines if some were taken since the last
    /// evaluation (`free` is scratch space). `false` if it no longer competes: applied
    /// already, or none of its lines left.
    fn refresh(&mut self, assigned: &[bool], free: &mut Vec<usize>, lines: &[PromoLine]) -> bool {
        if self.done {
            return false;
        }
        if self.stale {
            free.clear();
            free.extend(self.eligible.iter().copied().filter(|&l| !assigned[l]));
            if free.is_empty() {
                self.done = true;
                return false;
            }
            self.eval = evaluate(&self.promotion.kind, free, lines);
            self.stale = false;
        }
        true
    }
}

/// The outcome of one promotion on a set of free lines.
#[derive(Debug, Default)]
struct Eval {
    /// Sum of the amounts in `lines`.
    total: i128,
    /// Lines used and the minor units off each, ascending by line for percent and
    /// amount kinds, in pooling order for pooled kinds.
    lines: Vec<(usize, i64)>,
}

impl Eval {
    /// Records a line the promotion used, even with nothing off it (paid units of a
    /// pooled group), capped to `0..=gross`.
    fn participant(&mut self, line: usize, amount: i128, gross: Money) {
        let cap = gross.minor().max(0);
        // Within 0..=cap, which is an i64, so the conversion cannot fail.
        let amount = i64::try_from(amount.clamp(0, i128::from(cap))).unwrap_or(cap);
        self.total += i128::from(amount);
        self.lines.push((line, amount));
    }
}

/// Finds the active promotions that target the cart, in id order, with the lines each
/// targets. Only valid promotions are indexed, so invalid ones never show up.
fn targeted<'a>(
    set: &'a PromotionSet,
    lines: &[PromoLine],
    at: OffsetDateTime,
) -> Vec<Targeted<'a>> {
    let mut pairs: Vec<(u32, usize)> = Vec::new();
    for (line_index, line) in lines.iter().enumerate() {
        let by_sku = set.by_sku.get(line.sku.as_str());
        let by_category = set.by_category.get(&line.category);
        for &promotion in by_sku.into_iter().chain(by_category).flatten() {
            pairs.push((promotion, line_index));
        }
    }
    // Sorting groups pairs by promotion in id order and makes the outcome independent
    // of hash-map iteration order.
    pairs.sort_unstable();
    pairs.dedup();
    pairs
        .chunk_by(|a, b| a.0 == b.0)
        .filter_map(|chunk| {
            let &(index, _) = chunk.first()?;
            let promotion = set.promotions.get(index as usize)?;
            promotion.is_active_at(at).then(|| Targeted {
                promotion,
                index,
                eligible: chunk.iter().map(|&(_, line)| line).collect(),
            })
        })
        .collect()
}

/// Splits the targeted promotions for the per-line-aware greedy: per-line kinds as one
/// candidate per (promotion, line), pooled kinds as one candidate each with the lines it
/// targets.
fn candidates<'a>(targeted: &'a [Targeted<'_>], lines: &[PromoLine]) -> Candidates<'a> {
    let mut out = Candidates {
        pooled: Vec::new(),
        per_line: Vec::new(),
        best_per_line: vec![0; lines.len()],
        pooled_by_line: vec![Vec::new(); lines.len()],
    };
    for t in targeted {
        let (promotion, index) = (t.promotion, t.index);
        if is_per_line(&promotion.kind) {
            for &line in &t.eligible {
                let amount = line_discount(&promotion.kind, &lines[line]);
                if amount <= 0 {
                    continue;
                }
                out.best_per_line[line] = out.best_per_line[line].max(amount);
                out.per_line.push(PerLineCandidate {
                    promotion,
                    taken: (line, amount),
                    rank: Rank {
                        total: i128::from(amount),
                        priority: promotion.priority,
                        promotion: index,
                        line,
                    },
                });
            }
        } else {
            let ci = out.pooled.len();
            for &line in &t.eligible {
                out.pooled_by_line[line].push(ci);
            }
            out.pooled.push(WholeCandidate::new(t));
        }
    }
    // Best first; ranks are distinct (one per promotion index and line), so the order is
    // total and the sort deterministic.
    out.per_line.sort_unstable_by(|a, b| {
        if a.rank.beats(&b.rank) {
            std::cmp::Ordering::Less
        } else if b.rank.beats(&a.rank) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    out
}

/// Whether the kind discounts each line on its own (percent and amount off), as opposed
/// to pooling units across lines.
fn is_per_line(kind: &PromotionKind) -> bool {
    matches!(
        kind,
        PromotionKind::PercentOff { .. } | PromotionKind::AmountOff { .. }
    )
}

/// What a per-line kind takes off one line, within `0..=gross`; 0 for pooled kinds.
fn line_discount(kind: &PromotionKind, line: &PromoLine) -> i64 {
    let off = match *kind {
        PromotionKind::PercentOff { percent_bp } => div_round_half_up(
            i128::from(line.gross.minor()) * i128::from(percent_bp),
            10_000,
        ),
        PromotionKind::AmountOff { amount } => match line.quantity {
            Quantity::Units(units) => i128::from(amount.minor()) * i128::from(units),
            // One weighed item is one line: "per unit" means once.
            Quantity::Grams(_) => i128::from(amount.minor()),
        },
        PromotionKind::BuyXGetY { .. } | PromotionKind::NForPrice { .. } => 0,
    };
    let cap = line.gross.minor().max(0);
    // Within 0..=cap, which is an i64, so the conversion cannot fail.
    i64::try_from(off.clamp(0, i128::from(cap))).unwrap_or(cap)
}

/// Evaluates one promotion on the free lines it targets (`free` is ascending).
fn evaluate(kind: &PromotionKind, free: &[usize], lines: &[PromoLine]) -> Eval {
    let mut eval = Eval::default();
    match *kind {
        PromotionKind::PercentOff { .. } | PromotionKind::AmountOff { .. } => {
            for &l in free {
                let off = line_discount(kind, &lines[l]);
                if off > 0 {
                    eval.total += i128::from(off);
                    eval.lines.push((l, off));
                }
            }
        }
        PromotionKind::BuyXGetY { buy, get } => buy_x_get_y(&mut eval, buy, get, free, lines),
        PromotionKind::NForPrice { n, price } => {
            if let Some(result) = n_for_price(n, price, free, lines) {
                eval = result;
            }
        }
    }
    eval
}

/// Units of one each-line in a pooled promotion.
struct Pooled {
    price: i128,
    line: usize,
    units: u64,
}

/// The each-lines among `free`, most expensive first (ties by line order) so groups
/// take the most expensive units first.
fn pooled(free: &[usize], lines: &[PromoLine]) -> Vec<Pooled> {
    let mut pool: Vec<Pooled> = free
        .iter()
        .filter_map(|&line| match lines[line].quantity {
            Quantity::Units(units) if units > 0 && !lines[line].unit_price.is_negative() => {
                Some(Pooled {
                    price: i128::from(lines[line].unit_price.minor()),
                    line,
                    units: u64::from(units),
                })
            }
            _ => None,
        })
        .collect();
    pool.sort_by(|a, b| b.price.cmp(&a.price).then(a.line.cmp(&b.line)));
    pool
}

fn buy_x_get_y(eval: &mut Eval, buy: u32, get: u32, free: &[usize], lines: &[PromoLine]) {
    if buy == 0 || get == 0 {
        return;
    }
    let (buy, get) = (u64::from(buy), u64::from(get));
    let group = buy + get;
    let pool = pooled(free, lines);
    let total_units: u64 = pool.iter().map(|p| p.units).sum();
    let complete = total_units / group * group;
    // Free units among the first `x` pooled units: the last `get` of each group.
    let free_before = |x: u64| x / group * get + (x % group).saturating_sub(buy);
    let mut start = 0;
    for entry in &pool {
        if start >= complete {
            break; // only the incomplete remainder is left
        }
        let end = (start + entry.units).min(complete);
        let free_units = free_before(end) - free_before(start);
        eval.participant(
            entry.line,
            entry.price * i128::from(free_units),
            lines[entry.line].gross,
        );
        start += entry.units;
    }
    if eval.total <= 0 {
        // Nothing was free (all zero-priced): the promotion must not take the lines.
        *eval = Eval::default();
    }
}

fn n_for_price(n: u32, price: Money, free: &[usize], lines: &[PromoLine]) -> Option<Eval> {
    if n < 2 || price.is_negative() {
        return None;
    }
    let n = u64::from(n);
    let group_price = i128::from(price.minor());
    let pool = pooled(free, lines);
    let groups = pool.iter().map(|p| p.units).sum::<u64>() / n;

    // Count the leading groups that save money. Units are sorted by price descending, so
    // group sums never increase: the first group that does not save ends the search.
    // Groups lying inside one line are counted in bulk, so huge quantities stay cheap.
    let mut applied: u64 = 0;
    let (mut entry, mut offset) = (0usize, 0u64);
    while applied < groups {
        let Some(current) = pool.get(entry) else {
            break;
        };
        let remaining = current.units - offset;
        if remaining >= n {
            if current.price * i128::from(n) <= group_price {
                break;
            }
            let inside = (remaining / n).min(groups - applied);
            applied += inside;
            offset += inside * n;
        } else {
            let (mut need, mut sum, mut e, mut off) = (n, 0i128, entry, offset);
            while need > 0 {
                let Some(p) = pool.get(e) else {
                    break;
                };
                let take = (p.units - off).min(need);
                sum += p.price * i128::from(take);
                need -= take;
                off += take;
                if off == p.units {
                    e += 1;
                    off = 0;
                }
            }
            if need > 0 || sum <= group_price {
                break;
            }
            applied += 1;
            entry = e;
            offset = off;
            continue;
        }
        if offset == current.units {
            entry += 1;
            offset = 0;
        }
    }
    if applied == 0 {
        return None;
    }

    // Each used line's units inside the applied groups, at shelf price.
    let applied_units = applied * n;
    let mut parts: Vec<(usize, i128)> = Vec::new();
    let mut start = 0;
    for p in &pool {
        if start >= applied_units {
            break;
        }
        let end = (start + p.units).min(applied_units);
        parts.push((p.line, p.price * i128::from(end - start)));
        start += p.units;
    }
    let applied_gross: i128 = parts.iter().map(|&(_, g)| g).sum();
    let discount = applied_gross - group_price * i128::from(applied);

    let mut eval = Eval::default();
    for (line, share) in split_exactly(discount, &parts)? {
        eval.participant(line, share, lines[line].gross);
    }
    Some(eval)
}

/// Splits `total` over `parts` in proportion to their weights with the largest-remainder
/// method: shares are integers and add up to exactly `total`. Ties in the remainder go
/// to the earlier part. `None` on overflow (only with absurd prices).
fn split_exactly(total: i128, parts: &[(usize, i128)]) -> Option<Vec<(usize, i128)>> {
    let weight: i128 = parts.iter().map(|&(_, w)| w).sum();
    if weight <= 0 || total < 0 {
        return None;
    }
    let mut shares = Vec::with_capacity(parts.len());
    let mut remainders = Vec::with_capacity(parts.len());
    let mut handed_out: i128 = 0;
    for (i, &(line, w)) in parts.iter().enumerate() {
        let scaled = total.checked_mul(w)?;
        shares.push((line, scaled / weight));
        remainders.push((scaled % weight, i));
        handed_out += scaled / weight;
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    // `total - handed_out` is below `parts.len()`, each remainder being below one unit.
    let left = usize::try_from(total - handed_out).ok()?;
    for &(_, i) in remainders.iter().take(left) {
        shares[i].1 += 1;
    }
    Some(shares)
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

    fn promo(id: &str, kind: PromotionKind, skus: &[&str], categories: &[&str]) -> Promotion {
        Promotion {
            id: id.into(),
            name: format!("Promo {id}"),
            kind,
            target: Target {
                skus: skus.iter().map(|s| Sku::parse(s).unwrap()).collect(),
                categories: categories.iter().map(|c| c.to_string()).collect(),
            },
            starts_at: NOW - Duration::days(1),
            ends_at: NOW + Duration::days(1),
            priority: 0,
        }
    }

    fn percent(bp: u32) -> PromotionKind {
        PromotionKind::PercentOff { percent_bp: bp }
    }

    fn amount(minor: i64) -> PromotionKind {
        PromotionKind::AmountOff {
            amount: Money(minor),
        }
    }

    fn bxgy(buy: u32, get: u32) -> PromotionKind {
        PromotionKind::BuyXGetY { buy, get }
    }

    fn nfor(n: u32, price: i64) -> PromotionKind {
        PromotionKind::NForPrice {
            n,
            price: Money(price),
        }
    }

    fn each(sku: &str, category: &str, price: i64, units: u32) -> PromoLine {
        PromoLine {
            sku: Sku::parse(sku).unwrap(),
            category: category.into(),
            unit_price: Money(price),
            quantity: Quantity::Units(units),
            gross: Money(price * i64::from(units)),
        }
    }

    fn weighed(sku: &str, category: &str, per_kg: i64, grams: u32) -> PromoLine {
        let gross = div_round_half_up(i128::from(per_kg) * i128::from(grams), 1000);
        PromoLine {
            sku: Sku::parse(sku).unwrap(),
            category: category.into(),
            unit_price: Money(per_kg),
            quantity: Quantity::Grams(grams),
            gross: Money(i64::try_from(gross).unwrap()),
        }
    }

    fn apply(promotions: Vec<Promotion>, lines: &[PromoLine]) -> Vec<Option<LineDiscount>> {
        apply_promotions(&PromotionSet::new(promotions), lines, NOW)
    }

    fn amounts(result: &[Option<LineDiscount>]) -> Vec<i64> {
        result
            .iter()
            .map(|d| d.as_ref().map_or(0, |d| d.amount.minor()))
            .collect()
    }

    fn ids(result: &[Option<LineDiscount>]) -> Vec<Option<&str>> {
        result
            .iter()
            .map(|d| d.as_ref().map(|d| d.promotion_id.as_str()))
            .collect()
    }

    #[test]
    fn promotion_json_shape() {
        let json = r#"{"id":"P1","name":"15 % off milk","kind":{"type":"percent_off","percent_bp":1500},"target":{"skus":["MILK-1L"]},"starts_at":"2025-06-01T00:00:00Z","ends_at":"2025-07-01T00:00:00Z"}"#;
        let p: Promotion = serde_json::from_str(json).unwrap();
        assert_eq!(p.kind, percent(1500));
        assert_eq!(p.priority, 0);
        assert!(p.target.categories.is_empty());
        assert_eq!(p.validate(), Ok(()));
        let out = serde_json::to_value(&p).unwrap();
        assert_eq!(out["kind"]["type"], "percent_off");
        assert_eq!(out["starts_at"], "2025-06-01T00:00:00Z");
        let n: PromotionKind =
            serde_json::from_str(r#"{"type":"n_for_price","n":3,"price":500}"#).unwrap();
        assert_eq!(n, nfor(3, 500));
        let extra = json.replacen('{', r#"{"extra":1,"#, 1);
        assert!(serde_json::from_str::<Promotion>(&extra).is_err());
        let with_priority = json.replacen('{', r#"{"priority":-3,"#, 1);
        assert_eq!(
            serde_json::from_str::<Promotion>(&with_priority)
                .unwrap()
                .priority,
            -3
        );
    }

    #[test]
    fn validation_errors_name_the_field() {
        let ok = promo("P", percent(1000), &["A"], &[]);
        assert_eq!(ok.validate(), Ok(()));
        let cases: Vec<(Promotion, &str)> = vec![
            (
                Promotion {
                    id: "".into(),
                    ..ok.clone()
                },
                "id",
            ),
            (
                Promotion {
                    id: "x".repeat(65),
                    ..ok.clone()
                },
                "id",
            ),
            (
                Promotion {
                    name: " ".into(),
                    ..ok.clone()
                },
                "name",
            ),
            (
                Promotion {
                    ends_at: ok.starts_at,
                    ..ok.clone()
                },
                "ends_at",
            ),
            (
                Promotion {
                    kind: percent(0),
                    ..ok.clone()
                },
                "kind.percent_bp",
            ),
            (
                Promotion {
                    kind: percent(10_001),
                    ..ok.clone()
                },
                "kind.percent_bp",
            ),
            (
                Promotion {
                    kind: amount(-1),
                    ..ok.clone()
                },
                "kind.amount",
            ),
            (
                Promotion {
                    kind: bxgy(0, 1),
                    ..ok.clone()
                },
                "kind.buy",
            ),
            (
                Promotion {
                    kind: bxgy(1, 0),
                    ..ok.clone()
                },
                "kind.get",
            ),
            (
                Promotion {
                    kind: nfor(1, 100),
                    ..ok.clone()
                },
                "kind.n",
            ),
            (
                Promotion {
                    kind: nfor(2, -1),
                    ..ok.clone()
                },
                "kind.price",
            ),
            (
                Promotion {
                    target: Target::default(),
                    ..ok.clone()
                },
                "target",
            ),
        ];
        for (p, field) in cases {
            assert_eq!(p.validate().unwrap_err().field(), field, "{p:?}");
        }
        assert_eq!(
            Promotion {
                kind: percent(10_000),
                ..ok.clone()
            }
            .validate(),
            Ok(())
        );
        assert_eq!(
            Promotion {
                kind: amount(0),
                ..ok
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn active_window_is_half_open() {
        let p = promo("P", percent(1000), &["A"], &[]);
        assert!(p.is_active_at(p.starts_at));
        assert!(p.is_active_at(p.ends_at - Duration::nanoseconds(1)));
        assert!(!p.is_active_at(p.ends_at));
        assert!(!p.is_active_at(p.starts_at - Duration::seconds(1)));
    }

    #[test]
    fn set_sorts_by_id_and_lists_active_valid_promotions() {
        let mut later = promo("B-later", percent(1000), &["A"], &[]);
        later.starts_at = NOW + Duration::days(2);
        later.ends_at = NOW + Duration::days(3);
        let invalid = promo("C-invalid", percent(0), &["A"], &[]);
        let set = PromotionSet::new(vec![
            invalid,
            promo("D", amount(10), &[], &["dairy"]),
            later,
            promo("A", percent(500), &["A"], &[]),
        ]);
        assert_eq!(set.len(), 4);
        assert!(!set.is_empty());
        let all: Vec<&str> = set.all().iter().map(|p| p.id.as_str()).collect();
        assert_eq!(all, ["A", "B-later", "C-invalid", "D"]);
        let active: Vec<&str> = set.active_at(NOW).iter().map(|p| p.id.as_str()).collect();
        assert_eq!(active, ["A", "D"]);
        assert_eq!(set.get("D").map(|p| p.kind.clone()), Some(amount(10)));
        assert!(set.get("Z").is_none());
    }

    #[test]
    fn percent_off_rounds_half_up_per_line() {
        // 15 % of 1.29 = 0.1935 -> 0.19; of 1.30 = 0.195 -> 0.20; of 3 x 0.10 = 0.045 -> 0.05.
        let result = apply(
            vec![promo("P", percent(1500), &["A", "B", "C"], &[])],
            &[
                each("A", "x", 129, 1),
                each("B", "x", 130, 1),
                each("C", "x", 10, 3),
            ],
        );
        assert_eq!(amounts(&result), [19, 20, 5]);
        let d = result[0].as_ref().unwrap();
        assert_eq!(d.promotion_id, "P");
        assert_eq!(d.promotion_name, "Promo P");
    }

    #[test]
    fn percent_off_applies_to_weight_lines() {
        // 0.350 kg at 3.49/kg = 1.2215 -> 1.22; 10 % = 0.122 -> 0.12.
        let line = weighed("APPLE", "produce", 349, 350);
        assert_eq!(line.gross, Money(122));
        let result = apply(vec![promo("P", percent(1000), &[], &["produce"])], &[line]);
        assert_eq!(amounts(&result), [12]);
    }

    #[test]
    fn amount_off_is_per_unit_once_per_weight_line_and_capped() {
        let result = apply(
            vec![promo("P", amount(50), &[], &["x"])],
            &[
                each("A", "x", 200, 3),      // 3 x 0.50
                each("B", "x", 40, 2),       // capped at the line: 0.80
                weighed("C", "x", 500, 700), // once: 0.50
                weighed("D", "x", 100, 300), // 0.30 line, capped
                each("E", "y", 500, 1),      // not targeted
            ],
        );
        assert_eq!(amounts(&result), [150, 80, 50, 30, 0]);
        assert!(result[4].is_none());
    }

    #[test]
    fn buy_x_get_y_frees_the_cheapest_of_each_group_and_leaves_the_remainder() {
        // Units by price: 3.00 3.00 2.00 | 1.00. Buy 2 get 1: the 2.00 unit is free; the
        // 1.00 unit is an incomplete remainder, so its line is free for the 10 % promotion.
        let result = apply(
            vec![
                promo("B2G1", bxgy(2, 1), &["A", "B", "C"], &[]),
                promo("TEN", percent(1000), &["B"], &[]),
            ],
            &[
                each("A", "x", 300, 2),
                each("B", "x", 100, 1),
                each("C", "x", 200, 1),
            ],
        );
        assert_eq!(ids(&result), [Some("B2G1"), Some("TEN"), Some("B2G1")]);
        assert_eq!(amounts(&result), [0, 10, 200]);
    }

    #[test]
    fn buy_x_get_y_pools_units_across_lines_and_groups() {
        // Six units of one price over three lines, buy 1 get 1: three free units.
        let result = apply(
            vec![promo("B1G1", bxgy(1, 1), &[], &["soda"])],
            &[
                each("A", "soda", 100, 1),
                each("B", "soda", 100, 2),
                each("C", "soda", 100, 3),
                each("D", "soda", 500, 1),
            ],
        );
        // Sorted: D 5.00 | A 1.00, B 1.00 B 1.00 | C 1.00 C 1.00 C 1.00: groups
        // (D, A) A free, (B, B) one free, (C, C) one free, C remainder on a used line.
        assert_eq!(amounts(&result), [100, 100, 100, 0]);
        assert!(
            result
                .iter()
                .all(|d| d.as_ref().unwrap().promotion_id == "B1G1")
        );
    }

    #[test]
    fn buy_x_get_y_ignores_weight_lines_and_needs_a_complete_group() {
        let result = apply(
            vec![promo("B2G1", bxgy(2, 1), &[], &["x"])],
            &[each("A", "x", 100, 2), weighed("W", "x", 1000, 5000)],
        );
        assert_eq!(result, [None, None]);
    }

    #[test]
    fn n_for_price_pools_lines_and_splits_the_saving_exactly() {
        // 2.50 2.50 2.00 | 2.00: three for 5.00 saves 2.00 on the first group; the split
        // is proportional to 5.00 and 2.00 of applied gross: 142.86 and 57.14 -> 143 + 57.
        let result = apply(
            vec![promo("3FOR5", nfor(3, 500), &["X", "Y"], &[])],
            &[each("X", "c", 250, 2), each("Y", "c", 200, 2)],
        );
        assert_eq!(amounts(&result), [143, 57]);
        assert_eq!(ids(&result), [Some("3FOR5"), Some("3FOR5")]);
    }

    #[test]
    fn n_for_price_is_not_applied_when_it_costs_more() {
        let result = apply(
            vec![promo("3FOR10", nfor(3, 1000), &["A"], &[])],
            &[each("A", "c", 300, 3)],
        );
        assert_eq!(result, [None]);
        // Only the expensive group saves; the cheap line is left for another promotion.
        let result = apply(
            vec![
                promo("3FOR10", nfor(3, 1000), &["A", "B"], &[]),
                promo("HALF", percent(5000), &["B"], &[]),
            ],
            &[each("A", "c", 500, 3), each("B", "c", 100, 3)],
        );
        assert_eq!(ids(&result), [Some("3FOR10"), Some("HALF")]);
        assert_eq!(amounts(&result), [500, 150]);
    }

    #[test]
    fn n_for_price_counts_groups_inside_huge_lines_in_bulk() {
        // 9999 units per line on 3 lines: 29997 units, 14998 groups of two.
        let lines = [
            each("A", "c", 300, 9999),
            each("B", "c", 200, 9999),
            each("C", "c", 100, 9999),
        ];
        let result = apply(vec![promo("2FOR3", nfor(2, 300), &[], &["c"])], &lines);
        // A: 4999 groups save 300 each, one unit of A joins one of B (500 -> saves 200),
        // B's other 9998 units form 4999 groups of 400 (save 100); C never saves.
        assert_eq!(
            amounts(&result).iter().sum::<i64>(),
            4999 * 300 + 200 + 4999 * 100
        );
        assert_eq!(ids(&result), [Some("2FOR3"), Some("2FOR3"), None]);
    }

    #[test]
    fn best_promotion_for_the_customer_wins_without_stacking() {
        let lines = [each("A", "dairy", 1000, 1), each("B", "dairy", 1000, 1)];
        // Per-line kinds compete line by line: 3.00 off A beats 20 % (2.00) of A, and B
        // keeps its 20 %: 5.00, where taking the category promotion as a whole (4.00
        // over both lines) gave 4.00.
        let result = apply(
            vec![
                promo("CAT20", percent(2000), &[], &["dairy"]),
                promo("A300", amount(300), &["A"], &[]),
            ],
            &lines,
        );
        assert_eq!(ids(&result), [Some("A300"), Some("CAT20")]);
        assert_eq!(amounts(&result), [300, 200]);
        // 6.00 off A beats 4.00 over both; B still gets the category promotion: 8.00,
        // not 6.00 + 2.00 + 2.00 stacked on A.
        let result = apply(
            vec![
                promo("CAT20", percent(2000), &[], &["dairy"]),
                promo("A600", amount(600), &["A"], &[]),
            ],
            &lines,
        );
        assert_eq!(ids(&result), [Some("A600"), Some("CAT20")]);
        assert_eq!(amounts(&result), [600, 200]);
    }

    #[test]
    fn ties_go_to_priority_then_to_the_smaller_id_in_any_input_order() {
        let lines = [each("A", "x", 1000, 1)];
        let a = promo("alpha", amount(100), &["A"], &[]);
        let b = promo("beta", percent(1000), &["A"], &[]);
        for order in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            assert_eq!(ids(&apply(order, &lines)), [Some("alpha")]);
        }
        let mut b_high = b.clone();
        b_high.priority = 5;
        for order in [
            vec![a.clone(), b_high.clone()],
            vec![b_high.clone(), a.clone()],
        ] {
            assert_eq!(ids(&apply(order, &lines)), [Some("beta")]);
        }
        // Priority never beats a bigger discount.
        let mut a_big = a;
        a_big.kind = amount(101);
        assert_eq!(ids(&apply(vec![a_big, b_high], &lines)), [Some("alpha")]);
    }

    #[test]
    fn inactive_and_invalid_promotions_are_ignored() {
        let lines = [each("A", "x", 1000, 1)];
        let mut expired = promo("expired", percent(9000), &["A"], &[]);
        expired.ends_at = NOW;
        let invalid = promo("invalid", nfor(1, 0), &["A"], &[]);
        let result = apply(
            vec![expired, invalid, promo("ok", percent(100), &["A"], &[])],
            &lines,
        );
        assert_eq!(ids(&result), [Some("ok")]);
        assert_eq!(apply(vec![], &lines), [None]);
        assert!(apply(vec![promo("ok", percent(100), &["A"], &[])], &[]).is_empty());
    }

    #[test]
    fn zero_discount_promotions_take_no_lines() {
        let result = apply(
            vec![
                promo("zero", amount(0), &["A"], &[]),
                promo("free-cheap", bxgy(1, 1), &["A"], &[]),
            ],
            &[each("A", "x", 0, 4)],
        );
        assert_eq!(result, [None]);
    }

    /// The whole-promotion greedy written the plain way, as an oracle for
    /// [`whole_promotion_greedy`]: whole promotions compete, the one with the largest
    /// total on the free lines takes every line it uses. No indexes or cached
    /// evaluations: scans every promotion and every line each round.
    fn reference(
        promotions: &[Promotion],
        lines: &[PromoLine],
        at: OffsetDateTime,
    ) -> Vec<Option<LineDiscount>> {
        let mut sorted: Vec<&Promotion> = promotions.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let mut result = vec![None; lines.len()];
        let mut used = vec![false; sorted.len()];
        loop {
            let mut best: Option<(usize, Eval)> = None;
            for (pi, p) in sorted.iter().enumerate() {
                if used[pi] || !p.is_active_at(at) || p.validate().is_err() {
                    continue;
                }
                let free: Vec<usize> = (0..lines.len())
                    .filter(|&l| result[l].is_none())
                    .filter(|&l| {
                        p.target.skus.contains(&lines[l].sku)
                            || p.target.categories.contains(&lines[l].category)
                    })
                    .collect();
                let eval = evaluate(&p.kind, &free, lines);
                if eval.total <= 0 {
                    continue;
                }
                let better = match &best {
                    None => true,
                    Some((bi, be)) => (eval.total, p.priority) > (be.total, sorted[*bi].priority),
                };
                if better {
                    best = Some((pi, eval));
                }
            }
            let Some((pi, eval)) = best else { break };
            used[pi] = true;
            for (l, a) in eval.lines {
                result[l] = Some(LineDiscount {
                    promotion_id: sorted[pi].id.clone(),
                    promotion_name: sorted[pi].name.clone(),
                    amount: Money(a),
                });
            }
        }
        result
    }

    /// Deterministic pseudo-random numbers for building big fixtures.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % bound
        }
    }

    fn big_fixture(seed: u64) -> (Vec<Promotion>, Vec<PromoLine>) {
        let mut rng = Lcg(seed);
        let categories = ["a", "b", "c", "d", "e"];
        let promotions: Vec<Promotion> = (0..500)
            .map(|i| {
                let kind = match rng.next(4) {
                    0 => percent(1 + rng.next(5000) as u32),
                    1 => amount(rng.next(300) as i64),
                    2 => bxgy(1 + rng.next(3) as u32, 1 + rng.next(2) as u32),
                    _ => nfor(2 + rng.next(3) as u32, 100 + rng.next(1500) as i64),
                };
                let skus: Vec<String> = (0..1 + rng.next(4))
                    .map(|_| format!("S{}", rng.next(200)))
                    .collect();
                let skus: Vec<&str> = skus.iter().map(String::as_str).collect();
                let cats: &[&str] = if rng.next(10) == 0 {
                    &categories[rng.next(5) as usize..][..1]
                } else {
                    &[]
                };
                let mut p = promo(&format!("P{i:03}"), kind, &skus, cats);
                p.priority = rng.next(3) as i32;
                if rng.next(20) == 0 {
                    p.starts_at = NOW + Duration::hours(1); // not yet active
                }
                p
            })
            .collect();
        let lines: Vec<PromoLine> = (0..50)
            .map(|_| {
                let sku = format!("S{}", rng.next(200));
                let cat = categories[rng.next(5) as usize];
                if rng.next(8) == 0 {
                    weighed(
                        &sku,
                        cat,
                        100 + rng.next(3000) as i64,
                        1 + rng.next(2000) as u32,
                    )
                } else {
                    each(&sku, cat, rng.next(2000) as i64, 1 + rng.next(6) as u32)
                }
            })
            .collect();
        (promotions, lines)
    }

    /// The two greedy assignments `apply_promotions` chooses from, on their own.
    fn parts(
        promotions: &[Promotion],
        lines: &[PromoLine],
    ) -> (Vec<Option<LineDiscount>>, Vec<Option<LineDiscount>>) {
        let set = PromotionSet::new(promotions.to_vec());
        let targeted = targeted(&set, lines, NOW);
        (
            per_line_greedy(&targeted, lines),
            whole_promotion_greedy(&targeted, lines),
        )
    }

    #[test]
    fn five_hundred_promotions_and_fifty_lines_beat_or_match_both_greedies() {
        // Far too big for the exhaustive checker (501^50 assignments): check against
        // both parts instead, and the indexed whole-promotion greedy against its oracle.
        let mut discounted_carts = 0;
        let mut better_carts = 0;
        for seed in 1..=20 {
            let (promotions, lines) = big_fixture(seed);
            let set = PromotionSet::new(promotions.clone());
            let fast = apply_promotions(&set, &lines, NOW);
            let ours = total_discount(&fast);
            let (per_line_result, whole) = parts(&promotions, &lines);
            assert_eq!(whole, reference(&promotions, &lines, NOW), "seed {seed}");
            let per_line = total_discount(&per_line_result);
            let greedy = total_discount(&whole);
            assert!(ours >= greedy && ours >= per_line, "seed {seed}");
            assert_eq!(ours, per_line.max(greedy), "seed {seed}");
            better_carts += usize::from(ours > greedy);
            // The amounts are what the chosen promotions give on the chosen lines, for
            // both parts.
            assert_eq!(score(&promotions, &lines, &fast), Some(ours), "seed {seed}");
            let per_line_score = score(&promotions, &lines, &per_line_result);
            assert_eq!(per_line_score, Some(per_line), "seed {seed}");
            for (line, d) in lines.iter().zip(&fast) {
                if let Some(d) = d {
                    assert!(d.amount.minor() >= 0 && d.amount <= line.gross);
                }
            }
            if fast.iter().flatten().any(|d| d.amount.minor() > 0) {
                discounted_carts += 1;
            }
        }
        // The fixture must actually exercise promotions, and line-by-line competition.
        assert!(discounted_carts >= 15, "{discounted_carts}");
        assert!(better_carts >= 10, "{better_carts}");
    }

    /// What an assignment of promotions to lines (by id) is worth, computed from scratch:
    /// per-line kinds on each of their lines, pooled kinds on exactly the lines they
    /// were given. `None` if an id is unknown, inactive, invalid or not eligible.
    fn score(
        promotions: &[Promotion],
        lines: &[PromoLine],
        result: &[Option<LineDiscount>],
    ) -> Option<i128> {
        let mut by_promotion: Vec<Vec<usize>> = vec![Vec::new(); promotions.len()];
        for (l, d) in result.iter().enumerate() {
            let Some(d) = d else { continue };
            let pi = promotions.iter().position(|p| p.id == d.promotion_id)?;
            by_promotion[pi].push(l);
        }
        let mut sum = 0;
        for (p, subset) in promotions.iter().zip(&by_promotion) {
            if subset.is_empty() {
                continue;
            }
            let usable = p.is_active_at(NOW) && p.validate().is_ok();
            let eligible = subset.iter().all(|&l| {
                p.target.skus.contains(&lines[l].sku)
                    || p.target.categories.contains(&lines[l].category)
            });
            if !usable || !eligible {
                return None;
            }
            sum += evaluate(&p.kind, subset, lines).total;
        }
        Some(sum)
    }

    /// The best any assignment of at most one promotion per line can save, by trying
    /// them all; a pooled promotion applies to exactly the lines it is given.
    fn optimum(promotions: &[Promotion], lines: &[PromoLine]) -> i128 {
        assert!(
            promotions.len() <= 4 && lines.len() <= 4,
            "too big to enumerate"
        );
        let options = promotions.len() + 1;
        let mut best = 0;
        for code in 0..options.pow(lines.len() as u32) {
            let mut rest = code;
            let result: Vec<Option<LineDiscount>> = (0..lines.len())
                .map(|_| {
                    let choice = rest % options;
                    rest /= options;
                    (choice > 0).then(|| LineDiscount {
                        promotion_id: promotions[choice - 1].id.clone(),
                        promotion_name: String::new(),
                        amount: Money(0),
                    })
                })
                .collect();
            if let Some(value) = score(promotions, lines, &result) {
                best = best.max(value);
            }
        }
        best
    }

    fn tiny_case(rng: &mut Lcg) -> (Vec<Promotion>, Vec<PromoLine>) {
        let skus = ["A", "B", "C"];
        let categories = ["x", "y"];
        let lines: Vec<PromoLine> = (0..1 + rng.next(4))
            .map(|_| {
                let sku = skus[rng.next(3) as usize];
                let cat = categories[rng.next(2) as usize];
                if rng.next(6) == 0 {
                    weighed(
                        sku,
                        cat,
                        100 + rng.next(900) as i64,
                        1 + rng.next(1000) as u32,
                    )
                } else {
                    each(sku, cat, rng.next(500) as i64, 1 + rng.next(3) as u32)
                }
            })
            .collect();
        let promotions: Vec<Promotion> = (0..1 + rng.next(4))
            .map(|i| {
                let kind = match rng.next(4) {
                    0 => percent(1 + rng.next(10_000) as u32),
                    1 => amount(rng.next(400) as i64),
                    2 => bxgy(1 + rng.next(2) as u32, 1 + rng.next(2) as u32),
                    _ => nfor(2 + rng.next(2) as u32, rng.next(800) as i64),
                };
                let target_skus: Vec<&str> =
                    skus.iter().copied().filter(|_| rng.next(2) == 0).collect();
                let target_cats: Vec<&str> = categories
                    .iter()
                    .copied()
                    .filter(|_| rng.next(4) == 0)
                    .collect();
                let target_skus = if target_skus.is_empty() && target_cats.is_empty() {
                    vec![skus[rng.next(3) as usize]]
                } else {
                    target_skus
                };
                let mut p = promo(&format!("P{i}"), kind, &target_skus, &target_cats);
                p.priority = rng.next(2) as i32;
                p
            })
            .collect();
        (promotions, lines)
    }

    /// Our result on a tiny cart and what it is worth against the alternatives.
    struct Outcome {
        result: Vec<Option<LineDiscount>>,
        /// What our result saves.
        ours: i128,
        /// The exhaustive optimum.
        best: i128,
        /// What the per-line-aware greedy alone saves.
        per_line: i128,
        /// What the whole-promotion greedy alone saves.
        greedy: i128,
    }

    /// Prices a tiny cart and checks what holds on every cart: the amounts are what the
    /// chosen promotions give, the whole-promotion greedy matches its oracle, and the
    /// result is the better of the two greedies (the per-line-aware one on a tie).
    fn compare(promotions: &[Promotion], lines: &[PromoLine]) -> Outcome {
        let result = apply(promotions.to_vec(), lines);
        let ours = total_discount(&result);
        assert_eq!(score(promotions, lines, &result), Some(ours));
        let (per_line_result, whole_result) = parts(promotions, lines);
        assert_eq!(whole_result, reference(promotions, lines, NOW));
        let per_line = total_discount(&per_line_result);
        let greedy = total_discount(&whole_result);
        let expected = if greedy > per_line {
            whole_result
        } else {
            per_line_result
        };
        assert_eq!(result, expected);
        Outcome {
            result,
            ours,
            best: optimum(promotions, lines),
            per_line,
            greedy,
        }
    }

    #[test]
    fn sixty_percent_on_two_lines_does_not_beat_a_full_discount_on_each() {
        // Symptom: whole promotions competed, so 60 % of A and B (1.20) beat 1.00 off A
        // and then blocked 1.00 off B: the customer saved 1.20 instead of 2.00.
        let promotions = [
            promo("P60", percent(6000), &["A", "B"], &[]),
            promo("PA", amount(100), &["A"], &[]),
            promo("PB", amount(100), &["B"], &[]),
        ];
        let lines = [each("A", "x", 100, 1), each("B", "x", 100, 1)];
        let Outcome {
            result,
            ours,
            best,
            greedy,
            ..
        } = compare(&promotions, &lines);
        assert_eq!(ids(&result), [Some("PA"), Some("PB")]);
        assert_eq!(amounts(&result), [100, 100]);
        assert_eq!((ours, best, greedy), (200, 200, 120));
    }

    #[test]
    fn pooled_promotion_yields_to_per_line_promotions_worth_at_least_as_much() {
        let lines = [each("A", "x", 100, 1), each("B", "x", 100, 1)];
        // Buy 1 get 1 saves 1.00 on A and B; 60 % off each saves 1.20.
        let promotions = [
            promo("B1G1", bxgy(1, 1), &["A", "B"], &[]),
            promo("P60", percent(6000), &["A", "B"], &[]),
        ];
        let Outcome {
            result, ours, best, ..
        } = compare(&promotions, &lines);
        assert_eq!(ids(&result), [Some("P60"), Some("P60")]);
        assert_eq!((ours, best), (120, 120));
        // A tie goes to the per-line promotions too: the pooled one must do strictly
        // better, even with a higher priority.
        let mut b1g1 = promo("B1G1", bxgy(1, 1), &["A", "B"], &[]);
        b1g1.priority = 9;
        let promotions = [b1g1, promo("P50", percent(5000), &["A", "B"], &[])];
        let Outcome {
            result, ours, best, ..
        } = compare(&promotions, &lines);
        assert_eq!(ids(&result), [Some("P50"), Some("P50")]);
        assert_eq!((ours, best), (100, 100));
    }

    #[test]
    fn pooled_promotion_wins_when_it_beats_the_per_line_alternatives_on_its_lines() {
        // Buy 1 get 1 (1.00) against 0.60 off A plus 0.30 off B, which pays: 0.90.
        let promotions = [
            promo("B1G1", bxgy(1, 1), &["A", "B"], &[]),
            promo("A60", amount(60), &["A"], &[]),
            promo("B30", amount(30), &["B"], &[]),
        ];
        let lines = [each("A", "x", 100, 1), each("B", "x", 100, 1)];
        let Outcome {
            result, ours, best, ..
        } = compare(&promotions, &lines);
        assert_eq!(ids(&result), [Some("B1G1"), Some("B1G1")]);
        assert_eq!(amounts(&result), [0, 100]);
        assert_eq!((ours, best), (100, 100));
    }

    #[test]
    fn skipped_pooled_promotion_applies_later_to_the_lines_left() {
        // Buy 1 get 1 on all four lines (3.00) loses to 90 % off A and B (3.60 on its
        // lines); once A and B are taken it still frees one of C and D.
        let promotions = [
            promo("B1G1", bxgy(1, 1), &["A", "B", "C", "D"], &[]),
            promo("P90", percent(9000), &["A", "B"], &[]),
        ];
        let lines = [
            each("A", "x", 200, 1),
            each("B", "x", 200, 1),
            each("C", "x", 100, 1),
            each("D", "x", 100, 1),
        ];
        let Outcome {
            result, ours, best, ..
        } = compare(&promotions, &lines);
        assert_eq!(
            ids(&result),
            [Some("P90"), Some("P90"), Some("B1G1"), Some("B1G1")]
        );
        assert_eq!(amounts(&result), [180, 180, 0, 100]);
        assert_eq!((ours, best), (460, 460));
    }

    #[test]
    fn known_gap_a_pooled_promotion_pools_all_its_free_lines() {
        // Pins a documented miss: buy 1 get 1 over all four lines (2.00) beats 70 % off
        // A and B (1.40), so it takes A and B too; pooling only C and D would give
        // 1.40 + 1.00 = 2.40.
        let promotions = [
            promo("B1G1", bxgy(1, 1), &["A", "B", "C", "D"], &[]),
            promo("P70", percent(7000), &["A", "B"], &[]),
        ];
        let lines = [
            each("A", "x", 100, 1),
            each("B", "x", 100, 1),
            each("C", "x", 100, 1),
            each("D", "x", 100, 1),
        ];
        let Outcome {
            result,
            ours,
            best,
            per_line,
            greedy,
        } = compare(&promotions, &lines);
        assert!(result.iter().flatten().all(|d| d.promotion_id == "B1G1"));
        // Both greedies make the same miss, so taking the better one does not help.
        assert_eq!((ours, best, per_line, greedy), (200, 240, 200, 200));
    }

    #[test]
    fn takes_the_whole_promotion_greedy_when_it_saves_more() {
        // The per-line-aware greedy misses here: "BOTH" (buy 1 get 1 on A and B) frees
        // one 0.40 unit of A using B as the paid unit; B's only per-line alternative is
        // 0.30, so it passes, and wins the tie with "ONLY-A", which frees the same unit
        // without B: 0.70. Taking 30 % off B and C as a whole first, as the
        // whole-promotion greedy does, saves 1.00, so that assignment is returned.
        let promotions = [
            promo("BOTH", bxgy(1, 1), &["A", "B"], &[]),
            promo("ONLY-A", bxgy(1, 1), &["A"], &[]),
            promo("Q30", percent(3000), &["B", "C"], &[]),
        ];
        let lines = [
            each("A", "x", 40, 2),
            each("B", "x", 100, 1),
            each("C", "x", 100, 1),
        ];
        let Outcome {
            result,
            ours,
            best,
            per_line,
            greedy,
        } = compare(&promotions, &lines);
        // Both buy 1 get 1 promotions then save 0.40 on A; "BOTH" has the smaller id.
        assert_eq!(ids(&result), [Some("BOTH"), Some("Q30"), Some("Q30")]);
        assert_eq!(amounts(&result), [40, 30, 30]);
        assert_eq!((ours, best, per_line, greedy), (100, 100, 70, 100));
    }

    #[test]
    fn random_tiny_carts_stay_feasible_and_beat_or_match_both_greedies() {
        let mut rng = Lcg(11);
        let (mut our_misses, mut greedy_misses, mut per_line_only) = (0, 0, 0);
        let (mut per_line_misses, mut whole_taken) = (0, 0);
        for case in 0..3000 {
            let (promotions, lines) = tiny_case(&mut rng);
            // `compare` checks that the amounts are what the chosen promotions give and
            // that the better greedy was taken.
            let Outcome {
                ours,
                best,
                per_line,
                greedy,
                ..
            } = compare(&promotions, &lines);
            assert!(ours <= best, "case {case}: {ours} > optimum {best}");
            assert!(
                ours >= per_line,
                "case {case}: {ours} < per-line {per_line}"
            );
            assert!(
                ours >= greedy,
                "case {case}: {ours} < whole greedy {greedy}"
            );
            if promotions.iter().all(|p| is_per_line(&p.kind)) {
                // Every line gets its best discount: provably optimal.
                assert_eq!(ours, best, "case {case}");
                per_line_only += 1;
            }
            our_misses += usize::from(ours < best);
            per_line_misses += usize::from(per_line < best);
            greedy_misses += usize::from(greedy < best);
            whole_taken += usize::from(greedy > per_line);
        }
        assert!(per_line_only >= 100, "{per_line_only}");
        // Still a heuristic: some misses are expected, but far fewer than the
        // whole-promotion greedy's, and the fallback to it must actually happen.
        assert!(
            our_misses * 2 < greedy_misses,
            "{our_misses} vs {greedy_misses}"
        );
        assert!(our_misses <= per_line_misses);
        assert!(whole_taken > 0, "{whole_taken}");
    }

    #[test]
    fn pooled_shares_always_add_up_to_the_promotion_total() {
        let mut rng = Lcg(7);
        for _ in 0..200 {
            let lines: Vec<PromoLine> = (0..1 + rng.next(8))
                .map(|i| {
                    each(
                        &format!("S{i}"),
                        "c",
                        1 + rng.next(999) as i64,
                        1 + rng.next(5) as u32,
                    )
                })
                .collect();
            let free: Vec<usize> = (0..lines.len()).collect();
            let n = 2 + rng.next(4) as u32;
            let price = rng.next(2000) as i64;
            let eval = evaluate(&nfor(n, price), &free, &lines);
            let sum: i128 = eval.lines.iter().map(|&(_, a)| i128::from(a)).sum();
            assert_eq!(sum, eval.total);
            // Brute force over sorted units: the saving of the leading saving groups.
            let mut units: Vec<i64> = lines
                .iter()
                .flat_map(|l| {
                    let Quantity::Units(u) = l.quantity else {
                        unreachable!()
                    };
                    std::iter::repeat_n(l.unit_price.minor(), u as usize)
                })
                .collect();
            units.sort_unstable_by(|a, b| b.cmp(a));
            let expected: i64 = units
                .chunks_exact(n as usize)
                .map(|g| g.iter().sum::<i64>() - price)
                .take_while(|saving| *saving > 0)
                .sum();
            assert_eq!(eval.total, i128::from(expected));
        }
    }
}
