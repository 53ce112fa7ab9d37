//! Departments (政府部门) and their own keys.
//!
//! A node is a jurisdiction's data platform (Art. 30) and hosts many departments; the
//! jurisdiction's data-sharing authority (政务数据共享主管部门) is a role of the jurisdiction key
//! itself. Each department acts with its own ed25519 key, certified by its node's jurisdiction
//! key ([`DepartmentCert`]), so every act it signs names region *and* department, and a
//! verifier checks both: the jurisdiction's chain to the anchor, then the department
//! certificate under that chain's key, then the act under the department's key.
//!
//! What this proves and what it does not: another node — a relay on the path, the requester's
//! or provider's own ancestors included — cannot act as a department it does not host, and one
//! department's key cannot sign for another department of the same node. The jurisdiction key
//! can still certify a new key in any of its own departments' names: it is their platform, and
//! its signature on such a certificate is the evidence against it.
//!
//! A department certificate is valid no longer than the jurisdiction's own chain and names the
//! jurisdiction key that issued it: the shell hands the endpoint its departments' keys at every
//! start ([`crate::Endpoint::add_department`]), so a rotated or renewed jurisdiction key
//! certifies them anew, and a revoked jurisdiction key voids them with it.

use backflow_topology::RegionCode;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::catalog::CatalogOrigin;
use crate::cert::{NodeIdentity, TrustStore, VerifiedIdentity};
use crate::codec::digest;
use crate::limits::{check_len, LimitError, NAME_BYTES_MAX};
use crate::time::UnixMs;

const DEPARTMENT_CERT_DOMAIN: &[u8] = b"backflow/department-cert/v1";

/// Departments one node hosts: a county platform hosts a few dozen, a province a few hundred.
pub const DEPARTMENTS_PER_NODE_MAX: usize = 4_096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentCertBody {
    pub region: RegionCode,
    pub department: String,
    pub key: VerifyingKey,
    /// The jurisdiction key that certifies it (the leaf of the region's chain).
    pub issuer_key: VerifyingKey,
    pub not_before: UnixMs,
    /// Exclusive.
    pub not_after: UnixMs,
}

/// A department's key, certified by its jurisdiction's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentCert {
    pub body: DepartmentCertBody,
    pub signature: Signature,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DepartmentError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("a department needs a name")]
    EmptyName,
    #[error("department {department:?}'s certificate is for {cert}, not {region}")]
    WrongRegion {
        department: String,
        cert: RegionCode,
        region: RegionCode,
    },
    #[error("department {department:?}'s certificate is not issued by {region}'s current key")]
    WrongIssuer {
        department: String,
        region: RegionCode,
    },
    #[error("department {department:?}'s certificate has a bad signature")]
    BadSignature { department: String },
    #[error(
        "department {department:?}'s certificate is not valid at {now} ({not_before}..{not_after})"
    )]
    NotValid {
        department: String,
        now: UnixMs,
        not_before: UnixMs,
        not_after: UnixMs,
    },
    #[error("department {department:?}'s key is revoked")]
    Revoked { department: String },
    #[error("this node holds {max} departments already")]
    TooMany { max: usize },
    #[error("department {department:?} is not one this node holds (backflow dept add)")]
    NotHeld { department: String },
}

impl DepartmentCert {
    /// `jurisdiction` certifies `key` for its department `department`, valid from `now` for
    /// as long as the jurisdiction's own chain is.
    pub fn issue(
        jurisdiction: &NodeIdentity,
        department: &str,
        key: VerifyingKey,
        now: UnixMs,
    ) -> Result<DepartmentCert, DepartmentError> {
        check_name(department)?;
        let not_after = jurisdiction
            .chain
            .iter()
            .map(|c| c.body.not_after)
            .min()
            .unwrap_or(UnixMs::MAX);
        let body = DepartmentCertBody {
            region: jurisdiction.region,
            department: department.to_string(),
            key,
            issuer_key: jurisdiction.key.verifying_key(),
            not_before: now,
            not_after,
        };
        Ok(DepartmentCert {
            signature: jurisdiction.sign(&digest(DEPARTMENT_CERT_DOMAIN, &body)),
            body,
        })
    }

    pub fn check_limits(&self) -> Result<(), LimitError> {
        check_len(
            "department name",
            self.body.department.len(),
            NAME_BYTES_MAX,
        )
    }

