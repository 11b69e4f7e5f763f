//! Parameter checking as `PVE::JSONSchema::validate` does it (pure), driven by the subset of the
//! official PVE 9 API schema for the endpoints the simulator serves
//! (`testdata/pve-sim-params.json`, derived from pve-docs `apidata.js`; the schema itself is not
//! in the repository).
//!
//! Regenerate or check the table against a schema file:
//! `FELHOM_PVE_SCHEMA=/path/to/pve-api-schema-9.json [PVE_SIM_PARAMS_BLESS=1] cargo test -p
//! felhom-pve-sim params::tests::table_matches_the_official_schema`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// Every method and path the simulator serves, as the schema names them.
pub(crate) const SERVED: &[&str] = &[
    "GET /version",
    "GET /nodes",
    "GET /nodes/{node}/status",
    "GET /nodes/{node}/lxc",
    "POST /nodes/{node}/lxc",
    "DELETE /nodes/{node}/lxc/{vmid}",
    "GET /nodes/{node}/lxc/{vmid}/status/current",
    "POST /nodes/{node}/lxc/{vmid}/status/start",
    "POST /nodes/{node}/lxc/{vmid}/status/stop",
    "POST /nodes/{node}/lxc/{vmid}/status/shutdown",
    "GET /nodes/{node}/lxc/{vmid}/config",
    "PUT /nodes/{node}/lxc/{vmid}/config",
    "GET /nodes/{node}/lxc/{vmid}/snapshot",
    "POST /nodes/{node}/lxc/{vmid}/snapshot",
    "POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback",
    "DELETE /nodes/{node}/lxc/{vmid}/snapshot/{snapname}",
    "POST /nodes/{node}/vzdump",
    "GET /storage",
    "GET /nodes/{node}/storage",
    "GET /nodes/{node}/storage/{storage}/content",
    "GET /nodes/{node}/tasks",
    "GET /nodes/{node}/tasks/{upid}/status",
    "GET /nodes/{node}/tasks/{upid}/log",
    "GET /access/permissions",
];

/// Indexed keys (`net[n]`) accept `net0` … `net{count-1}`; pve-container's limits.
const INDEXED_COUNTS: &[(&str, u32)] = &[("dev", 256), ("mp", 256), ("net", 32), ("unused", 256)];

#[derive(Debug, Deserialize)]
struct Table {
    endpoints: BTreeMap<String, EndpointSpec>,
}

/// What the schema says about one method + path.
#[derive(Debug, Deserialize)]
pub(crate) struct EndpointSpec {
    /// The `check => ['perm', path, privs, any]` permission, when the schema declares one.
    pub(crate) permission: Option<PermSpec>,
    /// `proxyto` (always `node` here): the request is for that node.
    pub(crate) proxyto: Option<String>,
    /// Parameter schemas by name (`net[n]` for indexed ones).
    pub(crate) params: BTreeMap<String, ParamSpec>,
}

/// `['perm', path, [privs], 'any', 1]`.
#[derive(Debug, Deserialize)]
pub(crate) struct PermSpec {
    pub(crate) path: String,
    pub(crate) privs: Vec<String>,
    #[serde(default)]
    pub(crate) any: bool,
}

/// The enforced part of one parameter schema.
#[derive(Debug, Deserialize)]
pub(crate) struct ParamSpec {
    #[serde(rename = "type")]
    pub(crate) ty: String,
    #[serde(default)]
    pub(crate) optional: bool,
    pub(crate) minimum: Option<f64>,
    pub(crate) maximum: Option<f64>,
    #[serde(rename = "maxLength")]
    pub(crate) max_length: Option<usize>,
    #[serde(rename = "minLength")]
    pub(crate) min_length: Option<usize>,
    #[serde(rename = "enum")]
    pub(crate) enum_values: Option<Vec<String>>,
    /// A named format (`pve-vmid`, `pve-configid-list`, ...).
    pub(crate) format: Option<String>,
    /// A property-string format: key → optional.
    pub(crate) format_keys: Option<BTreeMap<String, bool>>,
    pub(crate) default_key: Option<String>,
    pub(crate) pattern: Option<String>,
    pub(crate) requires: Option<String>,
    /// Item type of an `array` parameter.
    pub(crate) items: Option<String>,
}

