//! The gRPC API against a real controller: transactions and their limits,
//! etags and the server's retry, paging, status against maps changed
//! behind the controller's back, explanations against the XDP program,
//! and the server's own limits, health and reflection.

mod support;

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;
use lb_proto::v1::{self as pb, TransactMode, TransactRequest, VipChange, vip_change::Change};
use support::{GATEWAY_MAC, LB_MAC, runtime, with_controller};
use tonic::Code;
use tonic_types::StatusExt;

fn vip(name: &str, i: u32, backends: &[&str]) -> pb::Vip {
    pb::Vip {
        schema: 1,
        name: name.into(),
        address: Ipv4Addr::from(0xc000_0200 + i).to_string(),
        port: 80,
        protocol: pb::Protocol::Tcp.into(),
        backends: backends
            .iter()
            .map(|a| pb::Backend {
                address: (*a).into(),
                ..pb::Backend::default()
            })
            .collect(),
        ..pb::Vip::default()
    }
}

fn create(v: pb::Vip) -> VipChange {
    VipChange {
        change: Some(Change::Create(v)),
        etag: String::new(),
    }
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

#[test]
fn transactions_are_all_or_nothing_within_the_stores_limits() {
    with_controller(|c| {
        runtime().block_on(async {
            let (mut vips, _) = c.clients().await;
            let many: Vec<VipChange> = (0..129)
                .map(|i| create(vip(&format!("v{i}"), i, &[])))
                .collect();
            let over = vips
                .transact(TransactRequest {
                    changes: many.clone(),
                    ..TransactRequest::default()
                })
                .await
                .unwrap_err();
            assert_eq!(over.code(), Code::FailedPrecondition, "{over:?}");
            assert!(over.message().contains("at most 128"), "{}", over.message());
            assert_eq!(reason(&over), "TRANSACTION_TOO_LARGE");

            // Half-way failure: the second change updates a VIP that is not
            // there; the first is not made either.
            let half = vips
                .transact(TransactRequest {
                    changes: vec![
                        create(vip("a", 1, &["10.0.0.1"])),
                        VipChange {
                            change: Some(Change::Update(vip("missing", 2, &[]))),
                            etag: String::new(),
                        },
                    ],
                    ..TransactRequest::default()
                })
                .await
                .unwrap_err();
            assert_eq!(half.code(), Code::NotFound, "{half:?}");
            let listed = vips
                .list_vips(pb::ListVipsRequest::default())
                .await
                .unwrap()
                .into_inner();
            assert!(listed.vips.is_empty(), "nothing half-applied: {listed:?}");

            // Validate-only checks the whole transaction and writes nothing.
            let checked = vips
                .transact(TransactRequest {
                    changes: many[..128].to_vec(),
                    validate_only: true,
                    ..TransactRequest::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(checked.chunks.len(), 1);
            assert!(
                vips.list_vips(pb::ListVipsRequest::default())
                    .await
                    .unwrap()
                    .into_inner()
                    .vips
                    .is_empty()
            );

            // The bulk mode loads past the limit in chunks.
            let loaded = vips
                .transact(TransactRequest {
                    changes: many.clone(),
                    mode: TransactMode::Chunked.into(),
                    ..TransactRequest::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                loaded
                    .chunks
                    .iter()
                    .map(|c| (c.first, c.count))
                    .collect::<Vec<_>>(),
                [(0, 128), (128, 1)]
            );

            // Paged: every VIP once, all pages at the first page's revision.
            let mut names = Vec::new();
            let mut token = String::new();
            let mut revisions = Vec::new();
            loop {
                let page = vips
                    .list_vips(pb::ListVipsRequest {
                        page_size: 50,
                        page_token: token,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                names.extend(
                    page.vips
                        .iter()
                        .map(|r| r.vip.as_ref().unwrap().name.clone()),
                );
                revisions.push(page.store_revision);
                if names.len() == 50 {
                    // A write between pages does not show in this listing.
                    vips.create_vip(pb::CreateVipRequest {
                        vip: Some(vip("zz-late", 500, &[])),
                        validate_only: false,
                    })
                    .await
                    .unwrap();
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            assert_eq!(names.len(), 129);
            assert!(revisions.windows(2).all(|w| w[0] == w[1]), "{revisions:?}");
            let bad = vips
                .list_vips(pb::ListVipsRequest {
                    page_size: 10,
                    page_token: "not a token".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(
                (bad.code(), reason(&bad).as_str()),
                (Code::InvalidArgument, "BAD_PAGE_TOKEN")
            );
        });
    });
}

#[test]
fn a_stale_etag_is_aborted_and_backend_changes_without_one_are_retried() {
    with_controller(|c| {
        runtime().block_on(async {
            let (mut vips, _) = c.clients().await;
            let first = vips
                .create_vip(pb::CreateVipRequest {
                    vip: Some(vip("web", 1, &[])),
                    validate_only: false,
                })
                .await
                .unwrap()
                .into_inner();
            // Twenty writers add a backend each at once, none with an etag:
            // each compare one loses is read again, so every add lands.
            let adds = (1..=20).map(|i| {
                let mut client = vips.clone();
                async move {
                    client
                        .add_backend(pb::AddBackendRequest {
                            vip: "web".into(),
                            backend: Some(pb::Backend {
                                address: format!("10.0.0.{i}"),
                                ..pb::Backend::default()
                            }),
                            ..pb::AddBackendRequest::default()
                        })
                        .await
                }
            });
            for r in futures_util::future::join_all(adds).await {
                r.unwrap();
            }
            let now = vips
                .get_vip(pb::GetVipRequest { name: "web".into() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(now.vip.as_ref().unwrap().backends.len(), 20);

            let stale = vips
                .update_vip(pb::UpdateVipRequest {
                    vip: Some(vip("web", 1, &["10.9.9.9"])),
                    etag: first.etag.clone(),
                    validate_only: false,
                })
                .await
                .unwrap_err();
            assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
            assert_eq!(reason(&stale), "ETAG_MISMATCH");
            let info = stale.get_details_error_info().unwrap();
            assert_eq!(info.metadata["etag"], now.etag, "the current etag is told");
            let after = vips
                .get_vip(pb::GetVipRequest { name: "web".into() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                after,
                pb::VipResource {
                    store_revision: after.store_revision,
                    ..now.clone()
                }
            );

            // With the etag read, the change is made.
            vips.update_vip(pb::UpdateVipRequest {
                vip: Some(vip("web", 1, &["10.9.9.9"])),
                etag: now.etag,
                validate_only: false,
            })
            .await
            .unwrap();
        });
    });
}

#[test]
fn writes_beyond_the_nodes_sizes_are_refused_before_the_store() {
    with_controller(|c| {
        runtime().block_on(async {
            let (mut vips, _) = c.clients().await;
            let too_many: Vec<String> = (0..support::RING_SIZE + 1)
                .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
                .collect();
            let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
            let big = vips
                .create_vip(pb::CreateVipRequest {
                    vip: Some(vip("big", 1, &refs)),
                    validate_only: true,
                })
                .await
                .unwrap_err();
            assert_eq!(big.code(), Code::InvalidArgument);
            let bad = big.get_details_bad_request().unwrap();
            assert_eq!(bad.field_violations[0].field, "vip.backends");
            assert!(
                bad.field_violations[0]
                    .description
                    .contains("Maglev ring of 1021")
            );
            // 512 backends fit the node in all: 600 over two VIPs do not.
            let half: Vec<&str> = refs[..300].to_vec();
            vips.create_vip(pb::CreateVipRequest {
                vip: Some(vip("one", 1, &half)),
                validate_only: false,
            })
            .await
            .unwrap();
            let full = vips
                .create_vip(pb::CreateVipRequest {
                    vip: Some(vip("two", 2, &half)),
                    validate_only: false,
                })
                .await;
            // The first may not be reconciled yet: then the node has room.
            if let Err(e) = full {
                assert_eq!(
                    (e.code(), reason(&e).as_str()),
                    (Code::FailedPrecondition, "OVER_NODE_CAPACITY")
                );
            }
        });
    });
}

/// An established flow's packet, as `explain` builds it.
fn ack(src: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 1], LB_MAC)
        .ipv4(src.octets(), [192, 0, 2, 10], 64)
        .tcp(sport, 80, 1, 65_535)
        .ack(1)
        .write(&mut frame, &[0u8; 16])
        .unwrap();
    frame
}

#[test]
fn explain_agrees_with_the_xdp_program_on_random_flows() {
    with_controller(|c| {
        c.create_applied("web", "192.0.2.10", &["10.0.0.1", "10.0.0.2*2", "10.0.0.3"]);
        runtime().block_on(async {
            let (_, mut node) = c.clients().await;
            let mut seed = 0x9e37_79b9_u32;
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed
            };
            let mut backends = std::collections::BTreeSet::new();
            for _ in 0..40 {
                let src = Ipv4Addr::from(0xc633_6400 | (next() & 0xff));
                let sport = (next() % 60_000 + 1024) as u16;
                let ask = pb::ExplainFlowRequest {
                    source: src.to_string(),
                    destination: "192.0.2.10".into(),
                    protocol: pb::Protocol::Tcp.into(),
                    source_port: u32::from(sport),
                    destination_port: None,
                };
                let before = node.explain_flow(ask.clone()).await.unwrap().into_inner();
                assert_eq!(before.placement, pb::Placement::Ring as i32, "{before:?}");
                assert_eq!(before.vip, "web");
                let run = c.runner.run(&ack(src, sport)).unwrap();
                assert_eq!(run.action, 3, "XDP_TX");
                assert_eq!(run.frame[..6], GATEWAY_MAC);
                let sent_to =
                    Ipv4Addr::new(run.frame[30], run.frame[31], run.frame[32], run.frame[33]);
                assert_eq!(
                    before.backend,
                    sent_to.to_string(),
                    "{src}:{sport}: {before:?}"
                );
                backends.insert(sent_to);
                // The packet placed the flow: now the table answers, the same.
                let after = node.explain_flow(ask).await.unwrap().into_inner();
                assert_eq!(
                    after.placement,
                    pb::Placement::FlowTable as i32,
                    "{after:?}"
                );
                assert_eq!(after.backend, before.backend);
            }
            assert_eq!(backends.len(), 3, "random flows reach every backend");
        });
        // And through lbctl, as a person reads it.
        let text = c.ok(&["explain", "198.51.100.7", "192.0.2.10", "tcp", "40000"]);
        assert!(
            text.contains("vip: web 192.0.2.10:80/tcp") && text.contains("Maglev slot"),
            "{text}"
        );
        let (code, err) =
            support::failed(&c.lbctl(&["explain", "198.51.100.7", "2001:db8::1", "tcp"]));
        assert_eq!(code, 3);
        assert!(err.contains("different families"), "{err}");
    });
}

#[test]
fn status_shows_maps_changed_behind_the_controllers_back() {
    with_controller(|c| {
        c.create_applied("web", "192.0.2.10", &["10.0.0.1", "10.0.0.2"]);
        let status = c.json(&["status"]);
        assert_eq!(status["converged"], true, "{status}");
        let digests = &status["digests"];
        assert_eq!(digests["desired"], digests["actual"]);

        // Another writer replaces the VIP's backends in the maps.
        let mut intruder = c.observer.read_back().unwrap();
        let mut config = intruder.vips().next().unwrap().clone();
        config.backends.truncate(1);
        config.backends[0].address = "10.6.6.6".parse().unwrap();
        intruder.upsert_vip(&config).unwrap();

        let status = c.json(&["status"]);
        assert_eq!(status.get("converged"), None, "false: {status}");
        assert_eq!(status["digests"]["desired"], status["digests"]["applied"]);
        assert_ne!(status["digests"]["applied"], status["digests"]["actual"]);
        let row = &status["vips"][0];
        assert_eq!(row["state"], "VIP_STATE_DIVERGED", "{status}");
        assert!(
            row["message"].as_str().unwrap().contains("10.6.6.6*1"),
            "{row}"
        );
        let table = c.ok(&["status"]);
        assert!(
            table.contains("DISAGREE") && table.contains("!web"),
            "{table}"
        );
    });
}

#[test]
fn stats_count_what_the_program_sent() {
    with_controller(|c| {
        c.create_applied("web", "192.0.2.10", &["10.0.0.1"]);
        for sport in 0..25 {
            assert_eq!(
                c.runner
                    .run(&ack(Ipv4Addr::new(198, 51, 100, 1), 2000 + sport))
                    .unwrap()
                    .action,
                3
            );
        }
        let stats = c.json(&["stats"]);
        assert_eq!(stats["vips"][0]["name"], "web");
        assert_eq!(stats["vips"][0]["sent"]["packets"], "25", "{stats}");
        assert_eq!(stats["backends"][0]["address"], "10.0.0.1");
        let table = c.ok(&["stats"]);
        assert!(
            table.contains("web") && table.contains("10.0.0.1"),
            "{table}"
        );
    });
}

#[test]
fn the_server_answers_health_checks_and_reflection_and_refuses_oversized_requests() {
    with_controller(|c| {
        runtime().block_on(async {
            let channel = tonic::transport::Channel::from_shared(c.endpoint.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            for service in ["", "lb.v1.VipService", "lb.v1.NodeService"] {
                let answer = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(answer.status, 1, "{service}: SERVING");
            }
            use tonic_reflection::pb::v1::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse,
            };
            let ask = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = ServerReflectionClient::new(channel.clone())
                .server_reflection_info(tokio_stream::iter([ask]))
                .await
                .unwrap()
                .into_inner();
            let Some(MessageResponse::ListServicesResponse(list)) =
                answers.message().await.unwrap().unwrap().message_response
            else {
                panic!("a list of services");
            };
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            assert_eq!(
                names,
                [
                    "grpc.health.v1.Health",
                    "grpc.reflection.v1.ServerReflection",
                    "lb.v1.NodeService",
                    "lb.v1.VipService"
                ]
            );
            let mut vips = pb::vip_service_client::VipServiceClient::new(channel)
                .max_encoding_message_size(64 << 20);
            let mut huge = vip("huge", 1, &[]);
            huge.owner = "x".repeat(5 << 20);
            let e = vips
                .create_vip(pb::CreateVipRequest {
                    vip: Some(huge),
                    validate_only: true,
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
        });
    });
}
