//! `Programmer::read_back` against the programmer it reads: after random
//! batches — including batches refused for room and batches whose n-th
//! map write fails in the kernel — a programmer rebuilt from the maps alone
//! knows what the original knows, and a failed batch leaves the old state
//! in force, in the bookkeeping and in the maps.

mod common;

use common::*;
use lb_abi::{
    backend::RETIRED,
    vip::{VipKey, flags},
};
use lb_dataplane::{
    BackendConfig, Batch, Dataplane, DataplaneError, LoadOptions, NodeConfig, Programmer, Protocol,
    VipConfig, programmer::Snapshot,
};
use lb_model::DataplaneState;

const VIP_ADDRESSES: [&str; 5] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "2001:db8::1",
    "2001:db8::2",
];

fn random_config(rng: &mut Rng) -> VipConfig {
    let address = VIP_ADDRESSES[rng.below(5) as usize];
    let v6 = address.contains(':');
    let mut backends: Vec<BackendConfig> = Vec::new();
    for _ in 0..rng.below(7) {
        let host = rng.below(12) + 1;
        let address = if v6 || rng.below(2) == 0 {
            format!("2001:db8:b::{host}")
        } else {
            format!("10.9.0.{host}")
        }
        .parse()
        .unwrap();
        if backends.iter().all(|b| b.address != address) {
            backends.push(BackendConfig {
                address,
                weight: rng.below(4) as u32,
            });
        }
    }
    VipConfig {
        address: address.parse().unwrap(),
        port: [80, 443, 0][rng.below(3) as usize],
        protocol: if rng.below(2) == 0 {
            Protocol::Tcp
        } else {
            Protocol::Udp
        },
        flags: [
            0,
            flags::HASH_SRC_ONLY,
            flags::NO_FLOW_TABLE,
            flags::OPEN_ADDRESS | flags::PASS_ECHO,
        ][rng.below(4) as usize],
        new_flows_per_cpu_per_sec: [None, Some(0), Some(5_000)][rng.below(3) as usize],
        backends,
        revision: rng.below(1000),
    }
}

fn random_batch(rng: &mut Rng, programmed: &[VipKey]) -> Batch {
    let mut batch = Batch::default();
    if rng.below(8) == 0 {
        batch.node = Some(NodeConfig {
            mtu: 1280 + rng.below(8) as u16 * 10,
            ..node()
        });
    }
    for _ in 0..rng.below(4) {
        let config = random_config(rng);
        batch.upserts.retain(|c| c.key() != config.key());
        batch.upserts.push(config);
    }
    for _ in 0..rng.below(3) {
        if programmed.is_empty() {
            break;
        }
        let key = programmed[rng.below(programmed.len() as u64) as usize];
        if !batch.removals.contains(&key) && batch.upserts.iter().all(|c| c.key() != key) {
            batch.removals.push(key);
        }
    }
    batch
}

/// Tight tables: batches get refused for room and ids recycle.
fn tight_dataplane() -> Dataplane {
    Dataplane::load(&LoadOptions {
        max_vips: 8,
        max_backends: 40,
        ..small_options(251)
    })
    .expect("load dataplane (run as root)")
}

/// The programmed VIPs' keys in a fixed order, so a seeded run replays.
fn programmed(programmer: &Programmer) -> Vec<VipKey> {
    let mut keys: Vec<VipKey> = programmer.vips().map(VipConfig::key).collect();
    keys.sort_by_key(|k| (k.family, k.addr, k.port, k.proto));
    keys
}

/// The state in force: a batch that needs room may pay the reader barrier
/// before it fails, which frees what was retired (and bumps nothing else).
fn in_force(s: &Snapshot) -> Snapshot {
    Snapshot {
        retired_backends: Default::default(),
        ..s.clone()
    }
}

/// The model's state without backends no VIP has (retired ones).
fn live(mut state: DataplaneState) -> DataplaneState {
    let ids: Vec<u32> = state
        .vips
        .values()
        .filter_map(|v| v.ring.as_ref())
        .flat_map(|r| r.iter().copied())
        .collect();
    state
        .backends
        .retain(|id, b| ids.contains(id) || b.generation & RETIRED == 0);
    state
}

#[test]
fn read_back_equals_the_programmer_after_random_batches_and_failures() {
    let mut dp = tight_dataplane();
    let programmer = dp.programmer();
    programmer.set_node(&node()).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut injected, mut full, mut applied) = (0, 0, 0);
    for round in 0..400 {
        let batch = random_batch(&mut rng, &programmed(programmer));
        let before = programmer.snapshot();
        let before_state = programmer.state();
        let inject = rng.below(3) == 0;
        if inject {
            programmer.fail_write(rng.below(40) as usize);
        }
        match programmer.apply(&batch) {
            Ok(()) => applied += 1,
            Err(DataplaneError::Injected) => {
                injected += 1;
                let (now, now_state) = (programmer.snapshot(), programmer.state());
                assert_eq!(
                    in_force(&now),
                    in_force(&before),
                    "round {round}: bookkeeping"
                );
                assert_eq!(live(now_state), live(before_state), "round {round}: maps");
            }
            Err(DataplaneError::Full { .. }) => {
                full += 1;
                assert_eq!(
                    in_force(&programmer.snapshot()),
                    in_force(&before),
                    "round {round}: refused"
                );
            }
            Err(e) => panic!("round {round}: {e}"),
        }
        if rng.below(10) == 0 {
            programmer.wait_for_readers().unwrap();
        }
        let read = programmer.read_back().unwrap();
        assert_eq!(read.snapshot(), programmer.snapshot(), "round {round}");
        // What the model sees, from the maps alone: rings included.
        assert_eq!(read.state(), programmer.state(), "round {round}");
    }
    assert!(
        injected > 40 && full > 10 && applied > 150,
        "the mix was not exercised: {injected} injected, {full} full, {applied} applied"
    );
}

#[test]
fn an_adopted_programmer_continues_past_every_mark() {
    let mut dp = tight_dataplane();
    let original = dp.programmer();
    original.set_node(&node()).unwrap();
    let mut rng = Rng(7);
    for _ in 0..60 {
        let batch = random_batch(&mut rng, &programmed(original));
        let _ = original.apply(&batch);
    }
    let before = original.snapshot();
    let mut adopted = original.read_back().unwrap();
    for _ in 0..60 {
        let batch = random_batch(&mut rng, &programmed(&adopted));
        let _ = adopted.apply(&batch);
        assert_eq!(adopted.read_back().unwrap().snapshot(), adopted.snapshot());
    }
    let after = adopted.snapshot();
    assert!(after.last_backend_generation > before.last_backend_generation);
    // Every id is one from before with its generation, or got one past
    // the mark: generations continued, so no pair repeats.
    let old: Vec<(u32, u32)> = before
        .vips
        .values()
        .flat_map(|p| p.ids.iter().map(|i| (i.id, i.generation)))
        .collect();
    let mut fresh = 0;
    for id in after.vips.values().flat_map(|p| &p.ids) {
        if id.generation > before.last_backend_generation {
            fresh += 1;
        } else {
            assert!(old.contains(&(id.id, id.generation)), "{id:?} repeats");
        }
    }
    assert!(fresh > 0, "no id was handed out after adoption");
}
