//! Rate limits ([`Buckets`]) and the backoff of password and PIN guesses ([`LoginGuard`]).
//!
//! Times are Unix seconds passed in by the caller, so the desk's clock (which tests move
//! forward) drives them, and the rules are plain state machines a unit test steps through.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

/// Keys kept before idle ones are swept; past it, unknown keys are refused rather than let the
/// map grow without bound under an address-spraying flood.
const MAX_KEYS: usize = 100_000;

/// Token buckets per key (a client address, a phone number): `burst` requests at once, then
/// `per_hour` spread over the hour.
pub struct Buckets {
    rate_per_s: f64,
    burst: f64,
    max_keys: usize,
    map: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: i64,
}

impl Buckets {
    /// `per_hour` = 0 turns the limit off.
    pub fn per_hour(per_hour: u32, burst: u32) -> Self {
        Self::with_capacity(per_hour, burst, MAX_KEYS)
    }

    fn with_capacity(per_hour: u32, burst: u32, max_keys: usize) -> Self {
        Self {
            rate_per_s: f64::from(per_hour) / 3600.0,
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket; `Err(seconds)` until one is there.
    pub fn take(&self, key: &str, now: i64) -> Result<(), i64> {
        if self.rate_per_s <= 0.0 {
            return Ok(());
        }
        let mut map = self.map.lock();
        if !map.contains_key(key) && map.len() >= self.max_keys {
            let (rate, burst) = (self.rate_per_s, self.burst);
            map.retain(|_, b| b.tokens + (now - b.at).max(0) as f64 * rate < burst);
            if map.len() >= self.max_keys {
                return Err(60);
            }
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = (b.tokens + (now - b.at).max(0) as f64 * self.rate_per_s).min(self.burst);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - b.tokens) / self.rate_per_s).ceil() as i64).max(1))
        }
    }
}

/// How guesses of one secret (an account's password, a ticket's PIN) are slowed down.
///
/// Nothing here is a hard lock an attacker can trigger: each source of guesses backs off on its
/// own. A (account, client address) pair and a trusted device (a browser that signed in to the
/// account before) get `free_failures` tries, then wait 1, 2, 4 … s (at most `max_backoff_s`)
/// between tries. A client address failing on many accounts backs off the same way after
/// `client_free_failures`. An account failing from many untrusted sources slows down to one
/// untrusted try per `account_slowdown_s`, while its trusted devices keep their own count: the
/// real user, on a browser that signed in before, still gets in during a distributed attack.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub free_failures: u32,
    /// Failures older than this are forgotten.
    pub window_s: i64,
    pub max_backoff_s: i64,
    pub client_free_failures: u32,
    pub account_free_failures: u32,
    pub account_slowdown_s: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            window_s: 900,
            max_backoff_s: 900,
            client_free_failures: 30,
            account_free_failures: 20,
            account_slowdown_s: 10,
        }
    }
}

/// Failure times inside the window, oldest first.
type Fails = VecDeque<i64>;

#[derive(Default)]
struct State {
    pairs: HashMap<String, Fails>,
    clients: HashMap<String, Fails>,
    accounts: HashMap<String, Fails>,
    devices: HashMap<String, Fails>,
    /// When an account next takes a try from an untrusted source.
    slow: HashMap<String, i64>,
}

impl State {
    fn len(&self) -> usize {
        self.pairs.len()
            + self.clients.len()
            + self.accounts.len()
            + self.devices.len()
            + self.slow.len()
    }

    fn sweep(&mut self, now: i64, window_s: i64) {
        for m in [
            &mut self.pairs,
            &mut self.clients,
            &mut self.accounts,
            &mut self.devices,
        ] {
            m.retain(|_, f| {
                prune(f, now, window_s);
                !f.is_empty()
            });
        }
        self.slow.retain(|_, t| *t > now);
    }
}

fn prune(f: &mut Fails, now: i64, window_s: i64) {
    while f.front().is_some_and(|&t| t <= now - window_s) {
        f.pop_front();
    }
}

/// Seconds left before the next try, given `free` tries before backing off.
fn wait_of(f: Option<&mut Fails>, free: u32, p: &Policy, now: i64) -> i64 {
    let Some(f) = f else { return 0 };
    prune(f, now, p.window_s);
    let n = f.len() as u32;
    if n < free.max(1) {
        return 0;
    }
    let exp = (n - free.max(1)).min(30);
    let delay = (1i64 << exp).min(p.max_backoff_s.max(1));
    let last = f.back().copied().unwrap_or(now);
    (last + delay - now).max(0)
}

/// Which map a reserved failure went into.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Which {
    Pair,
    Client,
    Account,
    Device,
}