static TABLE: LazyLock<Result<Table, String>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../../testdata/pve-sim-params.json"))
        .map_err(|e| format!("testdata/pve-sim-params.json: {e}"))
});

/// The schema subset for `"METHOD /path/{template}"`.
pub(crate) fn endpoint(key: &str) -> Option<&'static EndpointSpec> {
    TABLE.as_ref().ok()?.endpoints.get(key)
}

/// Whether the compiled-in table parsed (checked once at simulator start).
pub(crate) fn table_error() -> Option<String> {
    TABLE.as_ref().err().cloned()
}

/// A parameter value as PVE's Perl sees it after decoding the request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PVal {
    /// Any scalar: form values, JSON strings and numbers (Perl does not tell them apart).
    Str(String),
    /// A JSON `true`/`false` (a `JSON::PP::Boolean` object in Perl).
    Bool(bool),
    /// A JSON array or a repeated form key.
    List(Vec<PVal>),
    /// A JSON object.
    Map,
}

impl PVal {
    /// From a JSON body value; `null` counts as absent.
    pub(crate) fn from_json(v: &serde_json::Value) -> Option<PVal> {
        use serde_json::Value;
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => PVal::Bool(*b),
            Value::Number(n) => PVal::Str(n.to_string()),
            Value::String(s) => PVal::Str(s.clone()),
            Value::Array(items) => PVal::List(items.iter().filter_map(PVal::from_json).collect()),
            Value::Object(_) => PVal::Map,
        })
    }

    /// The scalar text (booleans as `1`/`0`, as PVE stores them).
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            PVal::Str(s) => Some(s.clone()),
            PVal::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
            PVal::List(_) | PVal::Map => None,
        }
    }
}

/// Request parameters after merging path, query and body (query wins over body).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Params(pub(crate) BTreeMap<String, PVal>);

impl Params {
    pub(crate) fn insert(&mut self, key: &str, value: PVal) {
        self.0.insert(key.to_string(), value);
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<PVal> {
        self.0.remove(key)
    }

    /// A scalar parameter as text.
    pub(crate) fn str(&self, key: &str) -> Option<String> {
        self.0.get(key).and_then(PVal::text)
    }

    /// An integer parameter (validated before handlers run).
    pub(crate) fn int(&self, key: &str) -> Option<i64> {
        self.str(key)
            .and_then(|s| s.trim_start_matches('+').parse().ok())
    }

    /// A boolean parameter: `1`/`true` → true.
    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.0.get(key), Some(PVal::Bool(true))) || self.str(key).as_deref() == Some("1")
    }
}

/// Parameter errors by name, as the `errors` map of a 400.
pub(crate) type ParamErrors = BTreeMap<String, String>;

