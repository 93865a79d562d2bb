//! The load balancer's schema and API, package `lb.v1`, generated at build
//! time from `proto/lb/v1/*.proto`: prost messages, and serde
//! implementations of the canonical proto3 JSON mapping (pbjson), which is
//! how the store holds them and how `lbctl -o json` prints them; tonic
//! clients and servers of the API's services. The `.proto` files are the
//! contract; read them for what each field means.

/// Package `lb.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/lb.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/lb.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of `lb.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lb_v1_descriptors.bin"));

/// The domain of every `ErrorInfo` the API returns.
pub const ERROR_DOMAIN: &str = "lb.v1";

/// The minor schema version of `lb.v1` this build knows (`Vip.schema`,
/// `NodeSettings.schema`).
pub const SCHEMA: u32 = 1;

#[cfg(test)]
mod tests {
    use super::v1::{Backend, BackendState, Protocol, Vip};

    #[test]
    fn json_is_canonical_proto3_and_round_trips() {
        let vip = Vip {
            schema: 1,
            name: "web".into(),
            address: "192.0.2.1".into(),
            port: 443,
            protocol: Protocol::Tcp.into(),
            backends: vec![Backend {
                address: "10.0.0.1".into(),
                weight: Some(2),
                state: BackendState::Draining.into(),
            }],
            ..Vip::default()
        };
        let json = serde_json::to_value(&vip).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "schema": 1,
                "name": "web",
                "address": "192.0.2.1",
                "port": 443,
                "protocol": "PROTOCOL_TCP",
                "backends": [{
                    "address": "10.0.0.1",
                    "weight": 2,
                    "state": "BACKEND_STATE_DRAINING",
                }],
            })
        );
        let back: Vip = serde_json::from_value(json).unwrap();
        assert_eq!(back, vip);
    }

    #[test]
    fn unknown_fields_are_refused_not_dropped() {
        let err = serde_json::from_str::<Vip>(r#"{"name":"web","maglevSeed":7}"#).unwrap_err();
        assert!(err.to_string().contains("maglevSeed"), "{err}");
    }
}
