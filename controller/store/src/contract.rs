//! The store contract as tests: every store runs [`run`] on fresh,
//! empty instances. Each case panics with what broke.

use crate::{Compare, Event, MAX_REQUEST_BYTES, MAX_TXN_OPS, Op, Store, StoreError, Txn};

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn del(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

async fn write<S: Store>(store: &S, ops: Vec<Op>) -> u64 {
    let outcome = store
        .txn(Txn {
            compares: vec![],
            ops,
        })
        .await
        .expect("write");
    assert!(outcome.succeeded);
    outcome.revision
}

/// Runs every case, each on a store from `fresh`.
pub async fn run<S: Store, F: AsyncFn() -> S>(fresh: F) {
    revisions_count_writes(&fresh().await).await;
    listings_at_older_revisions_show_that_state(&fresh().await).await;
    watches_deliver_every_event_in_order_with_the_previous_value(&fresh().await).await;
    compare_and_swap_on_mod_revision(&fresh().await).await;
    transactions_are_all_or_nothing(&fresh().await).await;
    transactions_have_etcds_limits(&fresh().await).await;
}

pub async fn revisions_count_writes<S: Store>(store: &S) {
    assert_eq!(store.revision().await.unwrap(), 0, "an empty store");
    assert_eq!(write(store, vec![put("/a", "1")]).await, 1);
    assert_eq!(write(store, vec![put("/a", "2"), put("/b", "1")]).await, 2);
    // A delete of a key that is not there changes nothing.
    assert_eq!(write(store, vec![del("/nothing")]).await, 2);
    let listing = store.list("/", None).await.unwrap();
    assert_eq!(listing.revision, 2);
    let a = &listing.kvs[0];
    assert_eq!(
        (
            a.key.as_str(),
            a.value.as_slice(),
            a.create_revision,
            a.mod_revision,
            a.version
        ),
        ("/a", b"2".as_slice(), 1, 2, 2)
    );
    let b = &listing.kvs[1];
    assert_eq!((b.create_revision, b.mod_revision, b.version), (2, 2, 1));
    // A key created again starts over.
    write(store, vec![del("/a")]).await;
    write(store, vec![put("/a", "3")]).await;
    let a = store.list("/a", None).await.unwrap().kvs.remove(0);
    assert_eq!((a.create_revision, a.mod_revision, a.version), (4, 4, 1));
}

pub async fn listings_at_older_revisions_show_that_state<S: Store>(store: &S) {
    write(store, vec![put("/vips/a", "a1"), put("/vips/b", "b1")]).await; // 1
    write(store, vec![put("/vips/a", "a2"), put("/other", "x")]).await; // 2
    write(store, vec![del("/vips/b")]).await; // 3
    write(store, vec![put("/vips/c", "c1")]).await; // 4
    let values = |l: crate::Listing| {
        l.kvs
            .into_iter()
            .map(|kv| {
                (
                    kv.key,
                    String::from_utf8(kv.value).unwrap(),
                    kv.mod_revision,
                )
            })
            .collect::<Vec<_>>()
    };
    let at = |r| async move { values(store.list("/vips/", Some(r)).await.unwrap()) };
    assert_eq!(
        at(1).await,
        [
            ("/vips/a".into(), "a1".into(), 1),
            ("/vips/b".into(), "b1".into(), 1)
        ]
    );
    assert_eq!(
        at(2).await,
        [
            ("/vips/a".into(), "a2".into(), 2),
            ("/vips/b".into(), "b1".into(), 1)
        ]
    );
    assert_eq!(at(3).await, [("/vips/a".into(), "a2".into(), 2)]);
    assert_eq!(
        at(4).await,
        [
            ("/vips/a".into(), "a2".into(), 2),
            ("/vips/c".into(), "c1".into(), 4)
        ]
    );
    assert_eq!(
        values(store.list("/vips/", None).await.unwrap()),
        at(4).await
    );
    assert!(at(0).await.is_empty());
    assert!(matches!(
        store.list("/vips/", Some(5)).await,
        Err(StoreError::FutureRevision {
            requested: 5,
            current: 4
        })
    ));
}

pub async fn watches_deliver_every_event_in_order_with_the_previous_value<S: Store>(store: &S) {
    write(store, vec![put("/vips/a", "a1")]).await; // 1
    // From an older revision: history first, then what follows.
    let mut from_start = store.watch("/vips/", 1).await.unwrap();
    // From now on (0): only what follows.
    let mut from_now = store.watch("/vips/", 0).await.unwrap();
    write(store, vec![put("/vips/a", "a2"), put("/elsewhere", "x")]).await; // 2
    write(store, vec![del("/vips/a"), put("/vips/b", "b1")]).await; // 3
    let next = async |w: &mut crate::Watch| {
        tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
            .await
            .expect("an event within 5 s")
            .expect("the watch is open")
            .expect("no error")
    };
    let e = next(&mut from_start).await;
    assert!(
        matches!(&e, Event::Put { kv, prev: None } if kv.key == "/vips/a" && kv.mod_revision == 1),
        "{e:?}"
    );
    for w in [&mut from_start, &mut from_now] {
        let e = next(w).await;
        assert!(
            matches!(&e, Event::Put { kv, prev: Some(p) } if kv.value == b"a2" && p.value == b"a1" && kv.mod_revision == 2),
            "{e:?}"
        );
        let e = next(w).await;
        assert!(
            matches!(&e, Event::Delete { key, revision: 3, prev } if key == "/vips/a" && prev.value == b"a2"),
            "{e:?}"
        );
        let e = next(w).await;
        assert!(
            matches!(&e, Event::Put { kv, prev: None } if kv.key == "/vips/b"),
            "{e:?}"
        );
    }
}

pub async fn compare_and_swap_on_mod_revision<S: Store>(store: &S) {
    let cas = |key: &str, mod_revision, op| Txn {
        compares: vec![Compare {
            key: key.into(),
            mod_revision,
        }],
        ops: vec![op],
    };
    // Create only if absent (mod_revision 0).
    let created = store.txn(cas("/k", 0, put("/k", "1"))).await.unwrap();
    assert!(created.succeeded);
    let again = store.txn(cas("/k", 0, put("/k", "x"))).await.unwrap();
    assert!(!again.succeeded, "a second create must fail");
    assert_eq!(
        again.revision, created.revision,
        "a failed compare writes nothing"
    );
    // Update only the version read.
    let stale = store
        .txn(cas("/k", created.revision + 7, put("/k", "x")))
        .await
        .unwrap();
    assert!(!stale.succeeded);
    let updated = store
        .txn(cas("/k", created.revision, put("/k", "2")))
        .await
        .unwrap();
    assert!(updated.succeeded);
    // Delete only the version read.
    assert!(
        !store
            .txn(cas("/k", created.revision, del("/k")))
            .await
            .unwrap()
            .succeeded
    );
    assert!(
        store
            .txn(cas("/k", updated.revision, del("/k")))
            .await
            .unwrap()
            .succeeded
    );
    assert!(store.list("/k", None).await.unwrap().kvs.is_empty());
}

pub async fn transactions_are_all_or_nothing<S: Store>(store: &S) {
    let r = write(store, vec![put("/a", "1")]).await;
    let failed = store
        .txn(Txn {
            compares: vec![
                Compare {
                    key: "/a".into(),
                    mod_revision: r,
                },
                Compare {
                    key: "/b".into(),
                    mod_revision: 99,
                },
            ],
            ops: vec![put("/a", "2"), put("/c", "1")],
        })
        .await
        .unwrap();
    assert!(!failed.succeeded);
    let listing = store.list("/", None).await.unwrap();
    assert_eq!(
        listing.kvs.len(),
        1,
        "nothing of a failed transaction is written"
    );
    assert_eq!(listing.kvs[0].value, b"1");
    // Every write of a transaction shares its revision.
    let ok = write(store, vec![put("/b", "2"), put("/c", "1"), del("/a")]).await;
    let listing = store.list("/", None).await.unwrap();
    let revisions: Vec<_> = listing
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.mod_revision))
        .collect();
    assert_eq!(revisions, [("/b", ok), ("/c", ok)]);
    // One key twice is refused, as etcd refuses it.
    let twice = Txn {
        compares: vec![],
        ops: vec![put("/d", "1"), del("/d")],
    };
    assert_eq!(
        store.txn(twice).await.unwrap_err(),
        StoreError::DuplicateKey { key: "/d".into() }
    );
}

