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
//!
//! Time is CLOCK_BOOTTIME, boringtun's own clock, which goes on while the machine is
//! suspended: the timer thread sleeps on a BOOTTIME timerfd with an absolute deadline,
//! so after a resume every timer that fell due during the suspend fires at once (a
//! CLOCK_MONOTONIC sleep stops with the machine and would have kept a persistent
//! keepalive, and with it the re-handshake, waiting for the rest of its interval).
//! Waking the thread early re-arms the same timerfd to expire now.
//!
//! A peer whose handshake gave up (boringtun reports ConnectionExpired, after 90 s of
//! unanswered initiations or 540 s without new keys) has no timers until something is
//! sent to it again — boringtun returns before looking at them — so its deadlines,
//! persistent keepalive included, are ignored until then.

use super::peers::{Peer, PeerSet};
use super::udp::UdpIo;
use super::{lock, Device, MIN_OUT};
use crate::namespace::tun_device::TunIo;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
use rustix::io::Errno;
use rustix::time::{
    clock_gettime, timerfd_create, timerfd_settime, ClockId, Itimerspec, TimerfdClockId,
    TimerfdFlags, TimerfdTimerFlags, Timespec,
};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

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

/// Milliseconds on CLOCK_BOOTTIME (boringtun's clock; it counts suspended time too),
/// shared by the data plane's threads and the timerfd.
pub(super) struct Clock;

impl Clock {
    pub(super) fn new() -> Clock {
        Clock
    }

