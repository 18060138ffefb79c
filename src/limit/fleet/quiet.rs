//! The quiet share (`--redis-share`): per user, the admissions a node may keep to itself.

use std::collections::HashMap;

use super::{IdHash, Report};

/// The quiet share (`--redis-share`): which admissions a node may keep to itself.
///
/// Each node may admit, per user, a share `s` of the user's rate and burst without telling Redis: a leaky
/// bucket per user of capacity `s x burst x interval` (the default tier's burst duration) that drains at `s`
/// (so `s x rate` requests per second). An admission that fits the bucket is quiet; the first that does not
/// turns the user hot on this node: that report carries the bucket's content too (every quiet admission still
/// weighing in the bucket), and asks Redis to mark the user hot in its group's hot list. A hot user is
/// reported in full (every admission), on this node for [`Quiet::hold_us`] past its last report's fleet
/// schedule, and on every other node for `hold_us` after it reads the mark (each node reads its groups' hot
/// lists every sync); a node that learns of a mark reports its own bucket's content at its next sync. So a
/// user whose admissions on some node pass that node's share is counted fleet-wide by every node within about
/// two syncs, while users below their share everywhere cost Redis nothing. The error bound is derived in
/// docs/rate-limit.md. Pure: time (this node's clock, microseconds) is passed in.
pub struct Quiet {
    /// The share, in millionths.
    share_ppm: u64,
    /// The bucket's capacity, microseconds of schedule.
    capacity_us: u64,
    /// How long a user stays hot after its last report's schedule (or after a mark is read).
    pub hold_us: u64,
    users: HashMap<u64, QuietUser, IdHash>,
    max_users: usize,
    last_sweep: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct QuietUser {
    /// Quiet charge still in the bucket as of `at`, and the requests it stands for.
    level: u64,
    requests: u64,
    at: u64,
    /// Reported in full until then.
    hot_until: u64,
    /// When this node last asked Redis to mark the user (0: never).
    marked_at: u64,
}

impl Quiet {
    /// A share of `share_ppm` millionths of a burst of `burst_us` (the default tier's burst x interval).
    /// `max_users` bounds the users tracked: past it a new user is reported in full (never quietly).
    pub fn new(share_ppm: u32, burst_us: u64, max_users: usize) -> Quiet {
        let share_ppm = share_ppm.min(1_000_000) as u64;
        Quiet {
            share_ppm,
            capacity_us: burst_us * share_ppm / 1_000_000,
            hold_us: burst_us.max(1_000_000),
            users: HashMap::with_hasher(IdHash::default()),
            max_users,
            last_sweep: 0,
        }
    }

    /// The bucket's capacity (microseconds of schedule).
    pub fn capacity_us(&self) -> u64 {
        self.capacity_us
    }

    /// Users tracked.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Decides what of `r` (this sync's admissions of `id`) to report at `now`: `None` keeps them quiet.
    pub fn filter(&mut self, id: u64, r: Report, now: u64) -> Option<Report> {
        let half_hold = self.hold_us / 2;
        let u = if self.users.len() < self.max_users {
            // One lookup, whether the user is new (most are, with many light users) or known.
            self.users.entry(id).or_insert(QuietUser {
                at: now,
                ..Default::default()
            })
        } else {
            match self.users.get_mut(&id) {
                Some(u) => u,
                None => return Some(r),
            }
        };
        drain(u, self.share_ppm, now);
        if now >= u.hot_until && u.level + r.charge <= self.capacity_us {
            u.level += r.charge;
            u.requests += r.requests;
            return None;
        }
        // Hot (already, or from this sync on): everything, with what the bucket held.
        let out = Report {
            charge: r.charge + u.level,
            requests: r.requests + u.requests,
            mark: r.mark || u.marked_at == 0 || now.saturating_sub(u.marked_at) >= half_hold,
        };
        if out.mark {
            u.marked_at = now.max(1);
        }
        u.level = 0;
        u.requests = 0;
        if now >= u.hot_until {
            // Turning hot: for the hold; the fleet's answers extend it while the user stays heavy.
            u.hot_until = now + self.hold_us;
        }
        Some(out)
    }