pub async fn transactions_have_etcds_limits<S: Store>(store: &S) {
    let ops = |n: usize| {
        (0..n)
            .map(|i| put(&format!("/k{i}"), "v"))
            .collect::<Vec<_>>()
    };
    assert!(
        store
            .txn(Txn {
                compares: vec![],
                ops: ops(MAX_TXN_OPS)
            })
            .await
            .unwrap()
            .succeeded
    );
    // Compares and writes are bounded each on its own, as etcd bounds them.
    let at_zero = |n: usize| {
        (0..n)
            .map(|i| Compare {
                key: format!("/c/{i}"),
                mod_revision: 0,
            })
            .collect::<Vec<_>>()
    };
    let full = Txn {
        compares: at_zero(MAX_TXN_OPS),
        ops: (0..MAX_TXN_OPS)
            .map(|i| put(&format!("/c/{i}"), "v"))
            .collect(),
    };
    assert!(store.txn(full).await.unwrap().succeeded);
    let err = store
        .txn(Txn {
            compares: at_zero(MAX_TXN_OPS + 1),
            ops: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::TooManyOps {
            ops: MAX_TXN_OPS + 1,
            limit: MAX_TXN_OPS
        }
    );
    let err = store
        .txn(Txn {
            compares: vec![],
            ops: ops(MAX_TXN_OPS + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::TooManyOps {
            ops: MAX_TXN_OPS + 1,
            limit: MAX_TXN_OPS
        }
    );
    let big = vec![b'x'; MAX_REQUEST_BYTES];
    let err = store
        .txn(Txn {
            compares: vec![],
            ops: vec![Op::Put {
                key: "/big".into(),
                value: big,
            }],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                limit: MAX_REQUEST_BYTES,
                ..
            }
        ),
        "{err}"
    );
    assert!(store.list("/big", None).await.unwrap().kvs.is_empty());
}
