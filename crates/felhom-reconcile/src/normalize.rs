//! Per-field normalizers: canonical forms so Proxmox round-trip quirks never read as drift.
//!
//! A desired value and the value PVE reports are compared only after both have been brought to
//! one canonical form by the normalizer registered for that field (keyed by the PVE config key,
//! e.g. `description`, `memory`). A field without a normalizer compares exactly.
//!
//! Units: the desired side arrives in the desired model's units (bytes for `memory` and `swap`),
//! the actual side in PVE's config units (MiB). The canonical form is PVE's unit, so the
//! canonical desired value is also what gets written.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One MiB in bytes: PVE's LXC config speaks MiB for `memory` and `swap`.
pub const MIB: u64 = 1024 * 1024;

/// A config value as either side may spell it (PVE sends numbers, strings and 0/1 booleans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer (counts, sizes).
    Int(i64),
    /// Text (descriptions, property strings, lists).
    Text(String),
    /// A boolean (JSON `true`/`false`; PVE itself sends `1`/`0`).
    Bool(bool),
}

/// Brings one field's values to a canonical form. `None` means "the key is not set".
///
/// Implementations must be idempotent (`canonical(canonical(x)) == canonical(x)`), or a value
/// written in its canonical form would read back as drift forever.
pub trait Normalizer: Send + Sync + fmt::Debug {
    /// Canonical form of a value as PVE reported it.
    fn actual(&self, value: &Value) -> Option<Value>;

    /// Canonical form of a desired value (in the desired model's units); by default the same
    /// canonicalization as [`Normalizer::actual`].
    fn desired(&self, value: &Value) -> Option<Value> {
        self.actual(value)
    }

    /// Whether desired text and the text PVE reported (`None`: the key is absent) have the
    /// same canonical form. The default builds the [`Value`]s and compares them; a normalizer
    /// on a hot text field (the description, once per guest per pass) overrides it to compare
    /// without allocating. An override must agree with the default.
    fn equivalent_text(&self, desired: &str, actual: Option<&str>) -> bool {
        let actual = actual.and_then(|text| self.actual(&Value::Text(text.to_owned())));
        self.desired(&Value::Text(desired.to_owned())) == actual
    }
}

/// What PVE reads back after storing `text` as an LXC description (PVE-API.md §7.1), or `None`
/// when nothing is stored.
///
/// PVE writes each line of `split(/\n/, $descr)` as a `#` comment and appends `"\n"` to every
/// line on read. Perl's `split` drops trailing empty fields, so trailing blank lines vanish while
/// leading and inner ones stay; a text of only newlines (or empty) stores nothing.
pub fn pve_description_roundtrip(text: &str) -> Option<String> {
    let body = text.trim_end_matches('\n');
    if body.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(body.len() + 1);
    out.push_str(body);
    out.push('\n');
    Some(out)
}

/// The LXC description: compared as PVE would read it back (trailing newline added, trailing
/// blank lines dropped, an empty text meaning "no description").
///
/// A legacy `description: text` config line reads back without the newline; canonicalizing
/// both sides covers it too.
#[derive(Debug, Clone, Copy, Default)]
pub struct DescriptionNormalizer;

impl Normalizer for DescriptionNormalizer {
    fn actual(&self, value: &Value) -> Option<Value> {
        match value {
            Value::Text(text) => pve_description_roundtrip(text).map(Value::Text),
            other => Some(other.clone()),
        }
    }

    fn equivalent_text(&self, desired: &str, actual: Option<&str>) -> bool {
        // The canonical form is the body plus one newline (or nothing for an empty body), so
        // two texts are equivalent exactly when their bodies are.
        fn body(text: &str) -> Option<&str> {
            let body = text.trim_end_matches('\n');
            (!body.is_empty()).then_some(body)
        }
        body(desired) == actual.and_then(body)
    }
}

/// A size the desired model states in bytes and PVE's config in MiB (`memory`, `swap`).
///
/// The desired byte count is rounded UP to whole MiB: PVE stores whole MiB, so rounding once
/// here means the written value reads back equal and the guest converges in one pass (rounding
/// down would under-provision; not rounding would be drift forever).
#[derive(Debug, Clone, Copy, Default)]
pub struct MibFromBytes;

impl Normalizer for MibFromBytes {
    fn actual(&self, value: &Value) -> Option<Value> {
        // PVE has sent numbers as strings before (PVE-API.md §7.3): accept a numeric string.
        match value {
            Value::Text(text) => match text.trim().parse::<i64>() {
                Ok(n) => Some(Value::Int(n)),
                Err(_) => Some(value.clone()),
            },
            other => Some(other.clone()),
        }
    }

