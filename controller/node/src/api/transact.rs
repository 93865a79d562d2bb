//! `Transact`: several VIP changes in one store transaction, all made or
//! none; or, asked for, in consecutive transactions within the store's
//! limits (a bulk load, not atomic).

use std::collections::HashMap;

use lb_config::Vip;
use lb_proto::v1::{
    ErrorReason, TransactChunk, TransactMode, TransactRequest, TransactResponse, VipChange,
    vip_change::Change,
};
use lb_reconcile::Desired;
use lb_store::{Compare, KeyValue, MAX_REQUEST_BYTES, MAX_TXN_OPS, Op, Revision, Store, Txn};
use tonic::Code;

use super::{
    error::{ApiError, ApiResult},
    vips::exists,
    write::{RETRY_FOR, Writer, again, check_name, parse_etag},
};

/// One change, checked.
struct Checked {
    name: String,
    /// None: delete.
    next: Option<Vip>,
    create: bool,
    etag: Option<Revision>,
}

pub async fn transact<S: Store + Clone>(
    writer: &Writer<S>,
    desired: &Desired,
    request: TransactRequest,
) -> ApiResult<TransactResponse> {
    let chunked = match TransactMode::try_from(request.mode) {
        Ok(TransactMode::Atomic) => false,
        Ok(TransactMode::Chunked) => true,
        Err(_) => {
            return Err(ApiError::field(
                "mode",
                format!("unknown mode {}", request.mode),
            ));
        }
    };
    if request.changes.is_empty() {
        return Err(ApiError::field("changes", "no change to make"));
    }
    let changes = check(writer, request.changes)?;
    let new: Vec<Vip> = changes.iter().filter_map(|c| c.next.clone()).collect();
    let leaving: Vec<&str> = changes
        .iter()
        .filter(|c| c.next.is_none())
        .map(|c| c.name.as_str())
        .collect();
    writer.fits(desired, &new, &leaving)?;
    let conditional = changes.iter().any(|c| c.etag.is_some());
    let started = std::time::Instant::now();
    loop {
        let listing = writer.store.list(&writer.keys.vips(), None).await?;
        let current: HashMap<&str, &KeyValue> =
            listing.kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
        let txns = transactions(writer, &changes, &current, chunked)?;
        if request.validate_only {
            return Ok(TransactResponse {
                chunks: txns
                    .iter()
                    .map(|(first, count, _)| TransactChunk {
                        first: *first as u32,
                        count: *count as u32,
                        store_revision: listing.revision,
                    })
                    .collect(),
                store_revision: listing.revision,
            });
        }
        let mut chunks = Vec::new();
        let mut lost = false;
        for (first, count, txn) in txns {
            let outcome = writer.store.txn(txn).await.map_err(|e| {
                if chunks.is_empty() {
                    ApiError::from(e)
                } else {
                    partial(&chunks, first, ApiError::from(e))
                }
            })?;
            if !outcome.succeeded {
                if !chunks.is_empty() {
                    let e = ApiError::new(
                        Code::Aborted,
                        ErrorReason::EtagMismatch,
                        "a VIP of this chunk changed since it was read",
                    );
                    return Err(partial(&chunks, first, e));
                }
                lost = true;
                break;
            }
            chunks.push(TransactChunk {
                first: first as u32,
                count: count as u32,
                store_revision: outcome.revision,
            });
        }
        if !lost {
            let store_revision = chunks.last().map_or(0, |c| c.store_revision);
            return Ok(TransactResponse {
                chunks,
                store_revision,
            });
        }
        if conditional {
            return Err(ApiError::new(
                Code::Aborted,
                ErrorReason::EtagMismatch,
                "a VIP of the transaction changed since it was read (its etag or its \
                 existence); nothing was changed: read again and redo the changes",
            ));
        }
        if !again(started).await {
            return Err(ApiError::new(
                Code::Aborted,
                ErrorReason::EtagMismatch,
                format!(
                    "the VIPs kept changing under other writers for {} s; nothing was \
                     changed, retry",
                    RETRY_FOR.as_secs()
                ),
            ));
        }
    }
}