/// `check_object` over all parameters with `additionalProperties => 0`.
pub(crate) fn validate(spec: &EndpointSpec, params: &Params) -> Result<(), ParamErrors> {
    let mut errors = ParamErrors::new();
    let add = |errors: &mut ParamErrors, key: &str, msg: String| {
        // add_error joins repeated errors with a literal '\n' (single-quoted in Perl)
        errors
            .entry(key.to_string())
            .and_modify(|e| {
                e.push_str("\\n");
                e.push_str(&msg);
            })
            .or_insert(msg);
    };
    // first pass: every schema property (indexed ones are all optional)
    for (name, schema) in &spec.params {
        if name.ends_with("[n]") {
            continue;
        }
        if let Err(msg) = check_prop(params.0.get(name), schema) {
            add(&mut errors, name, msg);
        }
    }
    // second pass: what was sent
    for (key, value) in &params.0 {
        let schema = match spec.params.get(key) {
            Some(s) => s,
            None => match indexed_schema(spec, key) {
                Some(s) => {
                    if let Err(msg) = check_prop(Some(value), s) {
                        add(&mut errors, key, msg);
                    }
                    s
                }
                None => {
                    add(
                        &mut errors,
                        key,
                        "property is not defined in schema and the schema does not allow \
                         additional properties"
                            .to_string(),
                    );
                    continue;
                }
            },
        };
        if let Some(req) = &schema.requires {
            if !params.contains(req) {
                add(
                    &mut errors,
                    req,
                    format!("missing property - '{key}' requires this property"),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The schema of `net3` when the endpoint declares `net[n]`.
pub(crate) fn indexed_schema<'a>(spec: &'a EndpointSpec, key: &str) -> Option<&'a ParamSpec> {
    let split = key.find(|c: char| c.is_ascii_digit())?;
    let (base, index) = key.split_at(split);
    let index: u32 = index.parse().ok()?;
    if index.to_string() != key[split..] {
        return None;
    }
    let count = INDEXED_COUNTS.iter().find(|(b, _)| *b == base)?.1;
    (index < count).then(|| spec.params.get(&format!("{base}[n]")))?
}

fn perl_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// `is_number`: `^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$`
pub(crate) fn is_number(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if let Some(e) = exp {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    match frac {
        None => !int.is_empty() && digits(int),
        Some(f) => (!int.is_empty() || !f.is_empty()) && digits(int) && digits(f),
    }
}

/// `is_integer`: `^[+-]?\d+$`
pub(crate) fn is_integer(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn perl_ref_name(v: &PVal) -> Option<&'static str> {
    match v {
        PVal::List(_) => Some("ARRAY"),
        PVal::Map => Some("HASH"),
        PVal::Bool(_) => Some("JSON::PP::Boolean"),
        PVal::Str(_) => None,
    }
}

/// `check_prop` for one value (or its absence).
fn check_prop(value: Option<&PVal>, schema: &ParamSpec) -> Result<(), String> {
    let Some(value) = value else {
        return if schema.optional {
            Ok(())
        } else {
            Err("property is missing and it is not optional".to_string())
        };
    };
    let ty = schema.ty.as_str();
    // check_type
    match ty {
        "array" => {
            let PVal::List(items) = value else {
                return Err("type check ('array') failed".to_string());
            };
            if let Some(item_ty) = &schema.items {
                for item in items {
                    let item_schema = ParamSpec {
                        ty: item_ty.clone(),
                        optional: true,
                        minimum: None,
                        maximum: None,
                        max_length: None,
                        min_length: None,
                        enum_values: None,
                        format: None,
                        format_keys: None,
                        default_key: None,
                        pattern: None,
                        requires: None,
                        items: None,
                    };
                    check_prop(Some(item), &item_schema)?;
                }
            }
            return Ok(());
        }
        "object" => {
            return match value {
                PVal::Map => Ok(()),
                _ => Err("type check ('object') failed".to_string()),
            }
        }
        _ => {}
    }
    if let Some(r) = perl_ref_name(value) {
        if !(ty == "boolean" && matches!(value, PVal::Bool(_))) {
            return Err(format!("type check ('{ty}') failed - got {r}"));
        }
        return Ok(());
    }
    let PVal::Str(text) = value else {
        return Ok(());
    };
    let type_ok = match ty {
        "boolean" => text == "1" || text == "0",
        "integer" => is_integer(text),
        "number" => is_number(text),
        _ => true,
    };
    if !type_ok {
        return Err(format!("type check ('{ty}') failed - got '{text}'"));
    }
    if let Some(fmt) = &schema.format {
        check_format(fmt, text).map_err(|e| format!("invalid format - {e}"))?;
    }
    if let Some(keys) = &schema.format_keys {
        check_property_string(keys, schema.default_key.as_deref(), text)
            .map_err(|e| format!("invalid format - {e}"))?;
    }
    if let Some(pattern) = &schema.pattern {
        if let Some(matches) = known_pattern(pattern) {
            if !matches(text) {
                return Err("value does not match the regex pattern".to_string());
            }
        }
    }
    if let Some(max) = schema.max_length {
        if text.chars().count() > max {
            return Err(format!("value may only be {max} characters long"));
        }
    }
    if let Some(min) = schema.min_length {
        if text.chars().count() < min {
            return Err(format!("value must be at least {min} characters long"));
        }
    }
    if is_number(text) {
        let n: f64 = text.parse().unwrap_or(f64::NAN);
        if let Some(max) = schema.maximum {
            if n > max {
                return Err(format!(
                    "value must have a maximum value of {}",
                    perl_number(max)
                ));
            }
        }
        if let Some(min) = schema.minimum {
            if n < min {
                return Err(format!(
                    "value must have a minimum value of {}",
                    perl_number(min)
                ));
            }
        }
    }
    if let Some(values) = &schema.enum_values {
        if !values.iter().any(|v| v == text) {
            return Err(format!(
                "value '{text}' does not have a value in the enumeration '{}'",
                values.join(", ")
            ));
        }
    }
    Ok(())
}

/// Only patterns the simulator can check without a regex engine; others are not enforced.
fn known_pattern(pattern: &str) -> Option<fn(&str) -> bool> {
    match pattern {
        "\\S+" => Some(|s: &str| !s.is_empty() && !s.chars().any(char::is_whitespace)),
        p if p.contains("[A-Za-z][A-Za-z0-9\\.\\-_]+") && p.contains("\\@") => {
            Some(|s: &str| crate::acl::valid_userid(s) || crate::acl::split_tokenid(s).is_some())
        }
        _ => None,
    }
}

/// `check_format` for named formats; returns the `die` text (with its newline). Formats the
/// simulator does not know are accepted.
pub(crate) fn check_format(format: &str, value: &str) -> Result<(), String> {
    let (name, kind) = if let Some(base) = format.strip_suffix("-list") {
        (base, "list")
    } else if let Some(base) = format.strip_suffix("-opt") {
        (base, "opt")
    } else {
        (format, "none")
    };
    match kind {
        "list" => {
            for item in crate::lxcconf::split_list(value) {
                check_named(name, &item)?;
            }
            Ok(())
        }
        "opt" if value.is_empty() => Ok(()),
        _ => check_named(name, value),
    }
}

fn check_named(name: &str, v: &str) -> Result<(), String> {
    let ok = |cond: bool, msg: String| if cond { Ok(()) } else { Err(msg) };
    match name {
        "pve-vmid" => ok(
            v.len() >= 3
                && v.len() <= 9
                && !v.starts_with('0')
                && v.bytes().all(|b| b.is_ascii_digit()),
            "value does not look like a valid VM ID\n".into(),
        ),
        "pve-node" => ok(
            valid_node_name(v),
            "value does not look like a valid node name\n".into(),
        ),
        "pve-configid" => ok(
            valid_configid(v),
            format!("invalid configuration ID '{v}'\n"),
        ),
        "pve-storage-id" => ok(
            crate::lxcconf::valid_storage_id(v),
            format!("storage ID '{v}' contains illegal characters\n"),
        ),
        "dns-name" => ok(
            !v.is_empty() && v.split('.').all(valid_node_name),
            "value does not look like a valid DNS name\n".into(),
        ),
        "pve-tag" => ok(
            !v.is_empty()
                && v.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-+.".contains(c)),
            "invalid characters in tag\n".into(),
        ),
        "pve-storage-content" => ok(
            [
                "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
            ]
            .contains(&v),
            format!("invalid content type '{v}'\n"),
        ),
        "pve-volume-id" => ok(
            crate::lxcconf::parse_volume_id(v).is_some(),
            format!("unable to parse volume ID '{v}'\n"),
        ),
        "pve-task-status-type" => ok(
            ["ok", "error", "warning", "unknown"].contains(&v.to_ascii_lowercase().as_str()),
            format!("invalid status '{v}'\n"),
        ),
        "pve-startup-order" => ok(
            v.split(',').filter(|p| !p.trim().is_empty()).all(|p| {
                let num = p
                    .strip_prefix("order=")
                    .or_else(|| p.strip_prefix("up="))
                    .or_else(|| p.strip_prefix("down="))
                    .unwrap_or(p);
                !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit())
            }) && !v.is_empty(),
            "unable to parse startup options\n".into(),
        ),
        _ => Ok(()),
    }
}

/// `^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$`
pub(crate) fn valid_node_name(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// `$CONFIGID_RE`: `[a-z][a-z0-9_-]+`, case-insensitive.
pub(crate) fn valid_configid(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// `parse_property_string` key checks (values are not checked).
fn check_property_string(
    keys: &BTreeMap<String, bool>,
    default_key: Option<&str>,
    text: &str,
) -> Result<(), String> {
    let mut seen: Vec<String> = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let key = match part.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                if !keys.contains_key(k) {
                    return Err(format!(
                        "invalid key in comma-separated list property: {k}\n"
                    ));
                }
                k.to_string()
            }
            Some(_) => return Err("missing key in comma-separated list property\n".to_string()),
            None => match default_key {
                Some(k) => k.to_string(),
                None => {
                    return Err(
                        "value without key, but schema does not define a default key\n".to_string(),
                    )
                }
            },
        };
        if seen.contains(&key) {
            return Err(format!(
                "duplicate key in comma-separated list property: {key}\n"
            ));
        }
        seen.push(key);
    }
    let mut missing = String::new();
    for (k, optional) in keys {
        if !optional && !seen.contains(k) {
            missing.push_str(&format!(
                "{k}: property is missing and it is not optional\n"
            ));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("format error\n{missing}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), PVal::Str(v.to_string())))
                .collect(),
        )
    }

    fn errors_of(key: &str, p: &Params) -> ParamErrors {
        validate(endpoint(key).unwrap(), p).unwrap_err()
    }

    #[test]
    fn table_parses_and_has_every_served_endpoint() {
        assert_eq!(table_error(), None);
        for key in SERVED {
            let spec = endpoint(key).unwrap_or_else(|| panic!("{key} missing from the table"));
            for template in key.split('/').filter(|s| s.starts_with('{')) {
                let name = template.trim_matches(|c| c == '{' || c == '}');
                assert!(spec.params.contains_key(name), "{key}: path param {name}");
            }
        }
        let put = endpoint("PUT /nodes/{node}/lxc/{vmid}/config").unwrap();
        assert!(put.params.contains_key("net[n]"));
        let perm = put.permission.as_ref().unwrap();
        assert!(perm.any);
        assert_eq!(perm.path, "/vms/{vmid}");
    }

    #[test]
    fn unknown_missing_and_mistyped_parameters_read_like_pve() {
        let e = errors_of(
            "GET /nodes/{node}/lxc",
            &params(&[("node", "pve"), ("bogus", "1")]),
        );
        assert_eq!(
            e["bogus"],
            "property is not defined in schema and the schema does not allow additional properties"
        );
        let e = errors_of("GET /nodes/{node}/lxc", &params(&[]));
        assert_eq!(e["node"], "property is missing and it is not optional");
        let e = errors_of(
            "GET /nodes/{node}/lxc/{vmid}/config",
            &params(&[("node", "pve"), ("vmid", "abc")]),
        );
        assert_eq!(e["vmid"], "type check ('integer') failed - got 'abc'");
        let e = errors_of(
            "GET /nodes/{node}/lxc/{vmid}/config",
            &params(&[("node", "pve"), ("vmid", "42")]),
        );
        assert_eq!(
            e["vmid"],
            "invalid format - value does not look like a valid VM ID\n"
        );
    }

    #[test]
    fn booleans_accept_only_one_and_zero_in_forms_but_json_bools_too() {
        let key = "PUT /nodes/{node}/lxc/{vmid}/config";
        let e = errors_of(
            key,
            &params(&[("node", "pve"), ("vmid", "100"), ("onboot", "true")]),
        );
        assert_eq!(e["onboot"], "type check ('boolean') failed - got 'true'");
        let mut p = params(&[("node", "pve"), ("vmid", "100")]);
        p.insert("onboot", PVal::Bool(true));
        assert!(validate(endpoint(key).unwrap(), &p).is_ok());
        let mut p = params(&[("node", "pve"), ("vmid", "100")]);
        p.insert("cores", PVal::Bool(true));
        assert_eq!(
            validate(endpoint(key).unwrap(), &p).unwrap_err()["cores"],
            "type check ('integer') failed - got JSON::PP::Boolean"
        );
    }

    #[test]
    fn ranges_enums_lengths_and_indexed_keys() {
        let key = "PUT /nodes/{node}/lxc/{vmid}/config";
        let base = [("node", "pve"), ("vmid", "100")];
        let with = |extra: (&str, &str)| {
            let mut p = params(&base);
            p.insert(extra.0, PVal::Str(extra.1.to_string()));
            p
        };
        assert_eq!(
            errors_of(key, &with(("memory", "8")))["memory"],
            "value must have a minimum value of 16"
        );
        assert_eq!(
            errors_of(key, &with(("cmode", "bad")))["cmode"],
            "value 'bad' does not have a value in the enumeration 'shell, console, tty'"
        );
        assert!(validate(endpoint(key).unwrap(), &with(("net7", "name=eth7"))).is_ok());
        assert!(errors_of(key, &with(("net32", "name=eth0"))).contains_key("net32"));
        assert!(errors_of(key, &with(("net07", "name=eth0"))).contains_key("net07"));
        assert_eq!(
            errors_of(key, &with(("net0", "bridge=vmbr0")))["net0"],
            "invalid format - format error\nname: property is missing and it is not optional\n"
        );
        assert_eq!(
            errors_of(key, &with(("rootfs", "local:1,bogus=1")))["rootfs"],
            "invalid format - invalid key in comma-separated list property: bogus\n"
        );
        assert_eq!(
            errors_of(key, &with(("delete", "cores,9bad")))["delete"],
            "invalid format - invalid configuration ID '9bad'\n"
        );
        assert!(validate(endpoint(key).unwrap(), &with(("cpulimit", "1.5"))).is_ok());
        assert_eq!(
            errors_of(key, &with(("cpulimit", "1.5.0")))["cpulimit"],
            "type check ('number') failed - got '1.5.0'"
        );
    }

    #[test]
    fn requires_and_arrays() {
        let key = "POST /nodes/{node}/vzdump";
        let e = errors_of(
            key,
            &params(&[("node", "pve"), ("vmid", "100"), ("protected", "1")]),
        );
        assert_eq!(
            e["storage"],
            "missing property - 'protected' requires this property"
        );
        let e = errors_of(key, &params(&[("node", "pve"), ("exclude-path", "/tmp")]));
        assert_eq!(e["exclude-path"], "type check ('array') failed");
        let mut p = params(&[("node", "pve")]);
        p.insert("vmid", PVal::List(vec![PVal::Str("100".into())]));
        assert_eq!(
            validate(endpoint(key).unwrap(), &p).unwrap_err()["vmid"],
            "type check ('string') failed - got ARRAY"
        );
    }

    #[test]
    fn number_syntax_is_perls() {
        for ok in ["1", "+1", "-1", "1.5", "1.", ".5", "1e3", "1.5E-2"] {
            assert!(is_number(ok), "{ok}");
        }
        for bad in ["", ".", "1..2", "e3", "1e", "abc", "0x10"] {
            assert!(!is_number(bad), "{bad}");
        }
        assert!(is_integer("-12"));
        assert!(!is_integer("1.0"));
    }

    /// Derives the table from the official schema and compares it with the committed one, or
    /// rewrites it when blessing. The schema is not in the repository: build.rs finds it at
    /// `../shared/reference/pve-api-schema-9.json` next to the workspace (CI) or at
    /// `FELHOM_PVE_SCHEMA`; without one this test is ignored, never passed unchecked.
    #[test]
    #[cfg_attr(
        not(pve_schema),
        ignore = "no PVE API schema: put it at ../shared/reference/pve-api-schema-9.json next to \
                  the workspace or set FELHOM_PVE_SCHEMA, then rebuild"
    )]
    fn table_matches_the_official_schema() {
        let Some(schema_path) = option_env!("FELHOM_PVE_SCHEMA_PATH") else {
            panic!("build.rs found no schema, so this test should have been ignored");
        };
        let text = std::fs::read_to_string(schema_path)
            .unwrap_or_else(|e| panic!("read the PVE API schema {schema_path}: {e}"));
        let schema: serde_json::Value = serde_json::from_str(&text).expect("parse schema");
        let derived = derive::table(&schema).expect("derive table");
        let out = format!(
            "{}\n",
            serde_json::to_string_pretty(&derived).expect("serialize")
        );
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/pve-sim-params.json"
        );
        if std::env::var("PVE_SIM_PARAMS_BLESS").as_deref() == Ok("1") {
            std::fs::write(path, out).expect("write table");
        } else {
            let committed = std::fs::read_to_string(path).expect("read committed table");
            assert_eq!(
                committed, out,
                "table drifted from {schema_path}: re-run with PVE_SIM_PARAMS_BLESS=1"
            );
        }
    }

    mod derive {
        //! Schema → table: keeps only what `validate` enforces.
        use serde_json::{json, Map, Value};

        pub(super) fn table(schema: &Value) -> Result<Value, String> {
            let mut endpoints = Map::new();
            for key in super::SERVED {
                let ep = schema
                    .get(*key)
                    .ok_or_else(|| format!("{key}: not in schema"))?;
                endpoints.insert(key.to_string(), endpoint(key, ep)?);
            }
            Ok(json!({
                "_source": "proxmox/pve-docs api-viewer/apidata.js (PVE 9.x); derived by params::tests::table_matches_the_official_schema",
                "endpoints": endpoints,
            }))
        }

        fn endpoint(key: &str, ep: &Value) -> Result<Value, String> {
            let permission = match ep.pointer("/permissions/check") {
                None => Value::Null,
                Some(Value::Array(c)) if c.first() == Some(&json!("perm")) => {
                    let any = c.get(3) == Some(&json!("any"));
                    json!({ "path": c[1], "privs": c[2], "any": any })
                }
                Some(other) => return Err(format!("{key}: unsupported check {other}")),
            };
            if ep.pointer("/parameters/additionalProperties") != Some(&json!(0)) {
                return Err(format!("{key}: additional properties allowed"));
            }
            let mut params = Map::new();
            if let Some(Value::Object(props)) = ep.pointer("/parameters/properties") {
                for (name, p) in props {
                    params.insert(name.clone(), param(p));
                }
            }
            Ok(json!({
                "permission": permission,
                "proxyto": ep.get("proxyto").cloned().unwrap_or(Value::Null),
                "params": params,
            }))
        }

        fn param(p: &Value) -> Value {
            let mut out = Map::new();
            out.insert(
                "type".into(),
                p.get("type").cloned().unwrap_or(json!("string")),
            );
            if p.get("optional") == Some(&json!(1)) {
                out.insert("optional".into(), json!(true));
            }
            for k in [
                "minimum",
                "maximum",
                "maxLength",
                "minLength",
                "enum",
                "pattern",
                "requires",
            ] {
                if let Some(v) = p.get(k) {
                    let v = match (k, v) {
                        ("minimum" | "maximum", Value::String(s)) => {
                            s.parse::<f64>().map(|n| json!(n)).unwrap_or(Value::Null)
                        }
                        _ => v.clone(),
                    };
                    out.insert(k.into(), v);
                }
            }
            match p.get("format") {
                Some(Value::String(f)) => {
                    out.insert("format".into(), json!(f));
                }
                Some(Value::Object(keys)) => {
                    let mut fk = Map::new();
                    for (k, v) in keys {
                        fk.insert(k.clone(), json!(v.get("optional") == Some(&json!(1))));
                        if v.get("default_key") == Some(&json!(1)) {
                            out.insert("default_key".into(), json!(k));
                        }
                    }
                    out.insert("format_keys".into(), Value::Object(fk));
                }
                _ => {}
            }
            if let Some(t) = p.pointer("/items/type") {
                out.insert("items".into(), t.clone());
            }
            Value::Object(out)
        }
    }
}