    fn desired(&self, value: &Value) -> Option<Value> {
        match value {
            Value::Int(bytes) if *bytes >= 0 => {
                // i64 -> u64 is lossless for non-negative values; the quotient fits back.
                let mib = (*bytes as u64).div_ceil(MIB);
                Some(Value::Int(mib as i64))
            }
            other => Some(other.clone()),
        }
    }
}

/// A PVE boolean: `1`, `"1"`, `true`, `"on"`, `"yes"`, `"true"` are all true (and their
/// opposites false), as PVE's config parser and `proxmox-serde` accept them (PVE-API.md §7.2).
/// A value that is none of these is left as it is, so it reads as drift rather than a guess.
#[derive(Debug, Clone, Copy, Default)]
pub struct BoolNormalizer;

impl Normalizer for BoolNormalizer {
    fn actual(&self, value: &Value) -> Option<Value> {
        let coerced = match value {
            Value::Bool(b) => Some(*b),
            Value::Int(1) => Some(true),
            Value::Int(0) => Some(false),
            Value::Int(_) => None,
            Value::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                "1" | "on" | "yes" | "true" => Some(true),
                "0" | "off" | "no" | "false" => Some(false),
                _ => None,
            },
        };
        Some(coerced.map_or_else(|| value.clone(), Value::Bool))
    }
}

/// A list in one string whose order carries no meaning (e.g. `tags` `"b;a"` == `"a;b"`):
/// split on any of the separators, empty items dropped, sorted, deduplicated (PVE dedups tags),
/// joined with the first separator. An empty list means "not set".
#[derive(Debug, Clone)]
pub struct UnorderedListNormalizer {
    separators: Vec<char>,
}

impl UnorderedListNormalizer {
    /// A list split on any of `separators`; the first one joins the canonical form.
    /// With no separators given, `;` is used (PVE's tag separator).
    pub fn new(separators: &str) -> Self {
        let mut separators: Vec<char> = separators.chars().collect();
        if separators.is_empty() {
            separators.push(';');
        }
        Self { separators }
    }
}

impl Default for UnorderedListNormalizer {
    /// PVE's `pve-tag-list` separators: `;`, `,` and whitespace (PVE-API.md §6.1).
    fn default() -> Self {
        Self::new("; ,\t\n")
    }
}

impl Normalizer for UnorderedListNormalizer {
    fn actual(&self, value: &Value) -> Option<Value> {
        let Value::Text(text) = value else {
            return Some(value.clone());
        };
        let mut items: Vec<&str> = text
            .split(|c| self.separators.contains(&c))
            .filter(|item| !item.is_empty())
            .collect();
        if items.is_empty() {
            return None;
        }
        items.sort_unstable();
        items.dedup();
        let joiner = self.separators[0].to_string();
        Some(Value::Text(items.join(&joiner)))
    }
}

/// Normalizers keyed by field name (the PVE config key). Cheap to clone.
#[derive(Debug, Clone)]
pub struct NormalizerRegistry {
    by_field: BTreeMap<String, Arc<dyn Normalizer>>,
}

impl NormalizerRegistry {
    /// A registry with no normalizers: every field compares exactly. Only useful as a base for
    /// custom registries; the plan needs [`NormalizerRegistry::pve`]'s unit conversions.
    pub fn empty() -> Self {
        Self {
            by_field: BTreeMap::new(),
        }
    }

    /// The normalizers the plan relies on: `description` (PVE's newline quirk), `memory` and
    /// `swap` (bytes desired, MiB in PVE's config).
    pub fn pve() -> Self {
        let mut registry = Self::empty();
        registry.register("description", DescriptionNormalizer);
        registry.register("memory", MibFromBytes);
        registry.register("swap", MibFromBytes);
        registry
    }

    /// Registers (or replaces) the normalizer for `field`, returning the one it replaced.
    pub fn register(
        &mut self,
        field: impl Into<String>,
        normalizer: impl Normalizer + 'static,
    ) -> Option<Arc<dyn Normalizer>> {
        self.by_field.insert(field.into(), Arc::new(normalizer))
    }

    /// The normalizer registered for `field`, if any.
    pub fn get(&self, field: &str) -> Option<&Arc<dyn Normalizer>> {
        self.by_field.get(field)
    }

    /// Canonical form of a desired value for `field` (`None`: the key should not be set).
    pub fn desired(&self, field: &str, value: &Value) -> Option<Value> {
        match self.by_field.get(field) {
            Some(normalizer) => normalizer.desired(value),
            None => Some(value.clone()),
        }
    }