    /// Checks the certificate under its region's verified chain (`jurisdiction`) at `now`.
    pub fn verify(
        &self,
        trust: &mut TrustStore,
        jurisdiction: &VerifiedIdentity,
        now: UnixMs,
    ) -> Result<(), DepartmentError> {
        self.check_limits()?;
        let b = &self.body;
        let department = || b.department.clone();
        if b.region != jurisdiction.region {
            return Err(DepartmentError::WrongRegion {
                department: department(),
                cert: b.region,
                region: jurisdiction.region,
            });
        }
        if b.issuer_key != jurisdiction.key {
            return Err(DepartmentError::WrongIssuer {
                department: department(),
                region: b.region,
            });
        }
        if now < b.not_before || now >= b.not_after {
            return Err(DepartmentError::NotValid {
                department: department(),
                now,
                not_before: b.not_before,
                not_after: b.not_after,
            });
        }
        let signed = digest(DEPARTMENT_CERT_DOMAIN, b);
        if !trust.check_key_signature(&b.issuer_key, &signed, &self.signature) {
            return Err(DepartmentError::BadSignature {
                department: department(),
            });
        }
        if trust.is_revoked(&b.key) {
            return Err(DepartmentError::Revoked {
                department: department(),
            });
        }
        Ok(())
    }
}

fn check_name(department: &str) -> Result<(), DepartmentError> {
    if department.trim().is_empty() {
        return Err(DepartmentError::EmptyName);
    }
    Ok(check_len(
        "department name",
        department.len(),
        NAME_BYTES_MAX,
    )?)
}

/// A department of this node: its key and the certificate the node's jurisdiction key gave it.
#[derive(Clone, Debug)]
pub struct DepartmentIdentity {
    pub cert: DepartmentCert,
    pub key: SigningKey,
}

impl DepartmentIdentity {
    /// Certifies `key` as `jurisdiction`'s department `department` (see [`DepartmentCert::issue`]).
    pub fn certify(
        jurisdiction: &NodeIdentity,
        department: &str,
        key: SigningKey,
        now: UnixMs,
    ) -> Result<DepartmentIdentity, DepartmentError> {
        let cert = DepartmentCert::issue(jurisdiction, department, key.verifying_key(), now)?;
        Ok(DepartmentIdentity { cert, key })
    }

    pub fn name(&self) -> &str {
        &self.cert.body.department
    }

    /// Region and department, as acts and catalog entries name them.
    pub fn origin(&self) -> CatalogOrigin {
        CatalogOrigin {
            region: self.cert.body.region,
            department: self.cert.body.department.clone(),
        }
    }

    pub fn sign(&self, message_digest: &[u8; 32]) -> Signature {
        self.key.sign(message_digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY_MS;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_certificate_verifies_only_under_its_own_jurisdiction_key_and_window() {
        let national = NodeIdentity::national(key(1));
        let mut trust = TrustStore::new(national.key.verifying_key());
        let t0 = UnixMs(1_000 * DAY_MS);
        let province = national
            .certify_child(
                &key(2),
                vec![],
                t0,
                t0.plus_ms(10 * DAY_MS),
                RegionCode::parse("11").unwrap(),
                1,
            )
            .unwrap();
        let dept = DepartmentIdentity::certify(&province, "市民政局", key(3), t0).unwrap();
        assert_eq!(dept.cert.body.not_after, t0.plus_ms(10 * DAY_MS));
        let who = trust.verify_chain(&province.chain, t0).unwrap();
        dept.cert.verify(&mut trust, &who, t0).unwrap();
        // Expired with its jurisdiction's certificate.
        assert!(matches!(
            dept.cert.verify(&mut trust, &who, t0.plus_ms(10 * DAY_MS)),
            Err(DepartmentError::NotValid { .. })
        ));
        // Under another region's chain.
        let national_who = trust.verify_chain(&national.chain, t0).unwrap();
        assert!(matches!(
            dept.cert.verify(&mut trust, &national_who, t0),
            Err(DepartmentError::WrongRegion { .. })
        ));
        // A name changed after signing.
        let mut renamed = dept.cert.clone();
        renamed.body.department = "市公安局".into();
        assert!(matches!(
            renamed.verify(&mut trust, &who, t0),
            Err(DepartmentError::BadSignature { .. })
        ));
        // Certified by another key than the chain's leaf.
        let mut forged = dept.cert.clone();
        forged.body.issuer_key = key(9).verifying_key();
        forged.signature = key(9).sign(&digest(DEPARTMENT_CERT_DOMAIN, &forged.body));
        assert!(matches!(
            forged.verify(&mut trust, &who, t0),
            Err(DepartmentError::WrongIssuer { .. })
        ));
        assert!(matches!(
            DepartmentIdentity::certify(&province, " ", key(4), t0),
            Err(DepartmentError::EmptyName)
        ));
    }
}