/// Counts guesses and says when the next one may be tried.
pub struct LoginGuard {
    policy: Policy,
    st: Mutex<State>,
}

/// A try that was let through. Its failure is already counted (before the secret is checked,
/// so parallel guesses cannot all pass the check); [`Attempt::succeeded`] takes it back.
#[must_use]
pub struct Attempt<'a> {
    guard: &'a LoginGuard,
    at: i64,
    keys: Vec<(Which, String)>,
}

impl LoginGuard {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            st: Mutex::new(State::default()),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A try on `account` from `client` (an address key, see [`super::client_key`]), from a
    /// trusted `device` when the client showed one for this account. `Err(seconds to wait)`
    /// when this source must wait; then nothing is counted and nothing need be checked.
    pub fn begin(
        &self,
        account: &str,
        client: &str,
        device: Option<&str>,
        now: i64,
    ) -> Result<Attempt<'_>, i64> {
        let p = &self.policy;
        let mut st = self.st.lock();
        if st.len() > MAX_KEYS {
            st.sweep(now, p.window_s);
        }
        let keys =
            match device {
                Some(d) => {
                    let key = format!("{account}\u{0}{d}");
                    let wait = wait_of(st.devices.get_mut(&key), p.free_failures, p, now);
                    if wait > 0 {
                        return Err(wait);
                    }
                    vec![(Which::Device, key)]
                }
                None => {
                    let pair = format!("{account}\u{0}{client}");
                    let wait = wait_of(st.pairs.get_mut(&pair), p.free_failures, p, now).max(
                        wait_of(st.clients.get_mut(client), p.client_free_failures, p, now),
                    );
                    if wait > 0 {
                        return Err(wait);
                    }
                    let busy = st.accounts.get_mut(account).is_some_and(|f| {
                        prune(f, now, p.window_s);
                        f.len() as u32 >= p.account_free_failures.max(1)
                    });
                    if busy {
                        let next = st.slow.get(account).copied().unwrap_or(now);
                        if next > now {
                            return Err(next - now);
                        }
                        st.slow
                            .insert(account.to_string(), now + p.account_slowdown_s.max(1));
                    }
                    vec![
                        (Which::Pair, pair),
                        (Which::Client, client.to_string()),
                        (Which::Account, account.to_string()),
                    ]
                }
            };
        for (w, k) in &keys {
            st.map(*w).entry(k.clone()).or_default().push_back(now);
        }
        Ok(Attempt {
            guard: self,
            at: now,
            keys,
        })
    }
}

impl State {
    fn map(&mut self, w: Which) -> &mut HashMap<String, Fails> {
        match w {
            Which::Pair => &mut self.pairs,
            Which::Client => &mut self.clients,
            Which::Account => &mut self.accounts,
            Which::Device => &mut self.devices,
        }
    }
}

