//! `ListVips` a page at a time. Every page of one listing is read at the
//! revision of the first, which its token carries with the last name
//! given, so a listing is one consistent view even while VIPs change.

use lb_proto::v1::{ErrorReason, ListVipsRequest, ListVipsResponse};
use lb_store::{Revision, Store, StoreError};
use tonic::Code;

use super::{
    error::{ApiError, ApiResult},
    write::Writer,
};

/// VIPs in a page when the request does not say.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Most VIPs in a page.
pub const MAX_PAGE_SIZE: usize = 500;
/// A page ends before its VIPs pass this many bytes of stored JSON, well
/// inside a client's 4 MiB default message size.
pub const PAGE_BYTES: usize = 2 << 20;

pub async fn list<S: Store + Clone>(
    writer: &Writer<S>,
    request: ListVipsRequest,
) -> ApiResult<ListVipsResponse> {
    let size = match request.page_size as usize {
        0 => DEFAULT_PAGE_SIZE,
        n if n <= MAX_PAGE_SIZE => n,
        n => {
            return Err(ApiError::field(
                "page_size",
                format!("{n} is above the most a page holds, {MAX_PAGE_SIZE}"),
            ));
        }
    };
    let (at, after) = match request.page_token.as_str() {
        "" => (None, None),
        token => {
            let (revision, name) = parse(token)?;
            (Some(revision), Some(name))
        }
    };
    let prefix = writer.keys.vips();
    let listing = writer.store.list(&prefix, at).await.map_err(|e| match e {
        StoreError::Compacted { .. } | StoreError::FutureRevision { .. } => ApiError::new(
            Code::FailedPrecondition,
            ErrorReason::BadPageToken,
            format!("the listing's revision is gone ({e}): list again from the first page"),
        ),
        e => e.into(),
    })?;
    let mut vips = Vec::new();
    let mut bytes = 0;
    let mut more = false;
    let mut last = "";
    for kv in &listing.kvs {
        let name = &kv.key[prefix.len()..];
        if after.as_deref().is_some_and(|after| name <= after) {
            continue;
        }
        if vips.len() == size || (!vips.is_empty() && bytes + kv.value.len() > PAGE_BYTES) {
            more = true;
            break;
        }
        bytes += kv.value.len();
        last = name;
        vips.push(writer.resource(kv, listing.revision));
    }
    let next_page_token = if more {
        token(listing.revision, last)
    } else {
        String::new()
    };
    Ok(ListVipsResponse {
        vips,
        next_page_token,
        store_revision: listing.revision,
    })
}

fn token(revision: Revision, last: &str) -> String {
    format!("{revision}/{last}")
}

fn parse(token: &str) -> ApiResult<(Revision, String)> {
    token
        .split_once('/')
        .and_then(|(r, name)| Some((r.parse().ok()?, name.to_owned())))
        .ok_or_else(|| {
            ApiError::new(
                Code::InvalidArgument,
                ErrorReason::BadPageToken,
                format!("{token:?} is not a page token of ListVips: send next_page_token back"),
            )
        })
}
