//! Repeated answers, tallied. A decision identical to one the log already holds, but for its
//! time, is not appended in full again each time the gate gives it: the answer is counted, and
//! the counts are appended a second later as one *tally* event per decision (a
//! [`DecisionEvent`] with [`Repeats`] set: the decision's fields, the seq of the record it
//! repeats, how many answers and when the first and last were given).
//!
//! What stays true: every answer has its decision on record, durably, before it is given (the
//! first one waits for its own append; a repeat is given only while the full record it
//! repeats is committed). What a crash can lose: the counts of the last interval (at most
//! [`INTERVAL`] of repeats), never a decision. An orderly shutdown, and the end of a session,
//! write the counts first ([`AuditLog::flush_repeats`](crate::AuditLog::flush_repeats)).
//!
//! Why: a client that asks again for what it already got (a CI job, an agent retrying, a
//! warm-cache benchmark) would otherwise make the log grow by a full signed record per request
//! (about 320 bytes each) and make every answer wait for a durable append that says nothing
//! new. A decision is remembered for [`EXPIRY`] after its record or its last repeat, for at
//! most [`MAX_DECISIONS`] decisions at once; past that, the next identical answer is recorded
//! in full again. `moat gate --audit-repeats record` records every answer in full instead.

use std::collections::{HashMap, hash_map};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;

use crate::{DecisionEvent, Repeats};

/// How long after the first counted repeat its tally is appended.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// How long a decision is remembered after its record or its last repeat.
pub const EXPIRY: Duration = Duration::from_secs(60);

/// The most decisions remembered at once.
pub const MAX_DECISIONS: usize = 65_536;

/// A decision as a tally key: every field but `time` and `repeats`.
struct Answer(DecisionEvent);

/// What makes two answers the same decision.
#[derive(PartialEq, Eq, Hash)]
struct Key<'a> {
    identity: &'a str,
    ecosystem: &'a str,
    package: &'a str,
    version: Option<&'a str>,
    request: &'a str,
    action: &'a str,
    rules: &'a [String],
    advisories: &'a [String],
    approved: &'a [String],
    message: Option<&'a str>,
}

impl Answer {
    fn key(&self) -> Key<'_> {
        let d = &self.0;
        Key {
            identity: &d.identity,
            ecosystem: &d.ecosystem,
            package: &d.package,
            version: d.version.as_deref(),
            request: &d.request,
            action: &d.action,
            rules: &d.rules,
            advisories: &d.advisories,
            approved: &d.approved,
            message: d.message.as_deref(),
        }
    }
}

impl PartialEq for Answer {
    fn eq(&self, other: &Answer) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Answer {}

impl Hash for Answer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// What the log knows of one remembered decision.
struct Entry {
    /// The seq of its full record.
    of: u64,
    /// Answers counted since the last tally.
    count: u64,
    /// When the first and the last of them were given.
    first: Timestamp,
    last: Timestamp,
    /// When it was recorded or last repeated: it is forgotten [`EXPIRY`] after.
    seen: Timestamp,
}

#[derive(Default)]
struct State {
    decisions: HashMap<Answer, Entry>,
    /// A tally is due: set by the first count after a tally, cleared by [`Tally::take`].
    due: bool,
    /// Set by [`Tally::close`]: nothing is counted any more.
    closed: bool,
}

/// What [`Tally::see`] found. Matched as soon as it is returned; boxing the event would cost
/// an allocation per new decision for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Seen {
    /// The same decision is on record; this answer was counted. `schedule` is true for the
    /// first count since the last tally: the caller arranges for the next one.
    Counted { schedule: bool },
    /// Not on record (or forgotten): append it in full, then [`Tally::remember`] it.
    New(DecisionEvent),
}

/// The remembered decisions and their counts.
#[derive(Default)]
pub(crate) struct Tally {
    state: Mutex<State>,
}

fn expired(seen: Timestamp, now: Timestamp) -> bool {
    now.duration_since(seen).unsigned_abs() >= EXPIRY
}

impl Tally {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Counts are plain integers: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Count `event` if the same decision is remembered, else hand it back to be appended.
    pub(crate) fn see(&self, event: DecisionEvent) -> Seen {
        let time = event.time;
        let answer = Answer(event);
        let mut state = self.state();
        if state.closed {
            return Seen::New(answer.0);
        }
        let Some(entry) = state.decisions.get_mut(&answer) else {
            return Seen::New(answer.0);
        };
        if expired(entry.seen, time) {
            return Seen::New(answer.0);
        }
        if entry.count == 0 {
            entry.first = time;
        }
        entry.count += 1;
        entry.last = entry.last.max(time);
        entry.seen = entry.seen.max(time);
        let schedule = !state.due;
        state.due = true;
        Seen::Counted { schedule }
    }

