//! "Did you mean …?" suggestions for misspelt names.

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a, S: AsRef<str>>(word: &str, candidates: &'a [S]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| c.as_ref())
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let fields = ["replicas", "size", "autoscaling", "runtime"];
        assert_eq!(did_you_mean("replcas", &fields), Some("replicas"));
        assert_eq!(did_you_mean("Runtime", &fields), Some("runtime"));
        assert_eq!(did_you_mean("zzz", &fields), None);
    }
}
