//! `lb.v1.VipService`: VIPs and their backends as resources.

use std::sync::Arc;

use lb_config::Vip;
use lb_proto::v1::{
    self as pb, AddBackendRequest, CreateVipRequest, DeleteVipRequest, DeleteVipResponse,
    ErrorReason, GetVipRequest, ListVipsRequest, ListVipsResponse, RemoveBackendRequest,
    TransactRequest, TransactResponse, UpdateBackendRequest, UpdateVipRequest, VipResource,
    vip_service_server::VipService,
};
use lb_reconcile::Desired;
use lb_store::Store;
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};

use super::{
    access::Access,
    error::{ApiError, ApiResult},
    page, transact,
    write::{Writer, Written, again, check_name, kept_changing, parse_etag, written},
};
use crate::status::NodeStatus;

/// The service over one store.
pub struct Vips<S> {
    pub writer: Writer<S>,
    pub status: watch::Receiver<NodeStatus>,
    pub access: Access,
}

impl<S> Vips<S> {
    fn desired(&self) -> Arc<Desired> {
        Arc::clone(&self.status.borrow().desired)
    }

    /// A change needs the read-write role; checking one without writing
    /// (`validate_only`) needs either.
    fn may_write<T>(&self, request: &Request<T>, validate_only: bool) -> ApiResult<()> {
        if validate_only {
            self.access.role(request).map(drop)
        } else {
            self.access.writer(request)
        }
    }
}

