//! The four DORA figures, from the deployment history of production
//! environments, per service and per team (the service's `paved.dev/owner`).
//!
//! Over a window ending at `now`:
//! * deployment frequency: deployments that became healthy, per day;
//! * lead time for changes: median of (healthy at − commit time of the artifact);
//! * change failure rate: deployments that failed or were rolled back, over
//!   all that finished;
//! * time to restore: mean of (failure → the next deployment of that service
//!   and environment that became healthy).
//!
//! A pure function of its inputs, so a scripted history has exact answers.

use paved_store::{Artifact, Deployment, DeploymentStatus};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::{Duration, OffsetDateTime};

/// DORA figures of one service, or of a team (`service` = `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dora {
    pub team: String,
    pub service: Option<String>,
    pub window_days: u32,
    /// Deployments that finished (healthy, failed or rolled back) in the window.
    pub deployments: usize,
    pub deployment_frequency_per_day: f64,
    pub lead_time_seconds: Option<f64>,
    pub change_failure_rate: Option<f64>,
    pub time_to_restore_seconds: Option<f64>,
}

/// What the figures are computed from.
pub struct History<'a> {
    pub deployments: &'a [Deployment],
    pub artifacts: &'a BTreeMap<String, Artifact>,
    /// Environments whose deployments count (production).
    pub environments: &'a BTreeSet<String>,
    /// Service → owning team.
    pub owners: &'a BTreeMap<String, String>,
}