impl Attempt<'_> {
    /// The secret was right: this source starts afresh, and its try no longer counts against
    /// the client or the account.
    pub fn succeeded(self) {
        let mut st = self.guard.st.lock();
        for (w, k) in &self.keys {
            match w {
                Which::Pair | Which::Device => {
                    st.map(*w).remove(k);
                }
                Which::Client | Which::Account => {
                    let map = st.map(*w);
                    if let Some(f) = map.get_mut(k) {
                        if let Some(i) = f.iter().rposition(|&t| t == self.at) {
                            f.remove(i);
                        }
                        if f.is_empty() {
                            map.remove(k);
                        }
                    }
                }
            }
        }
    }

    /// The secret was wrong (the failure was counted when the try began).
    pub fn failed(self) {}

    /// The secret could not be checked (the checkers were busy, a server fault): the try does
    /// not count either way.
    pub fn cancelled(self) {
        let mut st = self.guard.st.lock();
        for (w, k) in &self.keys {
            let map = st.map(*w);
            if let Some(f) = map.get_mut(k) {
                if let Some(i) = f.iter().rposition(|&t| t == self.at) {
                    f.remove(i);
                }
                if f.is_empty() {
                    map.remove(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_the_rate() {
        let b = Buckets::per_hour(3600, 3);
        let t = 1_000;
        for i in 0..3 {
            assert_eq!(b.take("a", t), Ok(()), "burst {i}");
        }
        assert_eq!(b.take("a", t), Err(1));
        assert_eq!(b.take("b", t), Ok(()), "another key has its own bucket");
        assert_eq!(b.take("a", t + 1), Ok(()), "one token a second");
        assert_eq!(b.take("a", t + 1), Err(1));
        assert_eq!(b.take("a", t + 100), Ok(()));
        let off = Buckets::per_hour(0, 1);
        for _ in 0..100 {
            assert_eq!(off.take("a", t), Ok(()));
        }
    }

    #[test]
    fn buckets_stay_bounded_under_spraying() {
        let b = Buckets::with_capacity(60, 1, 3);
        for k in ["a", "b", "c"] {
            assert_eq!(b.take(k, 0), Ok(()));
        }
        assert_eq!(
            b.take("d", 0),
            Err(60),
            "full of busy keys: a new one waits"
        );
        // Once the old keys' buckets have refilled they are swept for new ones.
        assert_eq!(b.take("d", 3600), Ok(()));
        assert!(b.map.lock().len() <= 3);
    }

    fn policy() -> Policy {
        Policy {
            free_failures: 3,
            window_s: 900,
            max_backoff_s: 60,
            client_free_failures: 10,
            account_free_failures: 6,
            account_slowdown_s: 10,
        }
    }

    #[test]
    fn a_pair_backs_off_exponentially_and_success_resets_it() {
        let g = LoginGuard::new(Policy {
            account_free_failures: 1000,
            client_free_failures: 1000,
            ..policy()
        });
        let t = 10_000;
        for _ in 0..3 {
            g.begin("admin", "ip1", None, t).unwrap().failed();
        }
        assert_eq!(g.begin("admin", "ip1", None, t).err(), Some(1));
        g.begin("admin", "ip1", None, t + 1).unwrap().failed();
        assert_eq!(g.begin("admin", "ip1", None, t + 1).err(), Some(2));
        g.begin("admin", "ip1", None, t + 3).unwrap().failed();
        assert_eq!(g.begin("admin", "ip1", None, t + 3).err(), Some(4));
        // Another client is not held back by this one.
        g.begin("admin", "ip2", None, t + 3).unwrap().succeeded();
        // The wait grows to the cap, never into a lock.
        let mut now = t + 7;
        for _ in 0..10 {
            match g.begin("admin", "ip1", None, now) {
                Ok(a) => a.failed(),
                Err(w) => {
                    assert!(w <= 60, "{w}");
                    now += w;
                }
            }
        }
        // A success starts the pair afresh.
        loop {
            match g.begin("admin", "ip1", None, now) {
                Ok(a) => break a.succeeded(),
                Err(w) => now += w,
            }
        }
        for _ in 0..3 {
            g.begin("admin", "ip1", None, now).unwrap().failed();
        }
        assert!(g.begin("admin", "ip1", None, now).is_err());
    }

    #[test]
    fn parallel_tries_are_counted_before_the_check() {
        let g = LoginGuard::new(policy());
        let t = 5;
        // Three tries begun at once (none finished): the fourth is already refused.
        let a: Vec<_> = (0..3)
            .map(|_| g.begin("op", "ip", None, t).unwrap())
            .collect();
        assert!(g.begin("op", "ip", None, t).is_err());
        // A try that could not be checked gives its place back.
        let mut a = a.into_iter();
        a.next().unwrap().cancelled();
        assert!(g.begin("op", "ip", None, t).is_ok());
    }

    #[test]
    fn a_distributed_attack_slows_the_account_but_not_its_trusted_device() {
        let g = LoginGuard::new(policy());
        let t = 100;
        for i in 0..6 {
            g.begin("admin", &format!("bot{i}"), None, t)
                .unwrap()
                .failed();
        }
        // The account is slowed for untrusted sources: one try per 10 s between them all.
        g.begin("admin", "bot9", None, t).unwrap().failed();
        assert_eq!(g.begin("admin", "bot10", None, t + 1).err(), Some(9));
        assert!(g.begin("admin", "bot11", None, t + 10).is_ok());
        // The real user's browser, trusted for this account, is not.
        for _ in 0..2 {
            g.begin("admin", "bot11", Some("dev-1"), t + 10)
                .unwrap()
                .failed();
        }
        g.begin("admin", "bot11", Some("dev-1"), t + 10)
            .unwrap()
            .succeeded();
        // A device backs off on its own count like a pair.
        for _ in 0..3 {
            g.begin("admin", "x", Some("dev-2"), t).unwrap().failed();
        }
        assert!(g.begin("admin", "x", Some("dev-2"), t).is_err());
        assert!(g.begin("admin", "x", Some("dev-1"), t).is_ok());
    }

    #[test]
    fn a_client_spraying_accounts_backs_off() {
        let g = LoginGuard::new(policy());
        for i in 0..10 {
            g.begin(&format!("user{i}"), "ip", None, 0)
                .unwrap()
                .failed();
        }
        assert!(g.begin("user99", "ip", None, 0).is_err());
        assert!(g.begin("user99", "other", None, 0).is_ok());
        // The window forgets.
        assert!(g.begin("user99", "ip", None, 901).is_ok());
    }
}
