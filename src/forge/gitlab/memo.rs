//! When a project's comment listing can be skipped: GitLab lists no project's notes, so the
//! driver reads its `commented on` events, a second call per project and cycle. A note touches
//! its merge request (moves its `updated_at`), so the merge request listing the cycle makes
//! anyway shows where notes may be new, with one catch: GitLab's `ThrottledTouch` moves
//! `updated_at` at most once a minute, so a note made within a minute of the last touch leaves
//! no trace in the listing.
//!
//! The rule: the last events listing (answered at `listed_at`, by GitLab's clock) still holds
//! every comment when each of the bot's merge requests has the `updated_at` it had then, and
//! that is more than the touch interval (plus a margin for `Date`'s whole seconds) before
//! `listed_at`. A note made after the listing would then have touched its merge request. Pure;
//! the driver keeps one memo per project in memory and, with `--cache-dir`, on disk.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::Comment;

/// GitLab's `ThrottledTouch::TOUCH_INTERVAL`: a note made within this time of its merge
/// request's last touch does not move the merge request's `updated_at`.
pub(super) const TOUCH_INTERVAL: Duration = Duration::seconds(60);
/// `Date` has whole seconds, and GitLab's servers are more than one machine.
pub(super) const MARGIN: Duration = Duration::seconds(5);

/// The bot's merge requests of a project in a listing: iid → `updated_at` (`None` when GitLab
/// gave none).
pub(super) type Listing = BTreeMap<u64, Option<DateTime<Utc>>>;

/// What one events listing of a project returned, and the merge requests as they were then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct NotesMemo {
    /// When GitLab answered the listing's first page (its `Date`).
    pub listed_at: DateTime<Utc>,
    /// Where the listing started (`None`: every comment).
    pub since: Option<DateTime<Utc>>,
    /// The bot's merge requests (iid → `updated_at`) in the merge request listing made before it.
    pub updated: BTreeMap<u64, DateTime<Utc>>,
    /// The comments it returned.
    pub comments: Vec<Comment>,
}

impl NotesMemo {
    /// The comments at or after `since`, when this memo is known to hold all of them for the
    /// bot's merge requests as the current listing shows them; `None` when the project's events
    /// must be listed again.
    pub fn reuse(&self, since: Option<DateTime<Utc>>, listing: &Listing) -> Option<Vec<Comment>> {
        let starts_early_enough = match (self.since, since) {
            (None, _) => true,
            (Some(memo), Some(wanted)) => memo <= wanted,
            (Some(_), None) => false,
        };
        if !starts_early_enough {
            return None;
        }
        let untouched = listing.iter().all(|(iid, updated)| {
            updated.is_some_and(|u| self.updated.get(iid) == Some(&u) && u + TOUCH_INTERVAL + MARGIN < self.listed_at)
        });
        if !untouched {
            return None;
        }
        Some(self.comments.iter().filter(|c| since.is_none_or(|s| c.created_at >= s)).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn comment(id: u64, created: i64) -> Comment {
        Comment {
            id,
            pr: 7,
            author: "alice".into(),
            body: "/pin".into(),
            url: String::new(),
            created_at: at(created),
        }
    }

    fn memo(listed_at: i64, since: Option<i64>, updated: &[(u64, i64)]) -> NotesMemo {
        NotesMemo {
            listed_at: at(listed_at),
            since: since.map(at),
            updated: updated.iter().map(|(i, u)| (*i, at(*u))).collect(),
            comments: vec![comment(1, -100), comment(2, 10)],
        }
    }

    fn listing(mrs: &[(u64, i64)]) -> Listing {
        mrs.iter().map(|(i, u)| (*i, Some(at(*u)))).collect()
    }

    #[test]
    fn merge_requests_untouched_well_before_the_listing_reuse_it() {
        let m = memo(200, Some(-300), &[(7, 0), (8, 100)]);
        let got = m.reuse(Some(at(0)), &listing(&[(7, 0), (8, 100)])).expect("reused");
        assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), [2], "only comments at or after the start asked for");
        assert_eq!(m.reuse(Some(at(-300)), &listing(&[(7, 0)])).unwrap().len(), 2, "both");
    }

    #[test]
    fn a_note_within_a_minute_of_the_last_touch_forces_a_listing() {
        // Updated at 150, listed at 200: a note at 201 would not have touched the merge request.
        let m = memo(200, Some(-300), &[(7, 150)]);
        assert_eq!(m.reuse(Some(at(-300)), &listing(&[(7, 150)])), None);
        // 64 s before: still within the margin.
        let m = memo(214, Some(-300), &[(7, 150)]);
        assert_eq!(m.reuse(Some(at(-300)), &listing(&[(7, 150)])), None);
        let m = memo(216, Some(-300), &[(7, 150)]);
        assert!(m.reuse(Some(at(-300)), &listing(&[(7, 150)])).is_some());
    }

    #[test]
    fn a_touched_or_new_merge_request_or_an_earlier_start_forces_a_listing() {
        let m = memo(500, Some(-300), &[(7, 0)]);
        assert_eq!(m.reuse(Some(at(0)), &listing(&[(7, 400)])), None, "touched since");
        assert_eq!(m.reuse(Some(at(0)), &listing(&[(7, 0), (9, 0)])), None, "a merge request the memo never saw");
        assert_eq!(m.reuse(Some(at(-400)), &listing(&[(7, 0)])), None, "a start before the memo's");
        assert_eq!(m.reuse(None, &listing(&[(7, 0)])), None, "every comment asked for");
        let no_time: Listing = [(7, None)].into_iter().collect();
        assert_eq!(m.reuse(Some(at(0)), &no_time), None, "GitLab gave no updated_at");
        let all = memo(500, None, &[(7, 0)]);
        assert_eq!(all.reuse(None, &listing(&[(7, 0)])).unwrap().len(), 2);
    }
}