#[tonic::async_trait]
impl<S: Store + Clone + 'static> VipService for Vips<S> {
    async fn create_vip(
        &self,
        request: Request<CreateVipRequest>,
    ) -> Result<Response<VipResource>, Status> {
        self.may_write(&request, request.get_ref().validate_only)?;
        let r = request.into_inner();
        Ok(Response::new(self.create(r.vip, r.validate_only).await?))
    }

    async fn get_vip(
        &self,
        request: Request<GetVipRequest>,
    ) -> Result<Response<VipResource>, Status> {
        self.access.role(&request)?;
        let name = request.into_inner().name;
        Ok(Response::new(self.writer.get(&name).await?.resource))
    }

    async fn list_vips(
        &self,
        request: Request<ListVipsRequest>,
    ) -> Result<Response<ListVipsResponse>, Status> {
        self.access.role(&request)?;
        Ok(Response::new(
            page::list(&self.writer, request.into_inner()).await?,
        ))
    }

    async fn update_vip(
        &self,
        request: Request<UpdateVipRequest>,
    ) -> Result<Response<VipResource>, Status> {
        self.may_write(&request, request.get_ref().validate_only)?;
        let r = request.into_inner();
        Ok(Response::new(
            self.update(r.vip, &r.etag, r.validate_only).await?,
        ))
    }

    async fn delete_vip(
        &self,
        request: Request<DeleteVipRequest>,
    ) -> Result<Response<DeleteVipResponse>, Status> {
        self.may_write(&request, request.get_ref().validate_only)?;
        let r = request.into_inner();
        Ok(Response::new(
            self.delete(&r.name, &r.etag, r.validate_only).await?,
        ))
    }

    async fn add_backend(
        &self,
        request: Request<AddBackendRequest>,
    ) -> Result<Response<VipResource>, Status> {
        self.may_write(&request, request.get_ref().validate_only)?;
        let r = request.into_inner();
        let Some(backend) = r.backend else {
            return Err(ApiError::field("backend", "is required").into());
        };
        let desired = self.desired();
        let resource = self
            .writer
            .modify(&r.vip, &r.etag, r.validate_only, &desired, |vip| {
                if vip
                    .backends
                    .iter()
                    .any(|b| same_address(&b.address, &backend.address))
                {
                    return Err(ApiError::new(
                        Code::AlreadyExists,
                        ErrorReason::BackendExists,
                        format!("{} is already a backend of {:?}", backend.address, r.vip),
                    ));
                }
                vip.backends.push(backend.clone());
                Ok(())
            })
            .await?;
        Ok(Response::new(resource))
    }

    async fn remove_backend(
        &self,
        request: Request<RemoveBackendRequest>,
    ) -> Result<Response<VipResource>, Status> {
        self.may_write(&request, request.get_ref().validate_only)?;
        let r = request.into_inner();
        let desired = self.desired();
        let resource = self
            .writer
            .modify(&r.vip, &r.etag, r.validate_only, &desired, |vip| {
                let at = backend_position(vip, &r.vip, &r.address)?;
                vip.backends.remove(at);
                Ok(())
            })
            .await?;
        Ok(Response::new(resource))
    }

    async fn update_backend(
        &self,
        request: Request<UpdateBackendRequest>,
    ) -> Result<Response<VipResource>, Status> {
        self.may_write(&request, request.get_ref().validate_only)?;
        let r = request.into_inner();
        if r.weight.is_none() && r.state == 0 {
            return Err(ApiError::field(
                "weight",
                "neither a weight nor a state is given: nothing to change",
            )
            .into());
        }
        let desired = self.desired();
        let resource = self
            .writer
            .modify(&r.vip, &r.etag, r.validate_only, &desired, |vip| {
                let at = backend_position(vip, &r.vip, &r.address)?;
                let backend = &mut vip.backends[at];
                if let Some(weight) = r.weight {
                    backend.weight = Some(weight);
                }
                if r.state != 0 {
                    backend.state = r.state;
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(resource))
    }

    async fn transact(
        &self,
        request: Request<TransactRequest>,
    ) -> Result<Response<TransactResponse>, Status> {
        self.may_write(&request, request.get_ref().validate_only)?;
        let desired = self.desired();
        Ok(Response::new(
            transact::transact(&self.writer, &desired, request.into_inner()).await?,
        ))
    }
}

impl<S: Store + Clone> Vips<S> {
    async fn create(&self, vip: Option<pb::Vip>, validate_only: bool) -> ApiResult<VipResource> {
        let vip = self.writer.check("vip.", vip)?;
        self.writer
            .fits(&self.desired(), std::slice::from_ref(&vip), &[])?;
        if validate_only && self.writer.get(&vip.name).await.is_ok() {
            return Err(exists(&vip));
        }
        match self
            .writer
            .write(&vip.name, None, Some(&vip), validate_only)
            .await?
        {
            Written::Done(revision) => Ok(VipResource {
                vip: Some(vip.to_proto()),
                etag: if validate_only {
                    String::new()
                } else {
                    revision.to_string()
                },
                create_revision: if validate_only { 0 } else { revision },
                store_revision: revision,
                invalid: String::new(),
            }),
            Written::Lost => Err(exists(&vip)),
        }
    }

    async fn update(
        &self,
        vip: Option<pb::Vip>,
        etag: &str,
        validate_only: bool,
    ) -> ApiResult<VipResource> {
        let vip = self.writer.check("vip.", vip)?;
        let wanted = parse_etag(etag, "etag")?;
        self.writer
            .fits(&self.desired(), std::slice::from_ref(&vip), &[])?;
        let started = std::time::Instant::now();
        loop {
            let stored = self.writer.get(&vip.name).await?;
            if let Some(wanted) = wanted
                && wanted != stored.kv.mod_revision
            {
                return Err(ApiError::stale_etag(
                    &vip.name,
                    etag,
                    stored.kv.mod_revision,
                ));
            }
            match self
                .writer
                .write(&vip.name, Some(&stored.kv), Some(&vip), validate_only)
                .await?
            {
                Written::Done(revision) => {
                    let at = if validate_only {
                        stored.kv.mod_revision
                    } else {
                        revision
                    };
                    return Ok(written(&vip, &stored.kv, at, revision));
                }
                // Another writer came first: without an etag the caller
                // asked for this VIP whatever the version, so read again.
                Written::Lost if wanted.is_none() && again(started).await => continue,
                Written::Lost if wanted.is_none() => return Err(kept_changing(&vip.name)),
                Written::Lost => {
                    let now = self.writer.get(&vip.name).await?.kv.mod_revision;
                    return Err(ApiError::stale_etag(&vip.name, etag, now));
                }
            }
        }
    }

    async fn delete(
        &self,
        name: &str,
        etag: &str,
        validate_only: bool,
    ) -> ApiResult<DeleteVipResponse> {
        check_name(name, "name")?;
        let wanted = parse_etag(etag, "etag")?;
        let started = std::time::Instant::now();
        loop {
            let stored = self.writer.get(name).await?;
            if let Some(wanted) = wanted
                && wanted != stored.kv.mod_revision
            {
                return Err(ApiError::stale_etag(name, etag, stored.kv.mod_revision));
            }
            match self
                .writer
                .write(name, Some(&stored.kv), None, validate_only)
                .await?
            {
                Written::Done(store_revision) => return Ok(DeleteVipResponse { store_revision }),
                Written::Lost if wanted.is_none() && again(started).await => continue,
                Written::Lost if wanted.is_none() => return Err(kept_changing(name)),
                Written::Lost => {
                    let now = self.writer.get(name).await?.kv.mod_revision;
                    return Err(ApiError::stale_etag(name, etag, now));
                }
            }
        }
    }
}

pub fn exists(vip: &Vip) -> ApiError {
    ApiError::new(
        Code::AlreadyExists,
        ErrorReason::VipExists,
        format!(
            "a VIP named {:?} exists: change it with `lbctl vip update`, or pick another name",
            vip.name
        ),
    )
    .with("vip", &vip.name)
}

/// Two addresses as text are the same address (`2001:db8::1` is
/// `2001:DB8:0::1`); text that is no address compares as text.
fn same_address(a: &str, b: &str) -> bool {
    match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn backend_position(vip: &pb::Vip, name: &str, address: &str) -> ApiResult<usize> {
    if address.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::field(
            "address",
            format!("{address:?} is not an IPv4 or IPv6 address"),
        ));
    }
    vip.backends
        .iter()
        .position(|b| same_address(&b.address, address))
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                ErrorReason::BackendNotFound,
                format!(
                    "{address} is not a backend of {name:?}: `lbctl vip get {name}` lists them"
                ),
            )
            .with("vip", name)
        })
}