    /// The fleet answered that `id`'s schedule is `ahead` microseconds ahead (at `now`): while that is more
    /// than a node's share of the burst (the user is heavy fleet-wide), hot until that schedule has passed, plus
    /// the hold. A user that has become light again cools down when its hold ends.
    pub fn answered(&mut self, id: u64, ahead: u64, now: u64) {
        if ahead <= self.capacity_us {
            return;
        }
        if let Some(u) = self.users.get_mut(&id) {
            u.hot_until = u.hot_until.max(now + ahead + self.hold_us);
        }
    }

    /// Another node marked `id` hot: hot here too for the hold. Returns what this node's bucket holds of it
    /// (to be reported at the next sync), if anything.
    pub fn learn(&mut self, id: u64, now: u64) -> Option<Report> {
        let full = self.users.len() >= self.max_users;
        let hold = self.hold_us;
        let u = match self.users.get_mut(&id) {
            Some(u) => u,
            None if full => return None,
            None => self.users.entry(id).or_insert(QuietUser {
                at: now,
                marked_at: now.max(1),
                ..Default::default()
            }),
        };
        drain(u, self.share_ppm, now);
        u.hot_until = u.hot_until.max(now + hold);
        // Another node's mark stands for this node's too: it need not mark the user again right away.
        if u.marked_at == 0 {
            u.marked_at = now.max(1);
        }
        let backlog = (u.level > 0).then_some(Report {
            charge: u.level,
            requests: u.requests,
            mark: false,
        });
        u.level = 0;
        u.requests = 0;
        backlog
    }

