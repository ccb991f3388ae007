use proptest::prelude::*;

use super::*;

fn members(ids: &[String]) -> Vec<Member> {
    ids.iter()
        .map(|id| Member {
            id: id.clone(),
            weight: 1,
        })
        .collect()
}

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("127.0.0.1:8080 site.test /img/{i}.jpg?v={}", i * 7))
        .collect()
}

fn owner_id(ring: &Ring, key: &str) -> String {
    let i = ring.owner(key).expect("an owner");
    ring.members()[i].id.clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// A joining node takes about its share, from everyone, and nothing else moves.
    #[test]
    fn a_join_moves_only_keys_to_the_new_node(n in 1usize..12, salt in 0u32..1000) {
        let ids: Vec<String> = (0..n).map(|i| format!("node-{salt}-{i}")).collect();
        let before = Ring::new(members(&ids));
        let mut grown = ids.clone();
        grown.push(format!("node-{salt}-new"));
        let after = Ring::new(members(&grown));
        let keys = keys(40_000);
        let mut moved = 0;
        for k in &keys {
            let (a, b) = (owner_id(&before, k), owner_id(&after, k));
            if a != b {
                prop_assert_eq!(b, format!("node-{salt}-new"), "a key moved between old nodes");
                moved += 1;
            }
        }
        // The new node's share of 40,000 sampled keys varies by about 2% (relative
        // standard deviation, estimated: the sample's spread and the slots' together),
        // so 5% above fair is about 2.6 deviations, one case in some two hundred
        // (CI met n = 9, salt = 0 at +5.2%); 10% is five. The ring's balance itself is
        // held to 5% on 400,000 keys below.
        let fair = keys.len() as f64 / (n + 1) as f64;
        prop_assert!(moved as f64 <= 1.10 * fair, "moved {} > 1.10 x {}", moved, fair);
    }

    /// A leaving node's keys go to their runner-up; no key moves between the others.
    #[test]
    fn a_leave_moves_nothing_between_survivors(n in 2usize..12, salt in 0u32..1000, gone in 0usize..12) {
        let ids: Vec<String> = (0..n).map(|i| format!("node-{salt}-{i}")).collect();
        let gone = gone % n;
        let before = Ring::new(members(&ids));
        let mut left = ids.clone();
        let leaver = left.remove(gone);
        let after = Ring::new(members(&left));
        for k in keys(20_000) {
            let a = owner_id(&before, &k);
            let b = owner_id(&after, &k);
            if a == leaver {
                // The runner-up before is the owner now.
                let second = before.candidates(&k)[1];
                prop_assert_eq!(&before.members()[usize::from(second)].id, &b);
            } else {
                prop_assert_eq!(a, b);
            }
        }
    }
}

#[test]
fn keys_spread_within_five_percent_of_the_mean_for_up_to_16_nodes() {
    let keys = keys(400_000);
    for n in 2..=16 {
        let ids: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}")).collect();
        let ring = Ring::new(members(&ids));
        let mut count = vec![0usize; n];
        for k in &keys {
            count[ring.owner(k).expect("owner")] += 1;
        }
        let mean = keys.len() as f64 / n as f64;
        let max = *count.iter().max().expect("nodes") as f64;
        assert!(
            max / mean <= 1.05,
            "n={n}: max/mean {:.3} ({count:?})",
            max / mean
        );
    }
}

#[test]
fn weighted_shares_follow_the_weights_within_two_points() {
    let weights = [1u32, 2, 3, 4];
    let members: Vec<Member> = weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Member {
            id: format!("w{i}"),
            weight,
        })
        .collect();
    let ring = Ring::new(members);
    let keys = keys(400_000);
    let mut count = [0usize; 4];
    for k in &keys {
        count[ring.owner(k).expect("owner")] += 1;
    }
    let total: u32 = weights.iter().sum();
    for (i, &w) in weights.iter().enumerate() {
        let share = count[i] as f64 / keys.len() as f64;
        let want = f64::from(w) / f64::from(total);
        assert!(
            (share - want).abs() <= 0.02,
            "weight {w}: share {share:.4} vs {want:.4}"
        );
    }
}

#[test]
fn candidates_are_distinct_and_start_with_the_owner() {
    let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let ring = Ring::new(members(&ids));
    for k in keys(1000) {
        let c = ring.candidates(&k);
        assert_eq!(c.len(), 3);
        assert_eq!(Some(usize::from(c[0])), ring.owner(&k));
        assert!(c[0] != c[1] && c[1] != c[2] && c[0] != c[2], "{c:?}");
    }
    let alone = Ring::new(members(&ids[..1]));
    assert_eq!(alone.candidates("x"), &[0]);
}