    /// Canonical form of a value PVE reported for `field` (`None`: the key is not set).
    pub fn actual(&self, field: &str, value: &Value) -> Option<Value> {
        match self.by_field.get(field) {
            Some(normalizer) => normalizer.actual(value),
            None => Some(value.clone()),
        }
    }

    /// Whether `desired` and `actual` (`None`: the key is absent) mean the same for `field`.
    pub fn equivalent(&self, field: &str, desired: &Value, actual: Option<&Value>) -> bool {
        let actual = actual.and_then(|value| self.actual(field, value));
        self.desired(field, desired) == actual
    }

    /// [`NormalizerRegistry::equivalent`] for text on both sides, without building [`Value`]s
    /// (allocation-free for the built-in normalizers and for unregistered fields).
    pub fn equivalent_text(&self, field: &str, desired: &str, actual: Option<&str>) -> bool {
        match self.by_field.get(field) {
            Some(normalizer) => normalizer.equivalent_text(desired, actual),
            None => actual == Some(desired),
        }
    }
}

impl Default for NormalizerRegistry {
    /// The PVE registry ([`NormalizerRegistry::pve`]).
    fn default() -> Self {
        Self::pve()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    /// `check(registry, field, desired, actual, expect_equivalent)`.
    fn check(
        registry: &NormalizerRegistry,
        field: &str,
        desired: Value,
        actual: Option<Value>,
        expect: bool,
    ) {
        assert_eq!(
            registry.equivalent(field, &desired, actual.as_ref()),
            expect,
            "{field}: desired {desired:?} vs actual {actual:?}"
        );
    }

    #[test]
    fn description_roundtrip_follows_pve_rules() {
        let cases: &[(&str, Option<&str>)] = &[
            ("web", Some("web\n")),
            ("web\n", Some("web\n")),
            ("a\nb", Some("a\nb\n")),
            ("a\n\nb", Some("a\n\nb\n")),
            ("a\n\n\n", Some("a\n")),
            ("\n\na", Some("\n\na\n")),
            ("a\r\nb", Some("a\r\nb\n")),
            ("", None),
            ("\n", None),
            ("\n\n\n", None),
            ("  ", Some("  \n")),
        ];
        for (input, expect) in cases {
            assert_eq!(
                pve_description_roundtrip(input).as_deref(),
                *expect,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn description_newline_is_not_drift() {
        let registry = NormalizerRegistry::pve();
        check(
            &registry,
            "description",
            text("web"),
            Some(text("web\n")),
            true,
        );
        // legacy `description:` key line: read back without the newline
        check(
            &registry,
            "description",
            text("web"),
            Some(text("web")),
            true,
        );
        check(
            &registry,
            "description",
            text("a\n\n"),
            Some(text("a\n")),
            true,
        );
        check(&registry, "description", text(""), None, true);
        check(&registry, "description", text("\n"), None, true);
        check(
            &registry,
            "description",
            text("web"),
            Some(text("web2\n")),
            false,
        );
        check(&registry, "description", text("web"), None, false);
        check(
            &registry,
            "description",
            text(""),
            Some(text("web\n")),
            false,
        );
        // leading blank lines are kept by PVE, so they are content
        check(
            &registry,
            "description",
            text("\nweb"),
            Some(text("web\n")),
            false,
        );
    }

    #[test]
    fn memory_canonicalizes_to_mib_rounding_up() {
        let registry = NormalizerRegistry::pve();
        let gib4 = 4 * 1024 * MIB as i64;
        check(
            &registry,
            "memory",
            Value::Int(gib4),
            Some(Value::Int(4096)),
            true,
        );
        check(
            &registry,
            "memory",
            Value::Int(gib4 + 1),
            Some(Value::Int(4097)),
            true,
        );
        check(
            &registry,
            "memory",
            Value::Int(gib4 + 1),
            Some(Value::Int(4096)),
            false,
        );
        check(
            &registry,
            "memory",
            Value::Int(gib4),
            Some(text("4096")),
            true,
        );
        check(&registry, "swap", Value::Int(0), Some(Value::Int(0)), true);
        check(&registry, "swap", Value::Int(1), Some(Value::Int(1)), true);
        check(&registry, "memory", Value::Int(gib4), None, false);
        assert_eq!(
            registry.desired("memory", &Value::Int(gib4 - 1)),
            Some(Value::Int(4096))
        );
    }

    #[test]
    fn unregistered_fields_compare_exactly() {
        let registry = NormalizerRegistry::pve();
        check(&registry, "cores", Value::Int(2), Some(Value::Int(2)), true);
        check(
            &registry,
            "cores",
            Value::Int(2),
            Some(Value::Int(3)),
            false,
        );
        check(&registry, "onboot", Value::Int(1), Some(text("1")), false);
    }

    #[test]
    fn boolean_coercion_when_registered() {
        let mut registry = NormalizerRegistry::pve();
        assert!(registry.register("onboot", BoolNormalizer).is_none());
        let trues = [
            Value::Int(1),
            text("1"),
            Value::Bool(true),
            text("on"),
            text("yes"),
            text("TRUE"),
        ];
        for desired in &trues {
            for actual in &trues {
                check(
                    &registry,
                    "onboot",
                    desired.clone(),
                    Some(actual.clone()),
                    true,
                );
            }
            check(
                &registry,
                "onboot",
                desired.clone(),
                Some(Value::Int(0)),
                false,
            );
            check(
                &registry,
                "onboot",
                desired.clone(),
                Some(text("off")),
                false,
            );
        }
        check(
            &registry,
            "onboot",
            Value::Bool(false),
            Some(text("no")),
            true,
        );
        // not a boolean at all: compared as is, never guessed
        check(
            &registry,
            "onboot",
            text("maybe"),
            Some(Value::Bool(true)),
            false,
        );
        check(
            &registry,
            "onboot",
            Value::Int(2),
            Some(Value::Int(2)),
            true,
        );
    }

    #[test]
    fn list_order_when_registered() {
        let mut registry = NormalizerRegistry::pve();
        registry.register("tags", UnorderedListNormalizer::default());
        check(&registry, "tags", text("b;a"), Some(text("a;b")), true);
        check(&registry, "tags", text("b,a a"), Some(text("a;b")), true);
        check(&registry, "tags", text("a;b"), Some(text("a;b;c")), false);
        check(&registry, "tags", text(""), None, true);
        check(&registry, "tags", text(";;"), None, true);
        assert_eq!(
            registry.desired("tags", &text("web; db;web")),
            Some(text("db;web"))
        );
    }

    #[test]
    fn custom_normalizer_from_outside() {
        /// Hostnames are case-insensitive.
        #[derive(Debug)]
        struct Lowercase;
        impl Normalizer for Lowercase {
            fn actual(&self, value: &Value) -> Option<Value> {
                match value {
                    Value::Text(t) => Some(Value::Text(t.to_lowercase())),
                    other => Some(other.clone()),
                }
            }
        }
        let mut registry = NormalizerRegistry::empty();
        check(&registry, "hostname", text("Web"), Some(text("web")), false);
        registry.register("hostname", Lowercase);
        check(&registry, "hostname", text("Web"), Some(text("web")), true);
        assert!(registry.get("hostname").is_some());
        // replacing returns the previous one
        assert!(registry.register("hostname", Lowercase).is_some());
    }

    #[test]
    fn normalizers_are_idempotent() {
        let registry = {
            let mut r = NormalizerRegistry::pve();
            r.register("onboot", BoolNormalizer);
            r.register("tags", UnorderedListNormalizer::default());
            r
        };
        let samples = [
            ("description", text("a\n\nb\n\n")),
            ("description", text("\nx")),
            ("memory", Value::Int(4096)),
            ("onboot", text("on")),
            ("tags", text("c b;a,a")),
        ];
        for (field, value) in samples {
            let once = registry.actual(field, &value).expect("set");
            assert_eq!(registry.actual(field, &once), Some(once.clone()), "{field}");
        }
    }

    /// The allocation-free text comparison must agree with the `Value` one, for the built-in
    /// description override, for an unregistered field and for a normalizer using the default.
    #[test]
    fn text_comparison_agrees_with_value_comparison() {
        let mut registry = NormalizerRegistry::pve();
        registry.register("tags", UnorderedListNormalizer::default());
        let texts = [
            "", "\n", "\n\n", "a", "a\n", "a\n\n", "\na", "\na\n", "a\nb", "a\n\nb\n", "A", " a",
            "a ", "b;a", "a;b", "a;b;",
        ];
        for field in ["description", "hostname", "tags"] {
            for desired in texts {
                for actual in texts.iter().copied().map(Some).chain([None]) {
                    assert_eq!(
                        registry.equivalent_text(field, desired, actual),
                        registry.equivalent(field, &text(desired), actual.map(text).as_ref()),
                        "{field}: {desired:?} vs {actual:?}"
                    );
                }
            }
        }
        assert!(registry.equivalent_text("description", "web", Some("web\n\n")));
        assert!(!registry.equivalent_text("description", "web", Some("web \n")));
        assert!(registry.equivalent_text("description", "\n", None));
        assert!(!registry.equivalent_text("description", "web", None));
    }
}
