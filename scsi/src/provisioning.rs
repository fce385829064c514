//! What the LU knows about deallocated (unmapped) blocks, for GET LBA STATUS.
//!
//! `BlockDevice` has no query for mapping state, so the LU remembers the extents it unmapped
//! itself and forgets them as they are written. The knowledge is bounded and conservative:
//! when the table is full an extent is forgotten, and a forgotten extent is reported as
//! "mapped or unknown", which SBC allows.

/// Deallocated extents remembered.
pub const MAX_DEALLOCATED_EXTENTS: usize = 32;

/// Sorted, disjoint, non-adjacent half-open extents `[start, end)` known to be deallocated.
#[derive(Debug, Default)]
pub(crate) struct Deallocated {
    extents: heapless::Vec<(u64, u64), MAX_DEALLOCATED_EXTENTS>,
}

impl Deallocated {
    /// Records `[start, end)` as deallocated.
    pub(crate) fn mark(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        // Absorb every extent that overlaps or touches the new one.
        self.extents.retain(|&(s, e)| {
            if s <= end && start <= e {
                start = start.min(s);
                end = end.max(e);
                false
            } else {
                true
            }
        });
        let at = self.extents.iter().position(|&(s, _)| s > start);
        let at = at.unwrap_or(self.extents.len());
        if self.extents.insert(at, (start, end)).is_err() {
            // Full: the new knowledge is dropped (reported as mapped or unknown).
        }
    }

    /// Forgets `[start, end)`: it was written.
    pub(crate) fn clear(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut index = 0;
        // Bounded: each pass either advances or removes an entry.
        while index < self.extents.len() {
            let (s, e) = self.extents[index];
            if e <= start || end <= s {
                index += 1;
                continue;
            }
            let left = (s < start).then_some((s, start));
            let right = (end < e).then_some((end, e));
            match (left, right) {
                (None, None) => {
                    self.extents.remove(index);
                }
                (Some(l), None) => {
                    self.extents[index] = l;
                    index += 1;
                }
                (None, Some(r)) => {
                    self.extents[index] = r;
                    index += 1;
                }
                (Some(l), Some(r)) => {
                    self.extents[index] = l;
                    // No room for the right part: forget it (conservative).
                    let _ = self.extents.insert(index + 1, r);
                    index += 2;
                }
            }
        }
    }

    /// Forgets everything (capacity change, for instance).
    pub(crate) fn forget(&mut self) {
        self.extents.clear();
    }

    /// The runs from `lba` to `end`: `(start, blocks, deallocated)` in order, each at most
    /// `u32::MAX` blocks, at most `max` of them.
    pub(crate) fn runs(
        &self,
        lba: u64,
        end: u64,
        max: usize,
    ) -> impl Iterator<Item = (u64, u32, bool)> + '_ {
        let mut at = lba;
        let mut count = 0;
        core::iter::from_fn(move || {
            if at >= end || count >= max {
                return None;
            }
            let (run_end, deallocated) = match self.extents.iter().find(|&&(_, e)| e > at) {
                Some(&(s, e)) if s <= at => (e.min(end), true),
                Some(&(s, _)) => (s.min(end), false),
                None => (end, false),
            };
            let blocks = (run_end - at).min(u64::from(u32::MAX));
            let run = (at, blocks as u32, deallocated);
            at += blocks;
            count += 1;
            Some(run)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(d: &Deallocated, lba: u64, end: u64) -> heapless::Vec<(u64, u32, bool), 16> {
        d.runs(lba, end, 16).collect()
    }

    #[test]
    fn mark_merges_and_clear_splits() {
        let mut d = Deallocated::default();
        d.mark(10, 20);
        d.mark(20, 30);
        d.mark(50, 60);
        assert_eq!(&d.extents[..], &[(10, 30), (50, 60)]);
        d.clear(15, 18);
        assert_eq!(&d.extents[..], &[(10, 15), (18, 30), (50, 60)]);
        d.clear(0, 100);
        assert!(d.extents.is_empty());
        d.mark(5, 5);
        assert!(d.extents.is_empty());
    }

    #[test]
    fn runs_alternate() {
        let mut d = Deallocated::default();
        d.mark(10, 20);
        d.mark(30, 40);
        assert_eq!(
            &runs(&d, 0, 50)[..],
            &[
                (0, 10, false),
                (10, 10, true),
                (20, 10, false),
                (30, 10, true),
                (40, 10, false)
            ]
        );
        assert_eq!(
            &runs(&d, 15, 35)[..],
            &[(15, 5, true), (20, 10, false), (30, 5, true)]
        );
        assert_eq!(d.runs(0, 50, 2).count(), 2);
    }

    #[test]
    fn a_full_table_forgets_conservatively() {
        let mut d = Deallocated::default();
        for i in 0..(MAX_DEALLOCATED_EXTENTS as u64 + 4) {
            d.mark(10 * i, 10 * i + 5);
        }
        assert_eq!(d.extents.len(), MAX_DEALLOCATED_EXTENTS);
        // Splitting when full drops the right part rather than failing.
        d.clear(1, 2);
        assert_eq!(d.extents.len(), MAX_DEALLOCATED_EXTENTS);
        assert_eq!(d.extents[0], (0, 1));
        let huge = runs(&Deallocated::default(), 0, u64::MAX);
        assert_eq!(huge[0], (0, u32::MAX, false));
    }
}