    /// Remember `event`, committed as `seq`, so that the same decision is counted from now on.
    /// A decision already remembered keeps its record and counts, unless it had expired (with
    /// nothing counted since its last tally): then `seq` is the record its repeats count
    /// against. Kept, an expired entry would hand every repeat back to be appended in full
    /// until a tally of some other decision pruned it, which never comes when this decision
    /// is all the traffic.
    pub(crate) fn remember(&self, event: DecisionEvent, seq: u64) {
        let time = event.time;
        let fresh = Entry {
            of: seq,
            count: 0,
            first: time,
            last: time,
            seen: time,
        };
        let mut state = self.state();
        if state.decisions.len() >= MAX_DECISIONS {
            state
                .decisions
                .retain(|_, entry| entry.count > 0 || !expired(entry.seen, time));
            if state.decisions.len() >= MAX_DECISIONS {
                return;
            }
        }
        match state.decisions.entry(Answer(event)) {
            hash_map::Entry::Occupied(mut slot) => {
                let entry = slot.get_mut();
                if entry.count == 0 && expired(entry.seen, time) {
                    *entry = fresh;
                }
            }
            hash_map::Entry::Vacant(slot) => {
                slot.insert(fresh);
            }
        }
    }

    /// Forget every decision: the next answers are appended in full.
    pub(crate) fn forget(&self) {
        let mut state = self.state();
        state.decisions.clear();
        state.due = false;
    }

    /// Count nothing from now on (the log is shutting down): the counts so far stay for one
    /// last [`take`](Self::take).
    pub(crate) fn close(&self) {
        self.state().closed = true;
    }

