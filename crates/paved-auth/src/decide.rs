//! Access decisions: may this subject do what takes `role` on this target?
//!
//! A binding grants its role (and every lesser one) to its subjects on its
//! scope: the organisation covers everything, `team:T` covers team T and the
//! services and environments it owns, `environment:E` covers E. A subject
//! acts with its own bindings and its teams' (`team:T` subjects).
//!
//! Production is guarded twice: a change to a production environment needs a
//! binding that says `production: true` or names that environment, so a
//! broad `operator` at the organisation does not reach production by default.

use paved_model::{BindingScope, Role, RoleBinding, Team};

/// What an action touches, with what scoping needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// The organisation itself (blueprints, accounts, teams, tokens, the audit log).
    Organisation,
    /// Anything the subject can see at some scope (listings, which then
    /// show only what is in reach).
    Anywhere,
    Team(&'a str),
    Service {
        name: &'a str,
        owner: Option<&'a str>,
    },
    Environment {
        name: &'a str,
        owner: &'a str,
        production: bool,
    },
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Organisation => f.write_str("the organisation"),
            Target::Anywhere => f.write_str("any scope"),
            Target::Team(t) => write!(f, "team `{t}`"),
            Target::Service { name, .. } => write!(f, "service `{name}`"),
            Target::Environment { name, production: true, .. } => write!(f, "production environment `{name}`"),
            Target::Environment { name, .. } => write!(f, "environment `{name}`"),
        }
    }
}

/// An action to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The least role that may do it.
    pub needs: Role,
    pub on: Target<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this binding (named, for the audit log).
    Allowed { binding: String },
    /// Refused, with a message that says what would allow it.
    Denied { reason: String },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// The bindings and teams in force, as read from the catalog.
pub struct Policy<'a> {
    pub bindings: &'a [RoleBinding],
    pub teams: &'a [Team],
}

impl Policy<'_> {
    /// The subjects someone acts as: themselves and each team they are in.
    pub fn subjects_of(&self, subject: &str) -> Vec<String> {
        let mut out = vec![subject.to_string()];
        out.extend(
            self.teams
                .iter()
                .filter(|t| t.spec.members.iter().any(|m| m.0 == subject))
                .map(|t| format!("team:{}", t.metadata.name)),
        );
        out
    }

    pub fn decide(&self, subject: &str, request: &Request<'_>) -> Decision {
        self.decide_among(subject, request, |_| true)
    }

    /// May `subject` read secret values on `on`? Only through a binding
    /// with `revealSecrets: true` and at least the developer role; the
    /// production rule applies as to changes.
    pub fn decide_reveal(&self, subject: &str, on: Target<'_>) -> Decision {
        let request = Request { needs: Role::Developer, on };
        match self.decide_among(subject, &request, |b| b.spec.reveal_secrets) {
            Decision::Denied { reason } if !self.decide(subject, &request).allowed() => Decision::Denied { reason },
            Decision::Denied { .. } => Decision::Denied {
                reason: format!(
                    "{subject} may work on {} but not read its secrets: that needs a role binding with `revealSecrets: true`",
                    request.on
                ),
            },
            allowed => allowed,
        }
    }

    fn decide_among(&self, subject: &str, request: &Request<'_>, eligible: impl Fn(&RoleBinding) -> bool) -> Decision {
        let subjects = self.subjects_of(subject);
        let mine =
            self.bindings.iter().filter(|b| eligible(b) && b.spec.subjects.iter().any(|s| subjects.contains(&s.0)));
        let mut held_without_production = None;
        for b in mine {
            if b.spec.role < request.needs || !covers(&b.spec.scope, &request.on) {
                continue;
            }
            if needs_production_binding(request) && !reaches_production(b, &request.on) {
                held_without_production = Some(b.metadata.name.clone());
                continue;
            }
            return Decision::Allowed { binding: b.metadata.name.clone() };
        }
        let reason = match held_without_production {
            Some(binding) => format!(
                "{subject} is {} on {} through role binding `{binding}`, but production changes need a binding \
                 with `production: true` or scoped to that environment",
                request.needs, request.on
            ),
            None => format!(
                "{subject} needs the {} role on {}; no role binding grants it (ask an admin for a RoleBinding)",
                request.needs, request.on
            ),
        };
        Decision::Denied { reason }
    }
}

fn needs_production_binding(request: &Request<'_>) -> bool {
    request.needs > Role::Viewer && matches!(request.on, Target::Environment { production: true, .. })
}

fn reaches_production(b: &RoleBinding, on: &Target<'_>) -> bool {
    b.spec.production
        || matches!((&b.spec.scope, on), (BindingScope::Environment(e), Target::Environment { name, .. }) if e == name)
}

