//! Property tests: rendering a spec and parsing it back gives the same spec;
//! no input makes the parser panic. (`cargo bench -p paved-spec --bench
//! parser_fuzz` runs the same generators for many more cases.)

mod strategies;

use paved_spec::{SourceFile, parse_sources, render};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn render_then_parse_round_trips(spec in strategies::spec()) {
        let yaml = render::to_yaml_string(&[spec.to_document()]);
        let batch = parse_sources(vec![SourceFile::new("gen.yaml", yaml.clone())]);
        let errors: Vec<String> = batch.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.short()).collect();
        prop_assert!(errors.is_empty(), "{:?}\n{}", errors, yaml);
        prop_assert_eq!(batch.documents.len(), 1);
        prop_assert_eq!(&batch.documents[0].spec, &spec, "{}", yaml);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let mut batch = parse_sources(vec![SourceFile::new("any.yaml", text)]);
        paved_spec::check_batch(&mut batch, &[]);
    }

    #[test]
    fn yaml_like_text_never_panics(text in strategies::yamlish()) {
        let mut batch = parse_sources(vec![SourceFile::new("y.yaml", text)]);
        paved_spec::check_batch(&mut batch, &[]);
        // Whatever is reported must point inside the file.
        for d in &batch.diagnostics {
            prop_assert!(d.line >= 1 && d.column >= 1);
        }
    }
}
