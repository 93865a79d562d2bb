//! `Programmer::apply`: a batch checked whole, unchanged VIPs left alone,
//! and what it programs equal to what the model says.

mod common;

use common::*;
use lb_dataplane::{Batch, Dataplane, DataplaneError, LoadOptions, Protocol};
use lb_model::{Action, Model};

#[test]
fn a_batch_with_one_bad_vip_is_refused_whole_and_names_it() {
    let mut dp = dataplane(251);
    let running = vip("10.0.0.1", 80, Protocol::Tcp, &[("10.1.0.1", 1)]);
    dp.programmer().upsert_vip(&running).unwrap();
    let before = dp.programmer().state().clone();

    let mut replaced = running.clone();
    replaced.backends[0].weight = 5;
    let fresh = vip("10.0.0.2", 80, Protocol::Tcp, &[("10.1.0.2", 1)]);
    let bad = vip("10.0.0.3", 53, Protocol::Udp, &[("10.1.0.3", 70_000)]);
    let batch = Batch {
        upserts: vec![replaced, fresh, bad],
        ..Batch::default()
    };
    let Err(DataplaneError::Rejected(rejections)) = dp.programmer().apply(&batch) else {
        panic!("the batch must be refused");
    };
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(rejections[0].subject, "VIP 10.0.0.3:53/udp");
    assert_eq!(rejections[0].error.field, "backends[0].weight");
    assert_eq!(dp.programmer().state(), before, "nothing was written");
}

#[test]
fn an_unchanged_vip_costs_no_map_write_and_the_rest_go_live() {
    let mut dp = dataplane(251);
    let a = vip(
        "10.0.0.1",
        80,
        Protocol::Tcp,
        &[("10.1.0.1", 1), ("10.1.0.2", 1)],
    );
    let b = vip("10.0.0.2", 80, Protocol::Tcp, &[("10.1.0.3", 1)]);
    dp.programmer()
        .apply(&Batch {
            upserts: vec![a.clone(), b.clone()],
            ..Batch::default()
        })
        .unwrap();
    let slot_of =
        |dp: &mut lb_dataplane::Dataplane, key| dp.programmer().state().vips[&key].ring_slot;
    let a_slot = slot_of(&mut dp, a.key());

    let mut b2 = b.clone();
    b2.backends.push(lb_dataplane::BackendConfig {
        address: "10.1.0.4".parse().unwrap(),
        weight: 1,
    });
    let c = vip("2001:db8::1", 443, Protocol::Tcp, &[("2001:db8:b::1", 1)]);
    dp.programmer()
        .apply(&Batch {
            upserts: vec![a.clone(), b2, c],
            removals: vec![],
            node: None,
        })
        .unwrap();
    assert_eq!(
        slot_of(&mut dp, a.key()),
        a_slot,
        "an unchanged VIP keeps its ring"
    );

    let mut model = Model::new(dp.programmer().state().clone());
    for (src, dst, port) in [
        ("192.0.2.1", "10.0.0.1", 80),
        ("192.0.2.2", "10.0.0.2", 80),
        ("2001:db8:c::1", "2001:db8::1", 443),
    ] {
        let (_, outcome) = check(&dp, &mut model, &tcp(src, 1234, dst, port, Tcp::Syn, b"x"));
        assert_eq!(outcome.action, Action::Tx, "{dst}");
    }
}

#[test]
fn no_vip_is_programmed_before_node_settings() {
    let mut dp = lb_dataplane::Dataplane::load(&small_options(251)).unwrap();
    let config = vip("10.0.0.1", 80, Protocol::Tcp, &[("10.1.0.1", 1)]);
    let Err(DataplaneError::Rejected(rejections)) = dp.programmer().upsert_vip(&config) else {
        panic!("a VIP before node settings must be refused");
    };
    assert_eq!(rejections[0].error.field, "node");
    dp.programmer()
        .apply(&Batch {
            node: Some(node()),
            upserts: vec![config],
            removals: vec![],
        })
        .unwrap();
}

#[test]
fn sizes_that_cannot_be_had_are_refused_at_load_naming_the_size() {
    // About 650 GB of flow table: more than any test machine has.
    let options = LoadOptions {
        flow_table_entries: u32::MAX,
        ..small_options(251)
    };
    let Err(error) = Dataplane::load(&options) else {
        panic!("a flow table of 2^32 entries loaded");
    };
    let message = error.to_string();
    assert!(
        matches!(
            error,
            DataplaneError::TooLarge {
                field: "flow_table_entries",
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.starts_with("flow_table_entries = 4294967295"),
        "{message}"
    );
    assert!(message.contains("MiB available"), "{message}");
}
