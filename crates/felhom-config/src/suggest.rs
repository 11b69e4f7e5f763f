//! Typo suggestions for unknown keys and variables: the closest known name, if close.

/// The candidate closest to `word` if it is close enough to be a likely typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| {
            let lower = c.to_ascii_lowercase();
            // A truncated or extended name (`fingerprint`, `loggin`) counts as close too.
            let prefix = word.len().min(lower.len()) >= 3
                && (lower.starts_with(&word) || word.starts_with(&lower));
            let d = edit_distance(&word, &lower);
            (if prefix { d.min(1) } else { d }, c)
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