fn covers(scope: &BindingScope, on: &Target<'_>) -> bool {
    match (scope, on) {
        (BindingScope::Organisation, _) | (_, Target::Anywhere) => true,
        (BindingScope::Team(t), Target::Team(x)) => t == x,
        (BindingScope::Team(t), Target::Service { owner, .. }) => owner.is_some_and(|o| o == t),
        (BindingScope::Team(t), Target::Environment { owner, .. }) => t == owner,
        (BindingScope::Environment(e), Target::Environment { name, .. }) => e == name,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paved_model::{BindingSubject, Metadata, RoleBindingSpec, TeamSpec, team::Subject};

    fn binding(name: &str, role: Role, subject: &str, scope: &str, production: bool) -> RoleBinding {
        RoleBinding {
            metadata: Metadata::named(name),
            spec: RoleBindingSpec {
                role,
                subjects: vec![BindingSubject(subject.into())],
                scope: BindingScope::parse(scope).unwrap(),
                production,
                reveal_secrets: false,
            },
        }
    }

    fn teams() -> Vec<Team> {
        vec![Team {
            metadata: Metadata::named("payments"),
            spec: TeamSpec { members: vec![Subject("user:grace@example.com".into())], services: vec!["api".into()] },
        }]
    }

    const DEV: Target = Target::Environment { name: "dev", owner: "payments", production: false };
    const PROD: Target = Target::Environment { name: "prod", owner: "payments", production: true };

    #[test]
    fn a_team_developer_deploys_its_non_production_environments_only() {
        let bindings = [binding("payments-dev", Role::Developer, "team:payments", "team:payments", false)];
        let teams = teams();
        let p = Policy { bindings: &bindings, teams: &teams };
        let grace = "user:grace@example.com";
        assert!(p.decide(grace, &Request { needs: Role::Developer, on: DEV }).allowed());
        assert!(p.decide(grace, &Request { needs: Role::Viewer, on: PROD }).allowed());
        let Decision::Denied { reason } = p.decide(grace, &Request { needs: Role::Developer, on: PROD }) else {
            panic!("production allowed without a production binding")
        };
        assert!(reason.contains("production: true") && reason.contains("payments-dev"), "{reason}");
        assert!(!p.decide(grace, &Request { needs: Role::Operator, on: DEV }).allowed());
        let other = Target::Environment { name: "shop", owner: "storefront", production: false };
        assert!(!p.decide(grace, &Request { needs: Role::Viewer, on: other }).allowed());
        assert!(!p.decide("user:eve@example.com", &Request { needs: Role::Viewer, on: DEV }).allowed());
    }

    #[test]
    fn production_needs_an_explicit_binding() {
        let teams = teams();
        let op = "serviceaccount:deployer";
        let flagged = [binding("prod-ops", Role::Operator, op, "organisation", true)];
        let named = [binding("prod-env", Role::Operator, op, "environment:prod", false)];
        let broad = [binding("ops", Role::Admin, op, "organisation", false)];
        let ask = Request { needs: Role::Operator, on: PROD };
        assert!(Policy { bindings: &flagged, teams: &teams }.decide(op, &ask).allowed());
        assert!(Policy { bindings: &named, teams: &teams }.decide(op, &ask).allowed());
        assert!(!Policy { bindings: &broad, teams: &teams }.decide(op, &ask).allowed());
        assert!(
            !Policy { bindings: &named, teams: &teams }
                .decide(op, &Request { needs: Role::Operator, on: DEV })
                .allowed()
        );
    }

    #[test]
    fn roles_include_lesser_ones_and_scopes_nest() {
        let teams = teams();
        let b = [binding("admins", Role::Admin, "user:ada@example.com", "organisation", false)];
        let p = Policy { bindings: &b, teams: &teams };
        for role in Role::ALL {
            for on in
                [Target::Organisation, Target::Team("payments"), Target::Service { name: "api", owner: None }, DEV]
            {
                assert!(p.decide("user:ada@example.com", &Request { needs: role, on }).allowed());
            }
        }
        let svc = [binding("api-devs", Role::Developer, "user:x", "team:payments", false)];
        let p = Policy { bindings: &svc, teams: &teams };
        assert!(
            p.decide(
                "user:x",
                &Request { needs: Role::Developer, on: Target::Service { name: "api", owner: Some("payments") } }
            )
            .allowed()
        );
        assert!(
            !p.decide("user:x", &Request { needs: Role::Developer, on: Target::Service { name: "web", owner: None } })
                .allowed()
        );
        assert!(p.decide("user:x", &Request { needs: Role::Viewer, on: Target::Anywhere }).allowed());
        assert!(!p.decide("user:x", &Request { needs: Role::Viewer, on: Target::Organisation }).allowed());
    }

    #[test]
    fn reading_secrets_is_granted_explicitly_never_by_a_role() {
        let mut revealer = binding("payments-reveal", Role::Developer, "user:ada", "team:payments", false);
        revealer.spec.reveal_secrets = true;
        let bindings = vec![binding("admins", Role::Admin, "user:root", "organisation", true), revealer];
        let teams = teams();
        let policy = Policy { bindings: &bindings, teams: &teams };
        // An admin reaching production still cannot read values.
        let Decision::Denied { reason } = policy.decide_reveal("user:root", PROD) else { panic!("admin revealed") };
        assert!(reason.contains("revealSecrets: true"), "{reason}");
        assert!(policy.decide_reveal("user:ada", DEV).allowed());
        // The production rule still applies to the grant.
        assert!(!policy.decide_reveal("user:ada", PROD).allowed());
        // Someone without any role there is told about the role first.
        let Decision::Denied { reason } = policy.decide_reveal("user:eve", DEV) else { panic!() };
        assert!(reason.contains("needs the developer role"), "{reason}");
    }
}
