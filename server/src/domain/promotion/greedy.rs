//! The two greedy assignments [`super::apply_promotions`] chooses from: the
//! per-line-aware greedy and the whole-promotion greedy (docs/pricing.md, "Choosing
//! promotions").

use super::kinds::{Eval, evaluate, is_per_line, line_discount};
use super::model::{LineDiscount, PromoLine, Promotion};
use super::set::Targeted;
use crate::domain::money::Money;

/// The per-line-aware greedy: per-line kinds compete line by line, pooled kinds as a
/// whole but only against the per-line alternatives on their lines (docs/pricing.md,
/// "Per-line-aware greedy").
pub(super) fn per_line_greedy(
    targeted: &[Targeted<'_>],
    lines: &[PromoLine],
) -> Vec<Option<LineDiscount>> {
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
                // Its leftover lines cannot form another saving group: see docs/pricing.md.
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
/// competes as a whole on its free eligible lines (docs/pricing.md, "Whole-promotion
/// greedy").
///
/// Each round the promotion with the largest total on its free lines (ties: higher
/// `priority`, then smaller id) takes every line it uses and is done; promotions that
/// lost a line are re-evaluated, the others keep their result. Stops when no promotion
/// saves anything.
pub(super) fn whole_promotion_greedy(
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
    /// Index in the id-sorted [`PromotionSet`](super::PromotionSet), so duplicate ids
    /// stay ordered too.
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
