use proptest::prelude::*;

use super::*;

fn identities(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("backend-{i}").into_bytes())
        .collect()
}

fn counts(table: &[u32], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for &m in table {
        c[m as usize] += 1;
    }
    c
}

#[test]
fn rejects_bad_sizes_and_members() {
    let ids = identities(3);
    let m: Vec<_> = ids.iter().map(|i| Member::new(i, 1)).collect();
    assert_eq!(
        build(&m, 65_536),
        Err(MaglevError::NotPrime { size: 65_536 })
    );
    assert_eq!(build(&m, 2), Err(MaglevError::SizeOutOfRange { size: 2 }));
    assert_eq!(
        build(&m[..3], 3).map(|t| t.len()),
        Ok(3),
        "N == M is allowed"
    );
    let four: Vec<_> = identities(4);
    let m4: Vec<_> = four.iter().map(|i| Member::new(i, 1)).collect();
    assert_eq!(
        build(&m4, 3),
        Err(MaglevError::TooManyMembers {
            members: 4,
            size: 3
        })
    );
    let dup = [
        Member::new(b"a", 1),
        Member::new(b"b", 1),
        Member::new(b"a", 2),
    ];
    assert_eq!(
        build(&dup, 13),
        Err(MaglevError::DuplicateMember {
            first: 0,
            second: 2
        })
    );
    let zero = [Member::new(b"a", 0), Member::new(b"b", 0)];
    assert_eq!(build(&zero, 13), Err(MaglevError::ZeroTotalWeight));
    assert_eq!(build(&[], 13), Err(MaglevError::ZeroTotalWeight));
    let heavy = [Member::new(b"a", MAX_WEIGHT + 1)];
    assert_eq!(
        build(&heavy, 13),
        Err(MaglevError::WeightTooLarge {
            index: 0,
            weight: MAX_WEIGHT + 1
        })
    );
}

#[test]
fn drained_member_owns_nothing() {
    let ids = identities(3);
    let m = [
        Member::new(&ids[0], 1),
        Member::new(&ids[1], 0),
        Member::new(&ids[2], 1),
    ];
    let table = build(&m, 251).unwrap();
    assert_eq!(counts(&table, 3)[1], 0);
}

#[test]
fn weights_are_proportional() {
    let ids = identities(3);
    let m = [
        Member::new(&ids[0], 1),
        Member::new(&ids[1], 2),
        Member::new(&ids[2], 3),
    ];
    let c = counts(&build(&m, 65_537).unwrap(), 3);
    // 65537 = 10922 rounds of 6 claims + 5 claims.
    assert_eq!(c.iter().sum::<usize>(), 65_537);
    for (i, w) in [1usize, 2, 3].iter().enumerate() {
        let ideal = 10_922 * w;
        assert!(c[i] >= ideal && c[i] <= ideal + w, "{c:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_slot_owned_and_equal_weights_balance(n in 1usize..40, size in prop::sample::select(vec![251u32, 1_021, 16_381])) {
        let ids = identities(n);
        let m: Vec<_> = ids.iter().map(|i| Member::new(i, 1)).collect();
        let table = build(&m, size).unwrap();
        prop_assert_eq!(table.len(), size as usize);
        let c = counts(&table, n);
        let floor = size as usize / n;
        for count in c {
            prop_assert!(count == floor || count == floor + 1);
        }
    }

    #[test]
    fn input_order_does_not_matter(n in 2usize..30, seed in any::<u64>()) {
        let ids = identities(n);
        let m: Vec<_> = ids.iter().enumerate().map(|(i, id)| Member::new(id, 1 + (i as u32 % 3))).collect();
        let table = build(&m, 1_021).unwrap();
        let mut perm: Vec<usize> = (0..n).collect();
        // A cheap deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..n).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            perm.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let shuffled: Vec<_> = perm.iter().map(|&i| m[i]).collect();
        let t2 = build(&shuffled, 1_021).unwrap();
        for (a, b) in table.iter().zip(&t2) {
            prop_assert_eq!(*a as usize, perm[*b as usize]);
        }
    }

    #[test]
    fn removal_moves_little_and_adding_back_restores(n in 3usize..60, gone in any::<prop::sample::Index>()) {
        let size = 16_381;
        let ids = identities(n);
        let all: Vec<_> = ids.iter().map(|i| Member::new(i, 1)).collect();
        let before = build(&all, size).unwrap();
        let gone = gone.index(n);
        let rest: Vec<_> = all.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, m)| *m).collect();
        let after = build(&rest, size).unwrap();
        let original = |i: u32| if (i as usize) < gone { i } else { i + 1 };
        let mut moved_survivors = 0usize;
        for (b, a) in before.iter().zip(&after) {
            if *b as usize != gone && *b != original(*a) {
                moved_survivors += 1;
            }
        }
        // Survivors keep nearly all their slots (Maglev's churn is small,
        // not zero).
        prop_assert!((moved_survivors as f64) < 0.05 * f64::from(size), "{moved_survivors}");
        let mut restored = rest.clone();
        restored.insert(gone, all[gone]);
        prop_assert_eq!(build(&restored, size).unwrap(), before);
    }
}
