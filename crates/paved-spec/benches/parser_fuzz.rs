//! Runs the parser property generators for many cases (not part of the test
//! suite, which runs a smaller count). `PAVED_FUZZ_CASES` sets the count.
//!
//!     cargo bench -p paved-spec --bench parser_fuzz

#[path = "../tests/strategies.rs"]
mod strategies;

use paved_spec::{SourceFile, check_batch, parse_sources, render};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use std::time::Instant;

fn main() {
    let cases: u32 = std::env::var("PAVED_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    let start = Instant::now();
    let (mut docs, mut diags) = (0usize, 0usize);
    for i in 0..cases {
        let text = if i % 2 == 0 {
            strategies::yamlish().new_tree(&mut runner).expect("generate").current()
        } else {
            let spec = strategies::spec().new_tree(&mut runner).expect("generate").current();
            let yaml = render::to_yaml_string(&[spec.to_document()]);
            let batch = parse_sources(vec![SourceFile::new("rt.yaml", yaml.clone())]);
            assert_eq!(batch.documents.first().map(|d| &d.spec), Some(&spec), "round trip failed for:\n{yaml}");
            yaml
        };
        let mut batch = parse_sources(vec![SourceFile::new("fuzz.yaml", text)]);
        check_batch(&mut batch, &[]);
        docs += batch.documents.len();
        diags += batch.diagnostics.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parser_fuzz: {cases} inputs, no panic, {docs} valid documents, {diags} diagnostics, {secs:.1} s ({:.0} inputs/s)",
        f64::from(cases) / secs
    );
}
