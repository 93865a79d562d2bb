//! Maglev balance and disruption: numbers, not timings.
//!
//! - Disruption: remove (or add) one of N equal backends, M = 65537; the
//!   share of slots that change owner, split into the unavoidable part (the
//!   removed backend's slots) and churn among the survivors. Averaged over
//!   every choice of the removed backend for N ≤ 100, over 100 choices for
//!   N = 1000.
//! - Balance: for several weight mixes with M ≥ 100·N, each backend's share
//!   of slots against its share of weight.
//!
//! `cargo bench -p lb-bench --bench maglev_quality`

use lb_dataplane::programmer::backend_identity;
use lb_maglev::{Member, build};

const M: u32 = 65_537;

/// A name and the weight of backend `i`.
type WeightMix = (&'static str, fn(u32) -> u32);

/// Identities of `n` IPv4 backends, encoded as the controller encodes them.
fn identities(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| backend_identity(std::net::Ipv4Addr::from(0x0a00_0000 + i).into()))
        .collect()
}

/// (changed, unavoidable, churn) as fractions of M when backend `one`
/// leaves (`remove`) or joins the others.
fn disruption(ids: &[Vec<u8>], one: usize, remove: bool) -> (f64, f64, f64) {
    let all: Vec<Member<'_>> = ids.iter().map(|id| Member::new(id, 1)).collect();
    let rest: Vec<Member<'_>> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != one)
        .map(|(_, m)| *m)
        .collect();
    let with = build(&all, M).unwrap();
    // Indices of the smaller table, mapped to those of the full one.
    let without: Vec<u32> = build(&rest, M)
        .unwrap()
        .into_iter()
        .map(|i| if (i as usize) < one { i } else { i + 1 })
        .collect();
    let (before, after) = if remove {
        (&with, &without)
    } else {
        (&without, &with)
    };
    let (mut unavoidable, mut churn) = (0u32, 0u32);
    for (b, a) in before.iter().zip(after) {
        if *b as usize == one || *a as usize == one {
            unavoidable += 1;
        } else if b != a {
            churn += 1;
        }
    }
    let m = f64::from(M);
    (
        f64::from(unavoidable + churn) / m,
        f64::from(unavoidable) / m,
        f64::from(churn) / m,
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!("Disruption, M = {M}: share of slots that change owner");
    println!();
    println!("| N | event | changed | unavoidable | churn among survivors |");
    println!("|---:|---|---:|---:|---:|");
    for n in [10u32, 100, 1000] {
        let ids = identities(n);
        let trials: Vec<usize> = if n <= 100 {
            (0..n as usize).collect()
        } else {
            (0..n as usize).step_by(10).collect()
        };
        for (event, remove) in [("remove 1", true), ("add 1", false)] {
            let mut sum = (0.0, 0.0, 0.0);
            for &one in &trials {
                let (c, u, ch) = disruption(&ids, one, remove);
                sum = (sum.0 + c, sum.1 + u, sum.2 + ch);
            }
            let k = trials.len() as f64;
            println!(
                "| {n} | {event} | {:.2}% | {:.2}% | {:.2}% |",
                100.0 * sum.0 / k,
                100.0 * sum.1 / k,
                100.0 * sum.2 / k
            );
        }
    }

    println!();
    println!("Balance, M = {M}: slot share / weight share, worst backends");
    println!();
    println!("| N | weights | min | max | max/min | worst error, slots |");
    println!("|---:|---|---:|---:|---:|---:|");
    let mixes: [WeightMix; 3] = [
        ("all 1", |_| 1),
        ("1,2,3 repeating", |i| 1 + i % 3),
        ("1..=10", |i| 1 + i % 10),
    ];
    for n in [10u32, 100, 655] {
        let ids = identities(n);
        for (name, weight) in mixes {
            let members: Vec<Member<'_>> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| Member::new(id, weight(i as u32)))
                .collect();
            let table = build(&members, M).unwrap();
            let mut slots = vec![0u32; n as usize];
            for &owner in &table {
                slots[owner as usize] += 1;
            }
            let total_weight: u32 = members.iter().map(|m| m.weight).sum();
            let ratios: Vec<f64> = members
                .iter()
                .zip(&slots)
                .map(|(m, &s)| {
                    (f64::from(s) / f64::from(M)) / (f64::from(m.weight) / f64::from(total_weight))
                })
                .collect();
            let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let max = ratios.iter().copied().fold(0.0, f64::max);
            let worst = members
                .iter()
                .zip(&slots)
                .map(|(m, &s)| {
                    (f64::from(s) - f64::from(M) * f64::from(m.weight) / f64::from(total_weight))
                        .abs()
                })
                .fold(0.0, f64::max);
            println!(
                "| {n} | {name} | {min:.4} | {max:.4} | {:.4} | {worst:.2} |",
                max / min
            );
        }
    }
}