fn seconds(d: Duration) -> f64 {
    d.as_seconds_f64()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn failed(s: DeploymentStatus) -> bool {
    matches!(s, DeploymentStatus::Failed | DeploymentStatus::RolledBack)
}

/// Figures over `deployments` (all of them in counted environments).
fn figures(
    h: &History<'_>,
    of: &[&Deployment],
    since: OffsetDateTime,
    days: u32,
) -> (usize, f64, Option<f64>, Option<f64>, Option<f64>) {
    let in_window = |d: &&&Deployment| d.finished_at.is_some_and(|f| f >= since);
    let finished: Vec<&&Deployment> = of.iter().filter(in_window).collect();
    let healthy: Vec<&&&Deployment> = finished.iter().filter(|d| d.status.was_healthy()).collect();
    let frequency = healthy.len() as f64 / f64::from(days.max(1));
    let lead = median(
        healthy
            .iter()
            .filter_map(|d| {
                let commit = h.artifacts.get(&d.artifact)?.commit_time?;
                Some(seconds(d.finished_at? - commit))
            })
            .collect(),
    );
    let failures: Vec<&&&Deployment> = finished.iter().filter(|d| failed(d.status)).collect();
    let rate = (!finished.is_empty()).then(|| failures.len() as f64 / finished.len() as f64);
    let restores: Vec<f64> = failures
        .iter()
        .filter_map(|f| {
            let failed_at = f.finished_at?;
            of.iter()
                .filter(|d| d.environment == f.environment && d.number > f.number && d.status.was_healthy())
                .filter_map(|d| d.finished_at)
                .min()
                .map(|restored| seconds(restored - failed_at))
        })
        .collect();
    (finished.len(), frequency, lead, rate, mean(&restores))
}

/// Per service, then per team, sorted by team and service.
pub fn dora(h: &History<'_>, now: OffsetDateTime, window_days: u32) -> Vec<Dora> {
    let since = now - Duration::days(i64::from(window_days));
    let counted: Vec<&Deployment> = h.deployments.iter().filter(|d| h.environments.contains(&d.environment)).collect();
    let team_of = |service: &str| h.owners.get(service).cloned().unwrap_or_else(|| "unowned".into());
    let mut by_service: BTreeMap<(String, String), Vec<&Deployment>> = BTreeMap::new();
    let mut by_team: BTreeMap<String, Vec<&Deployment>> = BTreeMap::new();
    for d in &counted {
        by_service.entry((team_of(&d.service), d.service.clone())).or_default().push(d);
        by_team.entry(team_of(&d.service)).or_default().push(d);
    }
    let row = |team: String, service: Option<String>, of: &[&Deployment]| {
        let (deployments, frequency, lead, rate, restore) = figures(h, of, since, window_days);
        Dora {
            team,
            service,
            window_days,
            deployments,
            deployment_frequency_per_day: frequency,
            lead_time_seconds: lead,
            change_failure_rate: rate,
            time_to_restore_seconds: restore,
        }
    };
    let mut out: Vec<Dora> =
        by_service.into_iter().map(|((team, service), of)| row(team, Some(service), &of)).collect();
    out.extend(by_team.into_iter().map(|(team, of)| row(team, None, &of)));
    out.sort_by(|a, b| (&a.team, &a.service).cmp(&(&b.team, &b.service)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn deployment(
        service: &str,
        env: &str,
        number: i64,
        artifact: &str,
        status: DeploymentStatus,
        finished: OffsetDateTime,
    ) -> Deployment {
        Deployment {
            environment: env.into(),
            service: service.into(),
            number,
            artifact: artifact.into(),
            strategy: "rolling".into(),
            soak_ms: 0,
            ready_timeout_ms: 0,
            status,
            reason: None,
            actor: "ci".into(),
            request_id: format!("{service}-{env}-{number}"),
            origin: None,
            created_at: finished - Duration::minutes(5),
            updated_at: finished,
            finished_at: Some(finished),
        }
    }

    fn artifact(digest: &str, service: &str, commit_time: OffsetDateTime) -> (String, Artifact) {
        let a = Artifact {
            digest: digest.into(),
            service: service.into(),
            commit: Some(digest.into()),
            commit_time: Some(commit_time),
            branch: Some("main".into()),
            builder: "ci".into(),
            created_at: commit_time,
            tags: vec![],
        };
        (digest.into(), a)
    }

    /// A scripted week of `api` and `web` in production, figures worked out by hand.
    #[test]
    fn a_scripted_history_gives_the_hand_computed_figures() {
        use DeploymentStatus::*;
        let day = |d: u8, h: u8| datetime!(2026-11-01 00:00 UTC).replace_day(d).unwrap().replace_hour(h).unwrap();
        let deployments = vec![
            // api: commit a1 at day 1 08:00, healthy 10:00 (lead 2 h).
            deployment("api", "production", 1, "a1", Superseded, day(1, 10)),
            // a2 committed day 2 06:00, failed at day 2 12:00 …
            deployment("api", "production", 2, "a2", RolledBack, day(2, 12)),
            // … a3 committed day 2 13:00, healthy 16:00: restored 4 h after the failure (lead 3 h).
            deployment("api", "production", 3, "a3", Superseded, day(2, 16)),
            // a4 committed day 3 00:00, healthy day 3 06:00 (lead 6 h).
            deployment("api", "production", 4, "a4", Healthy, day(3, 6)),
            // In staging: never counted.
            deployment("api", "staging", 1, "a2", Failed, day(2, 9)),
            // web (team web): one healthy, lead 1 h; one failed never restored.
            deployment("web", "production", 1, "w1", Superseded, day(4, 11)),
            deployment("web", "production", 2, "w2", Failed, day(5, 11)),
            // Before the window: not counted.
            deployment("web", "production", 0, "w0", Superseded, datetime!(2026-09-01 00:00 UTC)),
        ];
        let artifacts: BTreeMap<String, Artifact> = [
            artifact("a1", "api", day(1, 8)),
            artifact("a2", "api", day(2, 6)),
            artifact("a3", "api", day(2, 13)),
            artifact("a4", "api", day(3, 0)),
            artifact("w1", "web", day(4, 10)),
            artifact("w2", "web", day(5, 9)),
        ]
        .into();
        let environments = BTreeSet::from(["production".to_string()]);
        let owners =
            BTreeMap::from([("api".to_string(), "payments".to_string()), ("web".to_string(), "web".to_string())]);
        let h =
            History { deployments: &deployments, artifacts: &artifacts, environments: &environments, owners: &owners };
        let figures = dora(&h, day(8, 0), 7);
        let find = |team: &str, service: Option<&str>| {
            figures.iter().find(|f| f.team == team && f.service.as_deref() == service).unwrap().clone()
        };
        let api = find("payments", Some("api"));
        assert_eq!(api.deployments, 4);
        assert_eq!(api.deployment_frequency_per_day, 3.0 / 7.0);
        assert_eq!(api.lead_time_seconds, Some(3.0 * 3600.0), "median of 2 h, 3 h, 6 h");
        assert_eq!(api.change_failure_rate, Some(0.25));
        assert_eq!(api.time_to_restore_seconds, Some(4.0 * 3600.0));
        let web = find("web", Some("web"));
        assert_eq!(web.deployments, 2, "the one before the window is left out");
        assert_eq!(web.lead_time_seconds, Some(3600.0));
        assert_eq!(web.change_failure_rate, Some(0.5));
        assert_eq!(web.time_to_restore_seconds, None, "not restored yet");
        // A team's figures pool its services'.
        let payments = find("payments", None);
        assert_eq!(payments, Dora { service: None, ..api });
    }
}
