//! The node controller: the stages of the control path wired together on
//! one node. Store (`lb-store`) → config (`lb-config`) → reconcile
//! (`lb-reconcile`) → apply (here, into `lb-dataplane`).

pub mod apply;
pub mod sync;
