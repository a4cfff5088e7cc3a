//! WireGuard's timers, run by deadline: the timer thread sleeps until the earliest
//! moment one of boringtun's timers could fire, not on a fixed tick, so an idle
//! session costs no wake-ups beyond what the protocol needs (none without traffic
//! and keepalive, one per PersistentKeepalive interval with it).
//!
//! boringtun 0.7.1 hides its timers, so each peer mirrors, in atomics, the moments
//! its timers count from — last handshake initiation, last packet sent, last data
//! sent, last packet received, last persistent keepalive — and [`PeerTimes::deadline`]
//! turns them into the next moment worth a look (REKEY_TIMEOUT after an initiation,
//! KEEPALIVE_TIMEOUT after the last send when something came in since,
//! KEEPALIVE_TIMEOUT + REKEY_TIMEOUT after the last receive when data went out since,
//! the keepalive interval, and at most [`LONGEST_SLEEP`] for the rest: session expiry,
//! key erasure, cookie expiry). Waking early costs one `update_timers`; waking late
//! would delay a retry or keepalive, so every recorded moment is read after
//! boringtun's own stamp and each deadline gets [`SLACK`].
//!
//! boringtun stamps every event with the time of the latest `update_timers` call, so
//! [`Device::tick`] runs before every encapsulate or decapsulate batch and every
//! handshake message, not only from the timer thread (see the roaming regression test
//! in `tests.rs`).
//!
//! A data-plane thread that records activity wakes the timer thread only when the
//! peer's new deadline is earlier than the one it sleeps towards: under traffic the
//! timer thread wakes every few seconds, when idle not at all until a deadline.