    /// Forgets users with an empty bucket who are no longer hot (at most once a second).
    pub fn sweep(&mut self, now: u64) {
        if now.saturating_sub(self.last_sweep) < 1_000_000 {
            return;
        }
        self.last_sweep = now;
        let share = self.share_ppm;
        self.users.retain(|_, u| {
            let leaked = now.saturating_sub(u.at).saturating_mul(share) / 1_000_000;
            leaked < u.level || u.hot_until > now
        });
    }
}

/// Lets `u`'s bucket drain at `share_ppm` millionths of real time up to `now`.
fn drain(u: &mut QuietUser, share_ppm: u64, now: u64) {
    let leaked = now.saturating_sub(u.at).saturating_mul(share_ppm) / 1_000_000;
    if leaked >= u.level {
        u.level = 0;
        u.requests = 0;
    } else if leaked > 0 {
        // The requests the remaining charge stands for, in proportion (rounded up).
        u.requests = (u.requests * (u.level - leaked)).div_ceil(u.level);
        u.level -= leaked;
    }
    u.at = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::fleet::Batch;

    /// A share of 0.5 of a burst of 10 at 10/s (a bucket of 0.5 s, draining at half speed).
    fn quiet() -> Quiet {
        Quiet::new(500_000, 1_000_000, 100)
    }

    fn one(t: u64) -> Report {
        Report {
            charge: t,
            requests: 1,
            mark: false,
        }
    }

    #[test]
    fn a_user_within_its_share_is_never_reported() {
        let mut q = quiet();
        assert_eq!(q.capacity_us(), 500_000);
        // 5 requests a second (the share of the rate), one per 200 ms: never reported.
        for i in 0..100 {
            assert_eq!(q.filter(7, one(100_000), i * 200_000), None, "request {i}");
        }
        // Five back to back after idling (the share of the burst): quiet; the sixth is not.
        let t = 100_000_000;
        for i in 0..5 {
            assert_eq!(q.filter(8, one(100_000), t + i), None);
        }
        let r = q.filter(8, one(100_000), t + 5).unwrap();
        // The report carries the five quiet ones too, and asks for a mark.
        assert_eq!(
            r,
            Report {
                charge: 600_000,
                requests: 6,
                mark: true
            }
        );
        // From then on everything is reported, marked again only every half hold.
        let r = q.filter(8, one(100_000), t + 100_000).unwrap();
        assert_eq!((r.charge, r.mark), (100_000, false));
        q.answered(8, 2_000_000, t + 100_000);
        // Hot until the schedule plus the hold, re-marked every half hold; then quiet again.
        let r = q.filter(8, one(100_000), t + 3_000_000).unwrap();
        assert!(r.mark, "re-marked after half the hold");
        assert_eq!(q.filter(8, one(100_000), t + 3_200_000), None);
        // An answer within a node's share of the burst does not keep a user hot: it cools down after its hold.
        assert!(q.filter(11, one(100_000), 0).is_none());
        let r = q.filter(11, one(500_000), 1).unwrap();
        assert!(r.mark);
        q.answered(11, 400_000, 2);
        for i in 1..10 {
            assert!(q.filter(11, one(100_000), i * 100_000).is_some(), "{i}");
        }
        assert_eq!(q.filter(11, one(100_000), 1_100_000), None);
    }

    #[test]
    fn filtering_each_admission_adds_up_to_filtering_each_users_total() {
        // The sync filters admissions one by one as they leave the journals; the quiet share is defined on
        // each user's total per sync. Random syncs of a few users: the same reported charge, requests and
        // marks either way.
        let (mut each, mut total) = (quiet(), quiet());
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut now = 1_000_000;
        let mut differ = 0;
        for _ in 0..2_000 {
            now += 10_000 + rnd(200_000);
            let admissions: Vec<(u64, u64)> = (0..rnd(12)).map(|_| (1 + rnd(4), 1 + rnd(400_000))).collect();
            let mut a = Batch::new(100);
            let mut quiet_a = 0;
            for &(id, charge) in &admissions {
                match each.filter(
                    id,
                    Report {
                        charge,
                        requests: 1,
                        mark: false,
                    },
                    now,
                ) {
                    None => quiet_a += 1,
                    Some(r) => a.add_report(id, r),
                }
            }
            let mut sums = Batch::new(100);
            for &(id, charge) in &admissions {
                sums.add(id, charge);
            }
            let mut b = Batch::new(100);
            let mut quiet_b = 0;
            for &(id, r) in sums.take(1) {
                match total.filter(id, r, now) {
                    None => quiet_b += r.requests,
                    Some(f) => b.add_report(id, f),
                }
            }
            assert_eq!(a.take(1), b.take(1), "at {now}: {admissions:?}");
            // Kept quiet when made: one by one, an admission the bucket took before one in the same sync
            // overflowed it counts too (as one taken in an earlier sync always did).
            assert!(quiet_a >= quiet_b);
            differ += (quiet_a != quiet_b) as u32;
        }
        assert!(differ > 0, "the syncs overflowed buckets");
    }

    #[test]
    fn a_mark_read_from_the_fleet_reports_the_bucket() {
        let mut q = quiet();
        // Three quiet requests, then another node's mark: the bucket (what has not drained) is reported.
        for _ in 0..3 {
            assert_eq!(q.filter(9, one(100_000), 0), None);
        }
        let backlog = q.learn(9, 200_000).unwrap();
        assert_eq!(backlog.charge, 300_000 - 100_000, "200 ms at half speed drained 100 ms");
        assert_eq!(backlog.requests, 2);
        // Hot for the hold: every request reported, without a mark of its own.
        let r = q.filter(9, one(100_000), 300_000).unwrap();
        assert_eq!((r.charge, r.mark), (100_000, false));
        // A user this node has not seen: nothing to report, hot from now.
        assert_eq!(q.learn(10, 0), None);
        assert!(q.filter(10, one(100_000), 1).is_some());
        // Past the hold and drained, the users are forgotten.
        q.sweep(100_000_000);
        assert!(q.is_empty());
    }

    #[test]
    fn past_its_capacity_every_new_user_is_reported() {
        let mut q = Quiet::new(500_000, 1_000_000, 2);
        assert_eq!(q.filter(1, one(1), 0), None);
        assert_eq!(q.filter(2, one(1), 0), None);
        assert_eq!(q.filter(3, one(1), 0), Some(one(1)));
        assert_eq!(q.len(), 2);
    }
}
