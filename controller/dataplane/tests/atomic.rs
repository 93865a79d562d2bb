//! A VIP switched back and forth between two complete configs while
//! packets run: every packet must come out exactly as the model says for
//! one config or the other — never a mix, never a drop.

mod common;

use std::{
    collections::HashSet,
    sync::atomic::{AtomicBool, Ordering},
};

use common::*;
use lb_abi::vip::flags;
use lb_dataplane::{Dataplane, LoadOptions, ProgramKind, Protocol, VipConfig};
use lb_model::{Action, Model};

const VIP: &str = "10.0.0.100";
const SWITCHES: usize = 200;
const FLOWS: u16 = 512;

fn config_a() -> VipConfig {
    vip(
        VIP,
        80,
        Protocol::Tcp,
        &[
            ("10.1.0.1", 1),
            ("10.1.0.2", 2),
            ("10.1.0.3", 1),
            ("10.1.9.9", 1),
        ],
    )
}

fn config_b() -> VipConfig {
    let mut b = vip(
        VIP,
        80,
        Protocol::Tcp,
        &[
            ("2001:db8:b::1", 1),
            ("2001:db8:b::2", 1),
            ("10.2.0.3", 3),
            ("10.1.9.9", 1),
        ],
    );
    b.flags = flags::HASH_SRC_ONLY;
    b
}

#[test]
fn packets_see_the_old_config_or_the_new_one_never_a_mix() {
    switch_under_traffic(dataplane(1021));
}

/// With room for one VIP there are two ring slots: every other switch must
/// reuse the slot the VIP just left, after a reader barrier.
#[test]
fn a_reused_ring_slot_is_never_seen_half_written() {
    let options = LoadOptions {
        max_vips: 1,
        ..small_options(1021)
    };
    let mut dp = Dataplane::load(&options).expect("load dataplane (run as root)");
    dp.programmer().set_node(&node()).unwrap();
    switch_under_traffic(dp);
}

/// The rings the maps hold are the rings the programmer says it wrote.
#[test]
fn rings_read_back_from_the_map_equal_the_programmed_ones() {
    let mut dp = dataplane(1021);
    for config in [config_a(), config_b(), config_a()] {
        dp.programmer().upsert_vip(&config).unwrap();
        let key = config.key();
        let programmed = dp.programmer().state().vips[&key].ring.clone().unwrap();
        assert_eq!(dp.programmer().ring_in_map(&key).unwrap(), &programmed[..]);
    }
}

fn switch_under_traffic(mut dp: Dataplane) {
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            let src = format!("192.0.{}.{}", 2 + i / 200, 1 + i % 200);
            tcp(&src, 10_000 + i, VIP, 80, Tcp::Syn, b"atomic")
        })
        .collect();

    // The expected bytes of every frame under each config.
    let expect = |dp: &mut lb_dataplane::Dataplane, config: &VipConfig| -> Vec<Vec<u8>> {
        dp.programmer().upsert_vip(config).unwrap();
        let mut model = Model::new(dp.programmer().state().clone());
        frames
            .iter()
            .map(|f| {
                let o = model.process(f);
                assert_eq!(o.action, Action::Tx);
                o.frame
            })
            .collect()
    };
    let under_b = expect(&mut dp, &config_b());
    let under_a = expect(&mut dp, &config_a());
    let differing = under_a.iter().zip(&under_b).filter(|(a, b)| a != b).count();
    assert!(
        differing > usize::from(FLOWS) / 2,
        "the configs must disagree on most flows"
    );

    let done = AtomicBool::new(false);
    let (runner, programmer) = dp.split(ProgramKind::Balancer).unwrap();
    let (seen, runs) = std::thread::scope(|s| {
        let packets = s.spawn(|| {
            let mut seen = HashSet::new();
            let mut runs = 0usize;
            while !done.load(Ordering::Relaxed) {
                for (i, f) in frames.iter().enumerate() {
                    let out = runner.run(f).unwrap();
                    assert_eq!(out.action, Action::Tx.code(), "frame {i} not sent");
                    let which = if out.frame == under_a[i] {
                        'a'
                    } else if out.frame == under_b[i] {
                        'b'
                    } else {
                        panic!("frame {i} matches neither config: {:02x?}", out.frame);
                    };
                    seen.insert(which);
                    runs += 1;
                }
            }
            (seen, runs)
        });
        for n in 0..SWITCHES {
            let config = if n % 2 == 0 { config_b() } else { config_a() };
            programmer.upsert_vip(&config).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        packets.join().unwrap()
    });
    assert_eq!(seen.len(), 2, "both configs were observed ({runs} packets)");
    let stats = dp.programmer().stats().unwrap();
    assert_eq!(stats.drops(), 0);
}

/// Node settings switched back and forth under traffic: each frame leaves
/// with the whole old settings or the whole new ones (gateway MAC, source
/// MAC, TTL, outer source), never a mix.
#[test]
fn node_settings_change_atomically_for_packets() {
    let mut dp = dataplane(1021);
    dp.programmer().upsert_vip(&config_a()).unwrap();
    let node_b = lb_dataplane::NodeConfig {
        gateway_mac: [0x02, 0, 0, 0, 0xbb, 0xbb],
        interface_mac: [0x02, 0, 0, 0, 0xcc, 0xcc],
        outer_ttl: 9,
        outer_source_v4: "10.250.0.0".parse().unwrap(),
        ..node()
    };
    let frames: Vec<Vec<u8>> = (0..64u16)
        .map(|i| tcp("192.0.2.7", 20_000 + i, VIP, 80, Tcp::Syn, b"node"))
        .collect();
    let expect = |dp: &mut Dataplane, n: &lb_dataplane::NodeConfig| -> Vec<Vec<u8>> {
        dp.programmer().set_node(n).unwrap();
        let mut model = Model::new(dp.programmer().state().clone());
        frames.iter().map(|f| model.process(f).frame).collect()
    };
    let under_b = expect(&mut dp, &node_b);
    let under_a = expect(&mut dp, &node());
    let done = AtomicBool::new(false);
    let (runner, programmer) = dp.split(ProgramKind::Balancer).unwrap();
    let seen = std::thread::scope(|s| {
        let packets = s.spawn(|| {
            let mut seen = HashSet::new();
            while !done.load(Ordering::Relaxed) {
                for (i, f) in frames.iter().enumerate() {
                    let out = runner.run(f).unwrap().frame;
                    let which = if out == under_a[i] {
                        'a'
                    } else if out == under_b[i] {
                        'b'
                    } else {
                        panic!("frame {i} matches neither setting: {out:02x?}");
                    };
                    seen.insert(which);
                }
            }
            seen
        });
        // For a second, not a count: an in-place write would be torn only
        // while a packet reads it, so a broken writer must get as many
        // chances as its speed allows.
        let started = std::time::Instant::now();
        let mut n = 0u32;
        while started.elapsed() < std::time::Duration::from_secs(1) && n < 1_000_000 {
            let settings = if n.is_multiple_of(2) {
                node_b.clone()
            } else {
                node()
            };
            programmer.set_node(&settings).unwrap();
            n += 1;
        }
        done.store(true, Ordering::Relaxed);
        packets.join().unwrap()
    });
    assert_eq!(seen.len(), 2, "both settings were observed");
}
