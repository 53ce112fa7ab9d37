//! Revocations in force on the network: a signed [`Revocation`] (an ancestor jurisdiction
//! declares a descendant's key void, or the offline root a national key) spreads over the
//! control plane to every node that could meet the key, is persisted by each, and from then on
//! that key — and every certificate it issued — is refused: in admission, in signatures, and
//! for peers already connected ([`crate::endpoint::Endpoint`] re-checks them at once).
//!
//! # Who hears of a revocation
//! A node admits only its ancestors and descendants, and checks signatures only of its line
//! (manifests from ancestors, receipts and catalog versions from descendants). So a revocation
//! of region R's key matters exactly to the regions in line with R: R's ancestors and R's
//! descendants. A node sends one to each admitted peer in line with R (except the one it came
//! from), and when a peer is admitted, every revocation it knows in line with that peer — so a
//! node that was offline catches up at its next connection. The revoked node itself is not
//! sent its own revocation (it is dropped at once, and its operator sees why in the refusals). A province's revocation of one
//! county thus travels up to national and down that county's subtree; the root's revocation of
//! a national key reaches every node.
//!
//! Flooding stops by itself: a node forwards only revocations that were new to it.
//!
//! # What a revoked key leaves behind
//! Certificates form a chain: a revoked county key voids the certificates it issued, so its
//! townships are refused too until the county's new key certifies them again
//! (`backflow cert rotate` at the county, `backflow cert issue` for each township). Those
//! townships hear of the revocation only through an ancestor that still admits them, which
//! none does; their operators learn it from the refusals (`PeerRefused: … revoked`).

use serde::{Deserialize, Serialize};

use crate::cert::{check_chain_limits, Revocation};
use crate::limits::{check_len, Bounded, LimitError};
use crate::RegionCode;

/// Revocations in one message: each is a signature and a chain of at most four certificates
/// (under 1 KiB), so 64 stay far below a frame, and the most a peer can make a node verify per
/// message is bounded.
pub const REVOCATIONS_PER_MESSAGE_MAX: usize = 64;

/// A batch of signed revocations, sent to a peer in line with their subjects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationMsg {
    pub revocations: Vec<Revocation>,
}

impl Bounded for RevocationMsg {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_len(
            "revocations per message",
            self.revocations.len(),
            REVOCATIONS_PER_MESSAGE_MAX,
        )?;
        for r in &self.revocations {
            check_chain_limits(&r.issuer_chain)?;
        }
        Ok(())
    }
}

/// Whether a revocation of `subject`'s key matters to `region`: one is an ancestor of the other
/// (or they are the same region).
pub fn in_line(subject: RegionCode, region: RegionCode) -> bool {
    subject.contains(region) || region.contains(subject)
}

/// `revocations` in line with `region`, as messages of at most
/// [`REVOCATIONS_PER_MESSAGE_MAX`].
pub fn messages_for<'a>(
    revocations: impl IntoIterator<Item = &'a Revocation>,
    region: RegionCode,
) -> Vec<RevocationMsg> {
    let wanted: Vec<Revocation> = revocations
        .into_iter()
        .filter(|r| in_line(r.subject, region))
        .cloned()
        .collect();
    wanted
        .chunks(REVOCATIONS_PER_MESSAGE_MAX)
        .map(|c| RevocationMsg {
            revocations: c.to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn a_revocation_matters_to_the_subjects_line_only() {
        let county = code("330105");
        assert!(in_line(county, RegionCode::NATIONAL));
        assert!(in_line(county, code("33")));
        assert!(in_line(county, code("3301")));
        assert!(in_line(county, county));
        assert!(in_line(county, code("330105001")));
        assert!(!in_line(county, code("330102")));
        assert!(!in_line(county, code("330102001")));
        assert!(!in_line(county, code("11")));
        // The national key's revocation reaches everyone.
        assert!(in_line(RegionCode::NATIONAL, code("330102001")));
    }
}
