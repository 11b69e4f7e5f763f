//! `--valid` durations: `90s`, `15m`, `2h`, `1d`, combined as `1h30m`. A unit is required, so
//! `15` is never silently seconds or minutes.

use crate::SignError;

/// Parses a duration into whole seconds.
pub fn parse_duration(input: &str) -> Result<u64, SignError> {
    let err = |problem| SignError::Duration {
        input: input.chars().take(40).collect(),
        problem,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(|| err("too large"))?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(err("units are s, m, h and d")),
        };
        let n = number
            .take()
            .ok_or_else(|| err("a unit without a number"))?;
        total = n
            .checked_mul(unit)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| err("too large"))?;
    }
    if number.is_some() {
        return Err(err("a number without a unit"));
    }
    Ok(total)
}

/// Seconds as an operator reads them: `45 s`, `14 min`, `3 h 5 min`, `6 days`.
pub fn human(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..7200 => format!("{} min", secs / 60),
        7200..172_800 if secs % 3600 >= 60 => {
            format!("{} h {} min", secs / 3600, secs % 3600 / 60)
        }
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_only() {
        for (s, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("2h", 7200),
            ("1d", 86_400),
            ("1h30m", 5400),
            ("7d", 604_800),
        ] {
            assert_eq!(parse_duration(s).unwrap(), secs, "{s}");
        }
        for (s, problem) in [
            ("15", "a number without a unit"),
            ("m", "a unit without a number"),
            ("15 min", "units are s, m, h and d"),
            ("", "empty"),
            ("99999999999999999999d", "too large"),
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.to_string().contains(problem), "{s}: {e}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(45), "45 s");
        assert_eq!(human(14 * 60 + 59), "14 min");
        assert_eq!(human(3 * 3600 + 5 * 60), "3 h 5 min");
        assert_eq!(human(3 * 3600), "3 h");
        assert_eq!(human(6 * 86_400), "6 days");
    }
}
