//! Preview environments: one per pull request, short-lived, from a blueprint
//! that offers them.

use crate::duration::SpecDuration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A blueprint's offer of preview environments (`spec.preview`). Previews take
/// the parameters' `preview` defaults (the smallest sizes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreviewSpec {
    /// How long a preview lives after its pull request was last updated.
    #[serde(default = "default_ttl")]
    pub ttl: SpecDuration,
    /// Open previews one team may have at once; one more is refused.
    #[serde(default = "default_max_per_team")]
    pub max_per_team: u32,
}

fn default_ttl() -> SpecDuration {
    SpecDuration("72h".into())
}

fn default_max_per_team() -> u32 {
    5
}

impl Default for PreviewSpec {
    fn default() -> PreviewSpec {
        PreviewSpec { ttl: default_ttl(), max_per_team: default_max_per_team() }
    }
}
