//! Who may call what. Over mutual TLS a client is its certificate's
//! identity (its subject's common name, and each DNS or URI name it is
//! issued for); the operator maps identities to one of two roles, so that
//! a monitoring client reads but cannot change the config. On loopback
//! without TLS every caller is a local operator, with both roles.

use std::collections::BTreeSet;

use lb_proto::v1::ErrorReason;
use tonic::{Code, Request};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::error::{ApiError, ApiResult};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Status, stats, explanations, reads of VIPs.
    ReadOnly,
    /// All of that, and writes.
    ReadWrite,
}

/// The roles of client identities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    pub read_only: BTreeSet<String>,
    pub read_write: BTreeSet<String>,
}

/// How callers are told apart.
#[derive(Clone, Debug)]
pub enum Access {
    /// No client certificates: every caller has both roles (loopback).
    Open,
    /// Client certificates, verified by TLS against the client CA, and
    /// their identities' roles.
    Certificates(Roles),
}

impl Access {
    /// The role of the caller of `request`.
    pub fn role<T>(&self, request: &Request<T>) -> ApiResult<Role> {
        let Access::Certificates(roles) = self else {
            return Ok(Role::ReadWrite);
        };
        let certs = request.peer_certs();
        let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
            return Err(denied("the call carries no client certificate".into()));
        };
        let identities = identities(leaf.as_ref())
            .map_err(|e| denied(format!("the client certificate cannot be read: {e}")))?;
        let role = identities
            .iter()
            .filter_map(|id| {
                if roles.read_write.contains(id) {
                    Some(Role::ReadWrite)
                } else if roles.read_only.contains(id) {
                    Some(Role::ReadOnly)
                } else {
                    None
                }
            })
            .max();
        role.ok_or_else(|| {
            denied(format!(
                "no role is given to {}: add one of them to api.roles.readOnly or \
                 api.roles.readWrite",
                identities.join(", ")
            ))
        })
    }

    /// The caller may write.
    pub fn writer<T>(&self, request: &Request<T>) -> ApiResult<()> {
        match self.role(request)? {
            Role::ReadWrite => Ok(()),
            Role::ReadOnly => Err(ApiError::new(
                Code::PermissionDenied,
                ErrorReason::ReadOnlyRole,
                "this client's role is read-only: it reads status and config but changes \
                 nothing; use a read-write identity",
            )),
        }
    }
}

fn denied(message: String) -> ApiError {
    ApiError::new(Code::PermissionDenied, ErrorReason::ReadOnlyRole, message)
}

/// A certificate's identities: `CN=name` of its subject's common names,
/// and each DNS and URI subject alternative name as it is.
pub fn identities(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut ids: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(|cn| format!("CN={cn}"))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) => ids.push((*n).to_owned()),
                _ => {}
            }
        }
    }
    Ok(ids)
}
