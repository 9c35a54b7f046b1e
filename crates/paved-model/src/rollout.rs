//! How a new artifact replaces the running one, and the order in which
//! environments receive an artifact (promotion stages).

use crate::duration::SpecDuration;
use crate::environment::EnvType;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a deployment replaces what runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Stop the old version, start the new one (a gap in service).
    Recreate,
    /// Start the new version beside the old, switch traffic when it is ready,
    /// stop the old, then soak; a failure in the soak switches back.
    #[default]
    Rolling,
    /// Start the new version beside the old and soak it *before* switching:
    /// the old one serves until the new one has proven itself.
    BlueGreen,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Recreate, Strategy::Rolling, Strategy::BlueGreen];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Recreate => "recreate",
            Strategy::Rolling => "rolling",
            Strategy::BlueGreen => "blue-green",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A blueprint's defaults for deployments to its environments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// Used when a deployment names none.
    #[serde(default)]
    pub strategy: Strategy,
    /// How long a new version must stay ready (and running) before it counts as healthy.
    #[serde(default = "default_soak")]
    pub soak: SpecDuration,
    /// How long a new version may take to become ready before the deployment fails.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: SpecDuration,
    /// The order in which environment types receive an artifact: an environment
    /// accepts only digests already healthy in an environment of the type before
    /// its own. Types not listed (previews) accept any recorded artifact.
    #[serde(default = "default_stages")]
    pub stages: Vec<EnvType>,
}

fn default_soak() -> SpecDuration {
    SpecDuration("5s".into())
}

fn default_ready_timeout() -> SpecDuration {
    SpecDuration("2m".into())
}

fn default_stages() -> Vec<EnvType> {
    vec![EnvType::Development, EnvType::Staging, EnvType::Production]
}

impl Default for RolloutSpec {
    fn default() -> RolloutSpec {
        RolloutSpec {
            strategy: Strategy::default(),
            soak: default_soak(),
            ready_timeout: default_ready_timeout(),
            stages: default_stages(),
        }
    }
}

impl RolloutSpec {
    pub fn is_default(&self) -> bool {
        *self == RolloutSpec::default()
    }
}