    /// The tally events of the counts since the last tally, oldest first answer first; the
    /// counts start again from zero. Forgets the decisions expired by `now`.
    pub(crate) fn take(&self, now: Timestamp) -> Vec<DecisionEvent> {
        let mut state = self.state();
        state.due = false;
        let mut tallies = Vec::new();
        state.decisions.retain(|answer, entry| {
            if entry.count > 0 {
                tallies.push(DecisionEvent {
                    time: entry.first,
                    repeats: Some(Repeats {
                        of: entry.of,
                        count: entry.count,
                        last: entry.last,
                    }),
                    ..answer.0.clone()
                });
                entry.count = 0;
                return true;
            }
            !expired(entry.seen, now)
        });
        tallies.sort_by_key(|tally| tally.time);
        tallies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(time: Timestamp, version: &str) -> DecisionEvent {
        DecisionEvent {
            time,
            identity: "session:s1".to_owned(),
            ecosystem: "npm".to_owned(),
            package: "left-pad".to_owned(),
            version: Some(version.to_owned()),
            request: "artifact".to_owned(),
            action: "allow".to_owned(),
            rules: Vec::new(),
            advisories: Vec::new(),
            approved: Vec::new(),
            message: None,
            repeats: None,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn is_new(seen: Seen) -> bool {
        matches!(seen, Seen::New(_))
    }

    #[test]
    fn a_decision_not_on_record_is_handed_back_whole() {
        let tally = Tally::default();
        let Seen::New(back) = tally.see(decision(at(0), "1.0.0")) else {
            panic!("counted a decision never recorded");
        };
        assert_eq!(back, decision(at(0), "1.0.0"));
        assert!(tally.take(at(1)).is_empty());
    }

    #[test]
    fn repeats_are_counted_and_tallied_once_with_their_first_and_last_time() {
        let tally = Tally::default();
        tally.remember(decision(at(0), "1.0.0"), 7);
        assert!(matches!(
            tally.see(decision(at(1), "1.0.0")),
            Seen::Counted { schedule: true }
        ));
        assert!(matches!(
            tally.see(decision(at(3), "1.0.0")),
            Seen::Counted { schedule: false }
        ));
        assert!(matches!(
            tally.see(decision(at(2), "1.0.0")),
            Seen::Counted { schedule: false }
        ));
        let tallies = tally.take(at(4));
        assert_eq!(
            tallies,
            vec![DecisionEvent {
                time: at(1),
                repeats: Some(Repeats {
                    of: 7,
                    count: 3,
                    last: at(3)
                }),
                ..decision(at(1), "1.0.0")
            }]
        );
        // Counting starts again, and the next count asks for the next tally.
        assert!(tally.take(at(5)).is_empty());
        assert!(matches!(
            tally.see(decision(at(6), "1.0.0")),
            Seen::Counted { schedule: true }
        ));
    }

    #[test]
    fn any_other_field_makes_another_decision() {
        let tally = Tally::default();
        tally.remember(decision(at(0), "1.0.0"), 1);
        assert!(is_new(tally.see(decision(at(1), "1.0.1"))));
        let blocked = DecisionEvent {
            action: "block".to_owned(),
            ..decision(at(1), "1.0.0")
        };
        assert!(is_new(tally.see(blocked)));
        let other_session = DecisionEvent {
            identity: "session:s2".to_owned(),
            ..decision(at(1), "1.0.0")
        };
        assert!(is_new(tally.see(other_session)));
        let other_advisories = DecisionEvent {
            advisories: vec!["GHSA-1".to_owned()],
            ..decision(at(1), "1.0.0")
        };
        assert!(is_new(tally.see(other_advisories)));
    }

    #[test]
    fn a_decision_is_forgotten_after_its_expiry_and_recorded_again() {
        let tally = Tally::default();
        tally.remember(decision(at(0), "1.0.0"), 1);
        let expiry = i64::try_from(EXPIRY.as_secs()).unwrap();
        assert!(matches!(
            tally.see(decision(at(expiry - 1), "1.0.0")),
            Seen::Counted { .. }
        ));
        // Each repeat keeps it remembered...
        assert!(matches!(
            tally.see(decision(at(2 * expiry - 2), "1.0.0")),
            Seen::Counted { .. }
        ));
        assert_eq!(tally.take(at(2 * expiry - 2)).len(), 1);
        // ...a quiet EXPIRY forgets it.
        assert!(is_new(tally.see(decision(at(3 * expiry - 2), "1.0.0"))));
        assert!(tally.take(at(3 * expiry)).is_empty());
        assert!(tally.state().decisions.is_empty());
    }

    /// After a quiet EXPIRY the decision is recorded again in full, and from then on its
    /// repeats are counted against that new record. They used to be appended in full one by
    /// one for as long as nothing else was counted: the expired entry stayed, and remembering
    /// the new record kept it.
    #[test]
    fn a_decision_recorded_again_after_its_expiry_is_counted_against_the_new_record() {
        let tally = Tally::default();
        tally.remember(decision(at(0), "1.0.0"), 1);
        let later = i64::try_from(EXPIRY.as_secs()).unwrap() + 5;
        let Seen::New(again) = tally.see(decision(at(later), "1.0.0")) else {
            panic!("counted against a record older than EXPIRY");
        };
        tally.remember(again, 2);
        assert!(matches!(
            tally.see(decision(at(later + 1), "1.0.0")),
            Seen::Counted { schedule: true }
        ));
        let tallies = tally.take(at(later + 2));
        assert_eq!(tallies.len(), 1);
        assert_eq!(
            tallies[0].repeats.as_ref().map(|r| (r.of, r.count)),
            Some((2, 1))
        );
    }

    #[test]
    fn remembering_is_bounded() {
        let tally = Tally::default();
        for n in 0..MAX_DECISIONS + 10 {
            tally.remember(decision(at(0), &format!("1.0.{n}")), n as u64 + 1);
        }
        assert_eq!(tally.state().decisions.len(), MAX_DECISIONS);
        // The ones not remembered are recorded in full each time.
        let last = format!("1.0.{}", MAX_DECISIONS + 5);
        assert!(is_new(tally.see(decision(at(1), &last))));
        // Once they expire, room is made.
        let later = at(i64::try_from(EXPIRY.as_secs()).unwrap() + 1);
        tally.remember(decision(later, &last), 99_999);
        assert_eq!(tally.state().decisions.len(), 1);
    }

    #[test]
    fn a_second_remember_keeps_the_first_record() {
        let tally = Tally::default();
        tally.remember(decision(at(0), "1.0.0"), 1);
        tally.remember(decision(at(1), "1.0.0"), 2);
        let _ = tally.see(decision(at(2), "1.0.0"));
        let tallies = tally.take(at(3));
        assert_eq!(tallies[0].repeats.as_ref().map(|r| r.of), Some(1));
    }
}
