use proptest::prelude::*;

use super::*;
use crate::end_game::{Barrett, mod_inverse};
use crate::fill::{BitMap, fill_with};
use crate::turn::gcd;

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
fn weights_are_proportional_within_one_slot() {
    let ids = identities(40);
    let weights: Vec<u32> = (0..40).map(|i| 1 + (i * 7) % 13).collect();
    let m: Vec<_> = ids
        .iter()
        .zip(&weights)
        .map(|(id, w)| Member::new(id, *w))
        .collect();
    let c = counts(&build(&m, 65_537).unwrap(), 40);
    assert_eq!(c.iter().sum::<usize>(), 65_537);
    let total: u32 = weights.iter().sum();
    for (count, w) in c.iter().zip(&weights) {
        let exact = 65_537.0 * f64::from(*w) / f64::from(total);
        // Within 1 + w/mean(w) slots; see the module docs.
        let bound = 1.0 + f64::from(*w) * 40.0 / f64::from(total);
        assert!(
            (*count as f64 - exact).abs() <= bound + 1e-9,
            "{count} vs {exact}"
        );
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

/// The algorithm as the paper states it: walk every list to the end, no
/// end game, occupancy in the table itself.
fn reference(members: &[Member<'_>], size: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| members[a].identity.cmp(members[b].identity));
    let divisor = members.iter().fold(0, |g, m| gcd(g, m.weight));
    let full = members.iter().map(|m| m.weight / divisor).max().unwrap();
    let mut state: Vec<(usize, u32, u32, u32, u32)> = order
        .into_iter()
        .filter(|&i| members[i].weight > 0)
        .map(|i| {
            let (offset, skip) = preference(members[i].identity, size, Seeds::default());
            (i, members[i].weight / divisor, 0, offset, skip)
        })
        .collect();
    let mut table = vec![u32::MAX; size as usize];
    let mut left = size;
    loop {
        for (member, weight, credit, next, skip) in &mut state {
            *credit += *weight;
            if *credit < full {
                continue;
            }
            *credit -= full;
            while table[*next as usize] != u32::MAX {
                *next = (*next + *skip) % size;
            }
            table[*next as usize] = *member as u32;
            *next = (*next + *skip) % size;
            left -= 1;
            if left == 0 {
                return table;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Walking several entries a step, either occupancy map and the end
    /// game are speed only: the table is the paper's.
    #[test]
    fn fast_fill_equals_the_paper(
        weights in prop::collection::vec(0u32..6, 1..60),
        size in prop::sample::select(vec![131u32, 257, 1_021, 16_381, 65_537]),
    ) {
        prop_assume!(weights.iter().any(|&w| w > 0) && weights.len() <= size as usize);
        let ids = identities(weights.len());
        let m: Vec<_> = ids.iter().zip(&weights).map(|(id, w)| Member::new(id, *w)).collect();
        let paper = reference(&m, size);
        prop_assert_eq!(&build(&m, size).unwrap(), &paper);
        let mut turns = turn_order(&m, size, Seeds::default()).unwrap();
        let bits = BitMap(vec![0; size.div_ceil(64) as usize]);
        prop_assert_eq!(&fill_with(&mut turns, size, bits), &paper);
    }
}

#[test]
fn modular_inverse() {
    for a in [1u32, 2, 3, 1000, 65_536] {
        assert_eq!(u64::from(a) * mod_inverse(a, 65_537) % 65_537, 1);
    }
}

/// FNV-1a (64-bit) over the table's entries as little-endian u32s: a digest
/// for the golden vectors below.
fn digest(table: &[u32]) -> u64 {
    table
        .iter()
        .flat_map(|e| e.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

fn ipv4_identity(i: u32) -> Vec<u8> {
    let mut id = vec![4u8];
    id.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
    id
}

// Golden vectors. A change to any of these changes which backend every
// node picks for existing flows: it must be deliberate, and released to a
// whole fleet at once.
#[test]
fn golden_small_table() {
    let m = [
        Member::new(b"a", 1),
        Member::new(b"b", 1),
        Member::new(b"c", 1),
    ];
    assert_eq!(build(&m, 13).unwrap(), GOLDEN_SMALL);
}

const GOLDEN_SMALL: [u32; 13] = [2, 2, 1, 1, 1, 1, 2, 0, 0, 0, 0, 0, 2];

#[test]
fn golden_digests() {
    let ten: Vec<Vec<u8>> = (0..10).map(ipv4_identity).collect();
    let ten: Vec<_> = ten.iter().map(|id| Member::new(id, 1)).collect();
    let mixed_ids: Vec<Vec<u8>> = (0..24)
        .map(|i| {
            if i % 2 == 0 {
                ipv4_identity(i)
            } else {
                let mut id = vec![6u8, 0x20, 0x01, 0x0d, 0xb8];
                id.extend_from_slice(&[0; 7]);
                id.extend_from_slice(&i.to_be_bytes());
                id
            }
        })
        .collect();
    let mixed: Vec<_> = mixed_ids
        .iter()
        .enumerate()
        .map(|(i, id)| Member::new(id, i as u32 % 5))
        .collect();
    let thousand: Vec<Vec<u8>> = (0..1000).map(ipv4_identity).collect();
    let thousand: Vec<_> = thousand.iter().map(|id| Member::new(id, 1)).collect();
    let seeded = build_seeded(&ten, 16_381, Seeds { offset: 1, skip: 2 }).unwrap();
    let got = [
        digest(&build(&ten, 65_537).unwrap()),
        digest(&build(&mixed, 16_381).unwrap()),
        digest(&build(&thousand, 655_373).unwrap()),
        digest(&seeded),
    ];
    assert_eq!(got, GOLDEN_DIGESTS, "{got:#x?}");
}

const GOLDEN_DIGESTS: [u64; 4] = [
    0x11c8_d7f4_19b6_1c13,
    0x2ce3_bf9b_02a8_0347,
    0x14b3_c186_5220_2b6a,
    0xf37c_a91d_34cd_2845,
];

#[test]
fn barrett_matches_division() {
    for m in [3u32, 13, 65_537, 655_373, 16_777_213] {
        let b = Barrett::new(m);
        for x in [
            0u64,
            1,
            u64::from(m) - 1,
            u64::from(m),
            1 << 40,
            u64::from(m) * u64::from(m) - 1,
            u64::MAX,
        ] {
            assert_eq!(b.rem(x), x % u64::from(m), "{x} mod {m}");
        }
    }
}