    /// Milliseconds since boot, never 0 (0 means "never" below).
    pub(super) fn now(&self) -> u64 {
        let t = clock_gettime(ClockId::Boottime);
        (t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000).max(1)
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
    /// boringtun gave up on the peer: no timers until something is sent to it.
    expired: AtomicBool,
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
        // While boringtun has given up it hands out nothing but a new initiation
        // (ours, or our answer to the peer's), and that brings it back: anything
        // emitted means the timers count again.
        self.expired.store(false, Ordering::SeqCst);
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

    /// boringtun reported the connection expired: it gave up on the peer.
    fn gave_up(&self) {
        self.expired.store(true, Ordering::SeqCst);
    }

    /// The earliest moment one of this peer's timers could fire, after `now`.
    pub(super) fn deadline(&self, now: u64, keepalive_secs: Option<u16>) -> u64 {
        if self.expired.load(Ordering::SeqCst) {
            // Regression: a persistent keepalive that boringtun would never send
            // again was looked for every OVERDUE_RECHECK, forever.
            return now + LONGEST_SLEEP;
        }
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

/// The timer thread's clock and the moment it sleeps towards, so activity can wake it
/// early.
#[derive(Default)]
pub(super) struct TimerWake {
    /// A CLOCK_BOOTTIME timerfd the timer thread blocks on, made by [`Self::create`].
    timer: OnceLock<OwnedFd>,
    /// The deadline the timer thread sleeps towards; 0 while it is awake.
    sleeping_until: AtomicU64,
    /// [`Self::now`] was called since the timer thread last looked at every peer.
    pending: AtomicBool,
}

impl TimerWake {
    /// Make the timerfd. Before the seccomp filter (timerfd_create is not on it) and
    /// before the timer thread starts.
    pub(super) fn create(&self) -> io::Result<()> {
        let fd = timerfd_create(TimerfdClockId::Boottime, TimerfdFlags::CLOEXEC)?;
        let _ = self.timer.set(fd);
        Ok(())
    }

    /// Wake the timer thread if it sleeps past `deadline`.
    fn before(&self, deadline: u64) {
        let until = self.sleeping_until.load(Ordering::SeqCst);
        if until > deadline {
            self.now();
        }
    }

    /// Wake the timer thread (a reload changed the peers, or a timer is due at once).
    pub(super) fn now(&self) {
        if let Some(timer) = self.timer.get() {
            // Seen by the timer thread if it has not gone to sleep yet; else the
            // timer's expiry below wakes it (it armed its own deadline before
            // looking at `pending`, so this one cannot be overwritten).
            self.pending.store(true, Ordering::SeqCst);
            self.sleeping_until.store(0, Ordering::SeqCst);
            let _ = arm(
                timer,
                TimerfdTimerFlags::empty(),
                Timespec {
                    tv_sec: 0,
                    tv_nsec: 1,
                },
            );
        }
    }

    /// The timer thread's sleep: until `deadline` ([`Clock`] milliseconds) or a wake.
    /// `recheck` gives the earliest deadline again, after the sleep is announced:
    /// activity recorded before the announcement cannot see it, so it must be seen
    /// here. Returns at once when that is earlier or a wake came meanwhile.
    fn sleep(&self, deadline: u64, recheck: impl FnOnce() -> u64) -> io::Result<()> {
        let timer = self
            .timer
            .get()
            .ok_or_else(|| io::Error::other("no timerfd"))?;
        let at = Timespec {
            tv_sec: (deadline / 1000) as i64,
            tv_nsec: ((deadline % 1000) * 1_000_000).max(1) as i64,
        };
        arm(timer, TimerfdTimerFlags::ABSTIME, at)?;
        self.sleeping_until.store(deadline, Ordering::SeqCst);
        if !self.pending.swap(false, Ordering::SeqCst) && recheck() >= deadline {
            let mut expirations = [0u8; 8];
            loop {
                match rustix::io::read(timer, &mut expirations) {
                    Err(Errno::INTR) => continue,
                    other => break other.map(drop)?,
                }
            }
        }
        self.sleeping_until.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Start of a round over every peer: wakes asked for so far are answered by it.
    fn looking(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }
}

/// Arm `timer` once (no interval) for `value`, absolute or from now.
fn arm(timer: &OwnedFd, flags: TimerfdTimerFlags, value: Timespec) -> io::Result<()> {
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let spec = Itimerspec {
        it_interval: zero,
        it_value: value,
    };
    timerfd_settime(timer, flags, &spec)?;
    Ok(())
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
            // Handshakes gave up, or no new keys for REJECT_AFTER_TIME * 3: boringtun
            // has reset itself and looks at no timer until something is sent.
            TunnResult::Err(WireGuardError::ConnectionExpired) => peer.times.gave_up(),
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
    /// [`Device::start`] made the timerfd; without it the thread has nothing to wait
    /// on, and the session fails closed rather than run without timers.
    pub(super) fn timer_loop(&self) {
        loop {
            self.timer_wake.looking();
            let set = self.current();
            let mut now = 0;
            for (peer, _) in &set.peers {
                now = self.tick(peer, &mut lock(&peer.tunn));
            }
            if now == 0 {
                now = self.clock.now();
            }
            let deadline = next_deadline(&set, now);
            // The closure owns the peer set: gone before the sleep (peers a reload removed).
            if let Err(e) = self
                .timer_wake
                .sleep(deadline, move || next_deadline(&set, now))
            {
                eprintln!("wg-wrap supervisor: the timer thread cannot sleep: {e}");
                std::process::exit(1);
            }
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
    use std::sync::Arc;
    use std::time::{Duration, Instant};

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

    /// A peer boringtun gave up on has no deadlines until something goes out to it
    /// (regression: its overdue persistent keepalive woke the timer thread every
    /// second, forever, though boringtun would never send it).
    #[test]
    fn a_peer_given_up_sleeps_until_something_is_sent() {
        let t = PeerTimes::new(1);
        t.emitted(&[MSG_INITIATION], 1_000);
        t.gave_up();
        assert_eq!(t.deadline(100_000, Some(25)), 100_000 + LONGEST_SLEEP);
        assert_eq!(t.deadline(100_000, None), 100_000 + LONGEST_SLEEP);
        // A new initiation (data queued for it) brings the timers back.
        t.emitted(&[MSG_INITIATION], 200_000);
        assert_eq!(t.deadline(200_000, None), 200_000 + REKEY_TIMEOUT + SLACK);
    }

    /// The clock is boringtun's, CLOCK_BOOTTIME, and the timer sleeps on it.
    #[test]
    fn the_clock_is_boottime_and_a_deadline_ends_the_sleep() {
        let boottime = || {
            let t = clock_gettime(ClockId::Boottime);
            t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
        };
        let (before, now, after) = (boottime(), Clock::new().now(), boottime());
        assert!(before <= now && now <= after, "{before} {now} {after}");
        let wake = TimerWake::default();
        wake.create().unwrap();
        // Without a suspend the two clocks read alike: ask the kernel which one the
        // timer counts on (CLOCK_BOOTTIME is 7).
        use std::os::fd::AsRawFd;
        let fd = wake.timer.get().unwrap().as_raw_fd();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        assert!(
            info.lines()
                .any(|l| l.split_whitespace().eq(["clockid:", "7"])),
            "{info}"
        );
        let start = Clock.now();
        wake.sleep(start + 150, || u64::MAX).unwrap();
        assert!(
            Clock.now() >= start + 150,
            "woke {} ms early",
            start + 150 - Clock.now()
        );
    }

    /// `now` wakes a sleeping timer thread, and a wake that comes between the round
    /// over the peers and the sleep is not lost (the sleep arms its timer first, then
    /// looks for wakes).
    #[test]
    fn a_wake_ends_the_sleep_or_prevents_it() {
        let wake = Arc::new(TimerWake::default());
        wake.create().unwrap();
        let far = Clock.now() + 600_000;
        // Before the sleep: it must not start.
        wake.looking();
        wake.now();
        assert!(returns_soon(&wake, far, || u64::MAX, |_| {}));
        // During the sleep: activity with a later deadline does not wake it; an
        // earlier one does.
        wake.looking();
        assert!(returns_soon(
            &wake,
            far,
            || u64::MAX,
            |w| {
                w.before(far + 1);
                assert_eq!(w.sleeping_until.load(Ordering::SeqCst), far);
                w.before(far - 1);
            }
        ));
        // A deadline found earlier on the second look: no sleep either.
        wake.looking();
        assert!(returns_soon(&wake, far, move || far - 1, |_| {}));
        // And without any of these it does sleep.
        wake.looking();
        assert!(!returns_soon(&wake, far, || u64::MAX, |_| {}));
    }

    /// Run `wake.sleep(deadline, recheck)` in a thread, then `meanwhile` once the
    /// sleep is announced (or it returned); whether the sleep returned within 2 s
    /// after that. A sleep still going on is ended with `now`.
    fn returns_soon(
        wake: &Arc<TimerWake>,
        deadline: u64,
        recheck: impl FnOnce() -> u64 + Send + 'static,
        meanwhile: impl FnOnce(&TimerWake),
    ) -> bool {
        let sleeper = {
            let wake = wake.clone();
            std::thread::spawn(move || wake.sleep(deadline, recheck))
        };
        // The announcement (or the return) can take a while on a loaded machine.
        let announced = Instant::now() + Duration::from_secs(30);
        while wake.sleeping_until.load(Ordering::SeqCst) != deadline && !sleeper.is_finished() {
            assert!(Instant::now() < announced, "the sleep was never announced");
            std::thread::yield_now();
        }
        meanwhile(wake);
        let limit = Instant::now() + Duration::from_secs(2);
        while !sleeper.is_finished() && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        let returned = sleeper.is_finished();
        if !returned {
            wake.now();
        }
        sleeper.join().unwrap().unwrap();
        returned
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
