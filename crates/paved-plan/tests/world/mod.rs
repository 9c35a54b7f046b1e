//! The example platform, read and checked as `paved apply -f examples/` would, for plan tests.
#![allow(dead_code)]

use paved_model::{Blueprint, CloudAccount, Environment, Kind, Spec, Workload};
use paved_plan::{Capabilities, PlanInput};
use paved_spec::SourceFile;
use std::path::Path;

pub struct World {
    pub specs: Vec<Spec>,
}

impl World {
    pub fn examples() -> World {
        World::with_extra(vec![])
    }

    /// The examples plus extra documents (replacing same-named ones).
    pub fn with_extra(extra: Vec<SourceFile>) -> World {
        let (mut sources, diags) = paved_spec::read_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"));
        assert!(diags.is_empty());
        let extra_names: Vec<String> = extra.iter().map(|s| s.path.clone()).collect();
        sources.retain(|s| !extra_names.iter().any(|e| s.path.ends_with(e.as_str())));
        sources.extend(extra);
        let batch = paved_spec::check_sources(sources, vec![], &[]);
        let errors: Vec<String> = batch.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.short()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        World { specs: batch.documents.into_iter().map(|d| d.spec).collect() }
    }

    pub fn find<T>(&self, kind: Kind, name: &str, pick: impl Fn(&Spec) -> Option<&T>) -> &T {
        self.specs.iter().filter(|s| s.kind() == kind && s.object_name() == name).find_map(pick).unwrap()
    }

    pub fn input(&self, env: &str, caps: Capabilities) -> PlanInput<'_> {
        let e: &Environment =
            self.find(Kind::Environment, env, |s| if let Spec::Environment(e) = s { Some(e) } else { None });
        let b: &Blueprint = self
            .find(Kind::Blueprint, &e.spec.blueprint.0, |s| if let Spec::Blueprint(b) = s { Some(b) } else { None });
        let a: &CloudAccount = self
            .find(Kind::CloudAccount, &e.spec.account, |s| if let Spec::CloudAccount(a) = s { Some(a) } else { None });
        let services: Vec<&Workload> =
            self.specs.iter().filter_map(|s| if let Spec::Service(w) = s { Some(w) } else { None }).collect();
        PlanInput {
            environment: e,
            blueprint: b,
            account: a,
            services,
            capabilities: caps,
            addresses: Default::default(),
            releases: Default::default(),
            host: None,
            zones: None,
        }
    }
}
