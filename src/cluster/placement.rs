//! Which live node should take a free site: pure, so every node computes the same answer from
//! the same view and the unit tests need no cluster.
//!
//! The least-loaded node with room first (sites held / capacity), ties broken by rendezvous
//! hashing of (site, node), so that two idle nodes split a config's sites between them rather
//! than racing for each. Views lag (a node's record is as old as its last heartbeat), so the
//! answer is a preference, not a lock: the lease's compare-and-set decides, and a site left free
//! past a grace period is taken by any node with room ([`should_take`]).

use std::time::Duration;

/// One live node as its heartbeat record describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLoad {
    pub name: String,
    /// Sites it may hold; `None` is no limit.
    pub capacity: Option<u32>,
    pub held: u32,
}

impl NodeLoad {
    pub fn has_room(&self) -> bool {
        self.capacity.is_none_or(|c| self.held < c)
    }

    /// Load as a fraction of capacity; an unlimited node counts its sites against a large
    /// capacity, so that among unlimited nodes the one holding fewer is less loaded.
    fn load(&self) -> f64 {
        f64::from(self.held) / f64::from(self.capacity.unwrap_or(1_000_000).max(1))
    }
}

/// FNV-1a 64: stable across builds and machines (std's hasher is not), which rendezvous
/// hashing needs: every node must rank the same way.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The rendezvous weight of `node` for `site`: the node with the highest weight wins a tie.
pub fn weight(site: &str, node: &str) -> u64 {
    fnv1a(&[site, node])
}

/// The node that should take `site` now: among the nodes with room, the least loaded, then the
/// highest rendezvous weight. `None` when no node has room.
pub fn preferred<'a>(site: &str, nodes: &'a [NodeLoad]) -> Option<&'a NodeLoad> {
    nodes.iter().filter(|n| n.has_room()).min_by(|a, b| {
        a.load()
            .total_cmp(&b.load())
            .then_with(|| weight(site, &b.name).cmp(&weight(site, &a.name)))
    })
}

/// Whether node `me` tries to take the free `site` now: it has room, and it is the preferred
/// node, or the site has been free for `grace` already (the preferred node is slow, dead with a
/// record not yet expired, or its view differs).
pub fn should_take(
    site: &str,
    me: &NodeLoad,
    others: &[NodeLoad],
    free_for: Duration,
    grace: Duration,
) -> bool {
    if !me.has_room() {
        return false;
    }
    if free_for >= grace {
        return true;
    }
    let mut all: Vec<NodeLoad> = others
        .iter()
        .filter(|n| n.name != me.name)
        .cloned()
        .collect();
    all.push(me.clone());
    preferred(site, &all).is_some_and(|n| n.name == me.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, capacity: Option<u32>, held: u32) -> NodeLoad {
        NodeLoad {
            name: name.into(),
            capacity,
            held,
        }
    }

    const G: Duration = Duration::from_secs(3);

    #[test]
    fn the_least_loaded_node_with_room_is_preferred() {
        let nodes = [n("a", Some(4), 3), n("b", Some(4), 1), n("c", Some(2), 2)];
        assert_eq!(preferred("s1", &nodes).map(|n| n.name.as_str()), Some("b"));
        // c is full: never preferred, whatever the hash says.
        for site in ["s1", "s2", "s3", "s4", "s5", "s6"] {
            assert_ne!(preferred(site, &nodes).map(|n| n.name.as_str()), Some("c"));
        }
        assert!(preferred("s1", &[n("a", Some(1), 1)]).is_none());
    }

    #[test]
    fn load_is_relative_to_capacity() {
        // 2 of 8 is less loaded than 1 of 2.
        let nodes = [n("big", Some(8), 2), n("small", Some(2), 1)];
        assert_eq!(preferred("x", &nodes).map(|n| n.name.as_str()), Some("big"));
    }

    #[test]
    fn equal_nodes_split_sites_by_rendezvous_and_agree() {
        let nodes = [n("n1", None, 0), n("n2", None, 0)];
        let sites: Vec<String> = (0..40).map(|i| format!("site{i}")).collect();
        let mut to_n1 = 0;
        for s in &sites {
            let p = preferred(s, &nodes).map(|n| n.name.clone());
            // The same answer whatever the order of the view.
            let rev = [nodes[1].clone(), nodes[0].clone()];
            assert_eq!(p, preferred(s, &rev).map(|n| n.name.clone()));
            // Exactly one of the two nodes decides to take it before the grace period.
            let a = should_take(s, &nodes[0], &nodes, Duration::ZERO, G);
            let b = should_take(s, &nodes[1], &nodes, Duration::ZERO, G);
            assert!(a ^ b, "{s}: n1 {a}, n2 {b}");
            to_n1 += usize::from(a);
        }
        assert!((10..=30).contains(&to_n1), "{to_n1} of 40 to n1");
    }

    #[test]
    fn after_the_grace_period_any_node_with_room_takes_it() {
        let me = n("me", Some(3), 2);
        let other = n("other", Some(10), 0);
        assert!(!should_take(
            "s",
            &me,
            std::slice::from_ref(&other),
            Duration::from_secs(1),
            G
        ));
        assert!(should_take("s", &me, &[other], G, G));
        let full = n("me", Some(3), 3);
        assert!(!should_take("s", &full, &[], G * 10, G));
    }

    #[test]
    fn the_hash_is_stable() {
        // Nodes built by different compilers must rank alike: pin one value.
        assert_eq!(weight("ampera", "n1"), fnv1a(&["ampera", "n1"]));
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(weight("a", "bc"), weight("ab", "c"));
    }
}