/// Every change read as a controller reads it; every bad field named.
fn check<S: Store + Clone>(writer: &Writer<S>, changes: Vec<VipChange>) -> ApiResult<Vec<Checked>> {
    let mut checked = Vec::with_capacity(changes.len());
    let mut faults = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, change) in changes.into_iter().enumerate() {
        let at = |what: &str| format!("changes[{i}].{what}");
        let etag = match parse_etag(&change.etag, &at("etag")) {
            Ok(e) => e,
            Err(e) => {
                faults.push(e);
                continue;
            }
        };
        let result = match change.change {
            Some(Change::Create(vip)) => writer
                .check(&at("create."), Some(vip))
                .map(|v| (v.name.clone(), Some(v), true)),
            Some(Change::Update(vip)) => writer
                .check(&at("update."), Some(vip))
                .map(|v| (v.name.clone(), Some(v), false)),
            Some(Change::Delete(name)) => {
                check_name(&name, &at("delete")).map(|()| (name, None, false))
            }
            None => Err(ApiError::field(
                at("change"),
                "is one of create, update, delete",
            )),
        };
        match result {
            Ok((name, next, create)) => {
                if let Some(j) = names.insert(name.clone(), i) {
                    faults.push(ApiError::field(
                        at("change"),
                        format!("VIP {name:?} is already changed by changes[{j}]"),
                    ));
                }
                checked.push(Checked {
                    name,
                    next,
                    create,
                    etag,
                });
            }
            Err(e) => faults.push(e),
        }
    }
    if faults.is_empty() {
        Ok(checked)
    } else {
        Err(ApiError::fields(
            faults.into_iter().flat_map(ApiError::into_fields).collect(),
        ))
    }
}

/// The store transactions of `changes` against the VIPs as listed: one,
/// or with `chunked` as many as the limits need. Each with the index of
/// its first change and their count.
fn transactions<S: Store + Clone>(
    writer: &Writer<S>,
    changes: &[Checked],
    current: &HashMap<&str, &KeyValue>,
    chunked: bool,
) -> ApiResult<Vec<(usize, usize, Txn)>> {
    let mut txns: Vec<(usize, usize, Txn)> = Vec::new();
    let mut bytes = 0;
    for (i, c) in changes.iter().enumerate() {
        let key = writer.keys.vip(&c.name);
        let found = current.get(key.as_str());
        let field = format!("changes[{i}]");
        let mod_revision = match (found, c.create) {
            (Some(_), true) => {
                let vip = c.next.as_ref().expect("a create has a VIP");
                return Err(exists(vip).with("change", &field));
            }
            (None, true) => 0,
            (None, false) => return Err(ApiError::not_found(&c.name).with("change", &field)),
            (Some(kv), false) => match c.etag {
                Some(etag) if etag != kv.mod_revision => {
                    return Err(
                        ApiError::stale_etag(&c.name, &etag.to_string(), kv.mod_revision)
                            .with("change", &field),
                    );
                }
                _ => kv.mod_revision,
            },
        };
        let op = match &c.next {
            Some(vip) => Op::Put {
                key: key.clone(),
                value: vip.encode(),
            },
            None => Op::Delete { key: key.clone() },
        };
        let size = 2 * key.len()
            + match &op {
                Op::Put { value, .. } => value.len(),
                Op::Delete { .. } => 0,
            };
        let full = txns.last().is_none_or(|(_, n, _)| {
            chunked && (*n == MAX_TXN_OPS || bytes + size > MAX_REQUEST_BYTES)
        });
        if full {
            txns.push((i, 0, Txn::default()));
            bytes = 0;
        }
        let (_, n, txn) = txns.last_mut().expect("a transaction");
        txn.compares.push(Compare { key, mod_revision });
        txn.ops.push(op);
        *n += 1;
        bytes += size;
    }
    for (_, _, txn) in &txns {
        txn.check_limits()?;
    }
    Ok(txns)
}

/// A chunk failed after others were made.
fn partial(made: &[TransactChunk], first: usize, e: ApiError) -> ApiError {
    let revision = made.last().map_or(0, |c| c.store_revision);
    e.context(&format!(
        "chunked: changes[0..{first}] were made (store revision {revision}), the rest were not: "
    ))
    .with("changes_made", &first.to_string())
    .with("store_revision", &revision.to_string())
}
