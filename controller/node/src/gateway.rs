//! The gateway's MAC, from the kernel's tables over netlink: the next hop
//! of the interface's default route (IPv4, else IPv6), and that hop's
//! entry in the neighbour table. Followed as the tables change: route and
//! neighbour notifications trigger a new lookup, and a periodic one
//! covers notifications lost to a full socket buffer.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use futures_util::{StreamExt as _, TryStreamExt as _};
use netlink_packet_route::{
    AddressFamily,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute},
};
use netlink_sys::AsyncSocket as _;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    constants::{RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_NEIGH},
};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GatewayError {
    #[error(
        "no default route through {interface}: add one, or set node.gateway.mac in the settings"
    )]
    NoRoute { interface: String },
    #[error(
        "the default route through {interface} has no single gateway (multipath, or on-link): \
         set node.gateway.mac in the settings"
    )]
    NoGateway { interface: String },
    #[error(
        "gateway {gateway} has no usable neighbour entry on {interface} yet (not answering \
         ARP / neighbour discovery?); set node.gateway.mac to override"
    )]
    Unresolved { interface: String, gateway: IpAddr },
    #[error("netlink: {0}")]
    Netlink(String),
}

/// The next hop and its MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gateway {
    pub address: IpAddr,
    pub mac: [u8; 6],
}

/// A netlink connection for lookups, its driver spawned on the runtime.
pub fn connect() -> Result<Handle, GatewayError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| GatewayError::Netlink(e.to_string()))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The index and MAC of `interface`, from netlink (sysfs would show the
/// namespace it was mounted in, not necessarily this process's).
pub async fn link(handle: &Handle, interface: &str) -> Result<(u32, [u8; 6]), GatewayError> {
    use netlink_packet_route::link::LinkAttribute;
    let mut links = handle
        .link()
        .get()
        .match_name(interface.to_owned())
        .execute();
    let link = links
        .try_next()
        .await
        .map_err(|e| GatewayError::Netlink(format!("looking up {interface}: {e}")))?
        .ok_or_else(|| GatewayError::Netlink(format!("no interface {interface}")))?;
    let mac = link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
            _ => None,
        })
        .ok_or_else(|| GatewayError::Netlink(format!("{interface} has no Ethernet address")))?;
    Ok((link.header.index, mac))
}

/// Looks the gateway of `interface` (index `ifindex`) up once. A gateway
/// with no neighbour entry is sent one datagram to its discard port, so
/// that the kernel resolves it, and looked up again for up to `patience`.
pub async fn resolve(
    handle: &Handle,
    interface: &str,
    ifindex: u32,
    patience: Duration,
) -> Result<Gateway, GatewayError> {
    let address = default_gateway(handle, interface, ifindex).await?;
    if let Some(mac) = neighbour(handle, ifindex, address).await? {
        return Ok(Gateway { address, mac });
    }
    prompt_resolution(address);
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(mac) = neighbour(handle, ifindex, address).await? {
            return Ok(Gateway { address, mac });
        }
    }
    Err(GatewayError::Unresolved {
        interface: interface.to_owned(),
        gateway: address,
    })
}

/// The gateway of the main table's default route out of `ifindex`,
/// IPv4 first.
async fn default_gateway(
    handle: &Handle,
    interface: &str,
    ifindex: u32,
) -> Result<IpAddr, GatewayError> {
    let mut found_route = false;
    for request in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let mut routes = handle.route().get(request).execute();
        while let Some(route) = routes
            .try_next()
            .await
            .map_err(|e| GatewayError::Netlink(e.to_string()))?
        {
            // The main table (254); `table` holds only its low byte.
            let table = route
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(route.header.table));
            if route.header.destination_prefix_length != 0 || table != 254 {
                continue;
            }
            let oif = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            if oif != Some(ifindex) {
                continue;
            }
            found_route = true;
            let gateway = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
                _ => None,
            });
            if let Some(g) = gateway {
                return Ok(g);
            }
        }
    }
    let interface = interface.to_owned();
    Err(if found_route {
        GatewayError::NoGateway { interface }
    } else {
        GatewayError::NoRoute { interface }
    })
}

/// The MAC of `address` on `ifindex`, if the neighbour table has a usable
/// one (not incomplete or failed).
async fn neighbour(
    handle: &Handle,
    ifindex: u32,
    address: IpAddr,
) -> Result<Option<[u8; 6]>, GatewayError> {
    let family = match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let mut entries = handle
        .neighbours()
        .get()
        .set_address_family(family)
        .execute();
    while let Some(entry) = entries
        .try_next()
        .await
        .map_err(|e| GatewayError::Netlink(e.to_string()))?
    {
        if entry.header.ifindex == ifindex
            && destination(&entry) == Some(address)
            && let Some(mac) = usable_mac(&entry)
        {
            return Ok(Some(mac));
        }
    }
    Ok(None)
}

fn destination(entry: &NeighbourMessage) -> Option<IpAddr> {
    entry.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}

fn usable_mac(entry: &NeighbourMessage) -> Option<[u8; 6]> {
    if matches!(
        entry.header.state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    ) {
        return None;
    }
    entry.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
        _ => None,
    })
}

/// One datagram to the gateway's discard port (9): the kernel resolves
/// the neighbour to send it.
fn prompt_resolution(gateway: IpAddr) {
    let bind: SocketAddr = match gateway {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    if let Ok(socket) = UdpSocket::bind(bind) {
        let _ = socket.send_to(&[0], (gateway, 9));
    }
}

/// Follows the gateway: looks it up again on every route or neighbour
/// notification and every `refresh`, and sends each new MAC. A lookup
/// that fails keeps the MAC in force (and says so once). Lookups go
/// through `handle`; notifications come on a connection of their own.
pub async fn follow(
    handle: Handle,
    interface: String,
    ifindex: u32,
    mut current: Gateway,
    refresh: Duration,
    tx: watch::Sender<Gateway>,
) -> Result<(), GatewayError> {
    let (mut connection, _, mut notifications) =
        rtnetlink::new_connection().map_err(|e| GatewayError::Netlink(e.to_string()))?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&netlink_sys::SocketAddr::new(
            0,
            RTMGRP_NEIGH | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE,
        ))
        .map_err(|e| GatewayError::Netlink(e.to_string()))?;
    tokio::spawn(connection);
    let mut last_error = None;
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = notifications.next() => {
                if n.is_none() {
                    return Err(GatewayError::Netlink("notifications ended".into()));
                }
                // A burst of notifications takes one lookup.
                while notifications.try_recv().is_ok() {}
            }
            _ = tick.tick() => {}
            () = tx.closed() => return Ok(()),
        }
        match resolve(&handle, &interface, ifindex, Duration::from_secs(1)).await {
            Ok(g) => {
                last_error = None;
                if g != current {
                    info!(
                        gateway = %g.address,
                        mac = %format_mac(g.mac),
                        "gateway changed"
                    );
                    current = g;
                    tx.send_replace(g);
                }
            }
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    warn!("{e}; keeping gateway MAC {}", format_mac(current.mac));
                }
                last_error = Some(e);
            }
        }
    }
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