use super::peers::{Peer, PeerSet};
use super::udp::UdpIo;
use super::{lock, Device, MIN_OUT};
use crate::namespace::tun_device::TunIo;
use boringtun::noise::{Tunn, TunnResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// boringtun's REKEY_TIMEOUT: an unanswered initiation is retried after this.
const REKEY_TIMEOUT: u64 = 5_000;
/// boringtun's KEEPALIVE_TIMEOUT: received data unanswered this long gets a keepalive.
const KEEPALIVE_TIMEOUT: u64 = 10_000;
/// Data sent and nothing heard for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT: handshake again.
const SILENCE_TIMEOUT: u64 = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT;
/// Added to every deadline so the timer thread never looks a moment too early (which
/// would find nothing due and sleep through the event).
const SLACK: u64 = 100;
/// The longest sleep: session expiry (180 s), key erasure (540 s), cookie expiry
/// (120 s) and giving up a handshake (90 s) are never late by more than this.
const LONGEST_SLEEP: u64 = 60_000;
/// A persistent keepalive that is due but did not go out (a handshake under way, or
/// boringtun reset its timers) is looked for again this often.
const OVERDUE_RECHECK: u64 = 1_000;

/// WireGuard message types as they appear in what boringtun hands out.
const MSG_INITIATION: u8 = 1;
const MSG_DATA: u8 = 4;
/// A data message with nothing inside: a keepalive.
const KEEPALIVE_LEN: usize = 32;

/// Milliseconds on one monotonic clock, shared by the data plane's threads.
pub(super) struct Clock(Instant);

impl Clock {
    pub(super) fn new() -> Clock {
        Clock(Instant::now())
    }

    /// Milliseconds since the clock started, never 0 (0 means "never" below).
    pub(super) fn now(&self) -> u64 {
        self.0.elapsed().as_millis() as u64 + 1
    }
}

/// The moments a peer's timers count from, in [`Clock`] milliseconds (0: never).
#[derive(Default)]
pub(super) struct PeerTimes {
    initiated: AtomicU64,
    sent: AtomicU64,
    data_sent: AtomicU64,
    received: AtomicU64,
    keepalive: AtomicU64,
}

impl PeerTimes {
    /// A fresh peer's persistent keepalive counts from its creation (as boringtun's).
    pub(super) fn new(now: u64) -> PeerTimes {
        let times = PeerTimes::default();
        times.keepalive.store(now, Ordering::Relaxed);
        times
    }

    /// Data went out at `now`. True when that makes a timer due at once: the first
    /// data after SILENCE_TIMEOUT or more without hearing from the peer (boringtun
    /// then wants a handshake), which the tick before the batch could not see.
    pub(super) fn data_sent(&self, now: u64) -> bool {
        let before = self.data_sent.swap(now, Ordering::SeqCst);
        self.sent.store(now, Ordering::SeqCst);
        let received = self.received.load(Ordering::SeqCst);
        received != 0 && before < received && received + SILENCE_TIMEOUT <= now
    }

    /// Something authenticated came in at `now`. True when that makes a timer due at
    /// once: the first packet after we have been silent for KEEPALIVE_TIMEOUT or more
    /// (boringtun then wants a keepalive).
    pub(super) fn received(&self, now: u64) -> bool {
        let before = self.received.swap(now, Ordering::SeqCst);
        let sent = self.sent.load(Ordering::SeqCst);
        sent != 0 && before < sent && sent + KEEPALIVE_TIMEOUT <= now
    }

    /// Something boringtun handed out went to the peer: an initiation starts the
    /// retry clock, data (queued packets flushed after a handshake) counts as data,
    /// anything else as a send.
    pub(super) fn emitted(&self, message: &[u8], now: u64) {
        match message.first() {
            Some(&MSG_INITIATION) => self.initiated.store(now, Ordering::SeqCst),
            Some(&MSG_DATA) if message.len() > KEEPALIVE_LEN => {
                self.data_sent.store(now, Ordering::SeqCst)
            }
            _ => {}
        }
        self.sent.store(now, Ordering::SeqCst);
    }

    /// `update_timers` handed out a message at `now`: when the persistent keepalive
    /// was due, that was it (or the initiation it turns into without a session).
    fn timers_fired(&self, keepalive_secs: Option<u16>, now: u64) {
        if let Some(k) = keepalive_secs.filter(|&k| k > 0) {
            let last = self.keepalive.load(Ordering::SeqCst);
            if now + SLACK >= last + u64::from(k) * 1000 {
                self.keepalive.store(now, Ordering::SeqCst);
            }
        }
    }

    /// The earliest moment one of this peer's timers could fire, after `now`.
    pub(super) fn deadline(&self, now: u64, keepalive_secs: Option<u16>) -> u64 {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        let (initiated, sent, data_sent, received) = (
            get(&self.initiated),
            get(&self.sent),
            get(&self.data_sent),
            get(&self.received),
        );
        let mut candidates = [u64::MAX; 4];
        if initiated != 0 {
            candidates[0] = initiated + REKEY_TIMEOUT;
        }
        if received != 0 && received >= sent {
            candidates[1] = sent + KEEPALIVE_TIMEOUT;
        }
        if data_sent != 0 && data_sent >= received {
            candidates[2] = received + SILENCE_TIMEOUT;
        }
        if let Some(k) = keepalive_secs.filter(|&k| k > 0) {
            let due = get(&self.keepalive) + u64::from(k) * 1000;
            candidates[3] = if due + SLACK > now {
                due
            } else {
                now + OVERDUE_RECHECK - SLACK
            };
        }
        candidates
            .iter()
            .map(|&c| c.saturating_add(SLACK))
            .filter(|&c| c > now)
            .fold(now + LONGEST_SLEEP, u64::min)
    }
}

/// The timer thread and the moment it sleeps towards, so activity can wake it early.
#[derive(Default)]
pub(super) struct TimerWake {
    thread: OnceLock<Thread>,
    /// The deadline the timer thread sleeps towards; 0 while it is awake.
    sleeping_until: AtomicU64,
}

impl TimerWake {
    /// Wake the timer thread if it sleeps past `deadline`.
    fn before(&self, deadline: u64) {
        let until = self.sleeping_until.load(Ordering::SeqCst);
        if until > deadline {
            self.now();
        }
    }

    /// Wake the timer thread (a reload changed the peers).
    pub(super) fn now(&self) {
        if let Some(t) = self.thread.get() {
            self.sleeping_until.store(0, Ordering::SeqCst);
            t.unpark();
        }
    }
}

impl<T: TunIo + 'static, U: UdpIo + 'static> Device<T, U> {
    /// Run the session's timers; a handshake retry, rekey or keepalive they want goes
    /// out at once. Returns the time, for the caller to record what it does next.
    ///
    /// Besides the timer thread, each data-plane thread calls this when it takes a
    /// session's lock for a batch, and the handshake code before each message:
    /// boringtun stamps every event with the time of the latest `update_timers`
    /// call, so without it a packet sent after the last one received could carry the
    /// same (old) stamp, and "sent but heard nothing back for 15 s, so handshake
    /// again" would never fire — which is how a client whose address changed
    /// mid-download gets its peer to follow.
    pub(super) fn tick(&self, peer: &Peer, tunn: &mut Tunn) -> u64 {
        let mut out = [0u8; MIN_OUT];
        let res = tunn.update_timers(&mut out);
        let now = self.clock.now();
        match res {
            TunnResult::WriteToNetwork(d) => {
                if let Some(to) = *lock(&peer.endpoint) {
                    peer.times.timers_fired(peer.persistent_keepalive, now);
                    self.emitted(peer, d, now);
                    let _ = self.udp.send_to(d, to);
                }
            }
            TunnResult::Done => {}
            // ConnectionExpired and friends: boringtun has reset itself.
            TunnResult::Err(_) => {}
            // Timers never decrypt anything.
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
        }
        now
    }

    /// Record a message boringtun handed out for `peer` (about to be sent).
    pub(super) fn emitted(&self, peer: &Peer, message: &[u8], now: u64) {
        peer.sent(message.len());
        peer.times.emitted(message, now);
        self.woke(peer, now);
    }

    /// Data went out to `peer` (or came in from it, `received`) at `now`.
    pub(super) fn activity(&self, peer: &Peer, now: u64, received: bool) {
        let due_now = if received {
            peer.times.received(now)
        } else {
            peer.times.data_sent(now)
        };
        if due_now {
            // The tick before this batch ran before the packet that makes the timer
            // due: the timer thread must look now, not at its next deadline (which
            // `deadline` would drop as past).
            self.timer_wake.now();
        } else {
            self.woke(peer, now);
        }
    }

    /// Make sure the timer thread looks at `peer` by its new deadline.
    fn woke(&self, peer: &Peer, now: u64) {
        let deadline = peer.times.deadline(now, peer.persistent_keepalive);
        self.timer_wake.before(deadline);
    }

    /// The timer thread: tick every peer, then sleep until the earliest deadline.
    pub(super) fn timer_loop(&self) {
        let _ = self.timer_wake.thread.set(thread::current());
        loop {
            let set = self.current();
            let mut now = 0;
            for (peer, _) in &set.peers {
                now = self.tick(peer, &mut lock(&peer.tunn));
            }
            if now == 0 {
                now = self.clock.now();
            }
            let mut deadline = next_deadline(&set, now);
            // Announce the deadline, then look again: activity recorded meanwhile
            // either sees the announcement (and unparks) or is seen here.
            self.timer_wake
                .sleeping_until
                .store(deadline, Ordering::SeqCst);
            deadline = deadline.min(next_deadline(&set, now));
            drop(set);
            let now = self.clock.now();
            if deadline > now {
                thread::park_timeout(Duration::from_millis(deadline - now));
            }
            self.timer_wake.sleeping_until.store(0, Ordering::SeqCst);
        }
    }
}

fn next_deadline(set: &PeerSet, now: u64) -> u64 {
    set.peers
        .iter()
        .map(|(p, _)| p.times.deadline(now, p.persistent_keepalive))
        .fold(now + LONGEST_SLEEP, u64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_peer_sleeps_long_and_keepalive_sets_the_pace() {
        let t = PeerTimes::new(1);
        assert_eq!(t.deadline(1_000, None), 1_000 + LONGEST_SLEEP);
        assert_eq!(t.deadline(1_000, Some(25)), 25_001 + SLACK);
        // Overdue and not sent (a handshake under way): look again soon.
        assert_eq!(t.deadline(30_000, Some(25)), 31_000);
    }

    #[test]
    fn traffic_brings_the_protocol_deadlines() {
        let t = PeerTimes::new(1);
        t.emitted(&[MSG_INITIATION], 100);
        assert_eq!(t.deadline(200, None), 100 + REKEY_TIMEOUT + SLACK);
        // Data received after our last send: a keepalive is due 10 s after that send.
        let t = PeerTimes::new(1);
        t.data_sent(1_000);
        t.received(3_000);
        assert_eq!(t.deadline(3_000, None), 1_000 + KEEPALIVE_TIMEOUT + SLACK);
        // Data sent after the last receive: handshake again after 15 s of silence.
        t.data_sent(4_000);
        assert_eq!(t.deadline(4_000, None), 3_000 + SILENCE_TIMEOUT + SLACK);
        // Past deadlines drop out.
        assert_eq!(t.deadline(20_000, None), 20_000 + LONGEST_SLEEP);
    }

    /// A packet that makes a timer due at once says so: the timer thread could not
    /// have seen it coming (regression: such a keepalive went out up to a minute late).
    #[test]
    fn activity_that_makes_a_timer_due_at_once_says_so() {
        // We sent at 1 s; the peer's data arrives at 30 s: keepalive due now.
        let t = PeerTimes::new(1);
        assert!(!t.data_sent(1_000));
        assert!(t.received(30_000));
        // The next packet before the keepalive goes out does not ask again.
        assert!(!t.received(30_050));
        // An answer within KEEPALIVE_TIMEOUT wants nothing.
        let t = PeerTimes::new(1);
        assert!(!t.data_sent(1_000));
        assert!(!t.received(5_000));
        // First data after 15 s of silence: handshake due now; the next does not ask.
        let t = PeerTimes::new(1);
        assert!(!t.received(1_000));
        assert!(t.data_sent(20_000));
        assert!(!t.data_sent(20_010));
        // Within 15 s of the last receive: nothing.
        let t = PeerTimes::new(1);
        assert!(!t.received(1_000));
        assert!(!t.data_sent(10_000));
    }
}
