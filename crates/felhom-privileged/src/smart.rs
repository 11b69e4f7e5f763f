//! SMART health from `smartctl --json -H -A`, parsed into typed values.

use serde::Deserialize;

use crate::PrivilegedError;

/// SMART health of one disk, from `smartctl --json -H -A`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SmartHealth {
    /// Device as asked.
    pub device: String,
    /// Model name.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Overall self-assessment; `None` if the disk did not report one.
    pub passed: Option<bool>,
    /// Current temperature, °C.
    pub temperature_c: Option<i64>,
    /// Power-on hours.
    pub power_on_hours: Option<u64>,
    /// ATA attributes (empty for NVMe).
    pub attributes: Vec<SmartAttribute>,
    /// NVMe health log (absent for ATA).
    pub nvme: Option<NvmeHealth>,
    /// smartctl's exit status bits (bit 3: disk failing; bits 4–7: prefail/old-age/error-log
    /// warnings).
    pub exit_status: i32,
    /// smartctl's own messages.
    pub messages: Vec<String>,
}

/// One ATA SMART attribute.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct SmartAttribute {
    /// Attribute id.
    pub id: u32,
    /// Name, e.g. `Reallocated_Sector_Ct`.
    #[serde(default)]
    pub name: String,
    /// Normalised value.
    #[serde(default)]
    pub value: i64,
    /// Worst normalised value.
    #[serde(default)]
    pub worst: i64,
    /// Failure threshold.
    #[serde(default)]
    pub thresh: i64,
    /// `""`, `now` or `past`.
    #[serde(default)]
    pub when_failed: String,
    /// Raw value.
    #[serde(default)]
    pub raw: i64,
}

/// The NVMe health information log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct NvmeHealth {
    /// Critical warning bits (0: none).
    #[serde(default)]
    pub critical_warning: u32,
    /// Percentage of rated endurance used.
    #[serde(default)]
    pub percentage_used: u32,
    /// Available spare, percent.
    #[serde(default)]
    pub available_spare: u32,
    /// Media and data integrity errors.
    #[serde(default)]
    pub media_errors: u64,
}

/// smartctl's JSON, the parts we read.
#[derive(Deserialize)]
struct SmartJson {
    #[serde(default)]
    smartctl: Option<SmartctlMeta>,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    serial_number: Option<String>,
    #[serde(default)]
    smart_status: Option<SmartStatus>,
    #[serde(default)]
    temperature: Option<Temperature>,
    #[serde(default)]
    power_on_time: Option<PowerOn>,
    #[serde(default)]
    ata_smart_attributes: Option<AtaAttributes>,
    #[serde(default)]
    nvme_smart_health_information_log: Option<NvmeHealth>,
}

#[derive(Deserialize)]
struct SmartctlMeta {
    #[serde(default)]
    messages: Vec<SmartMessage>,
}

#[derive(Deserialize)]
struct SmartMessage {
    #[serde(default)]
    string: String,
}

#[derive(Deserialize)]
struct SmartStatus {
    passed: Option<bool>,
}

#[derive(Deserialize)]
struct Temperature {
    current: Option<i64>,
}

#[derive(Deserialize)]
struct PowerOn {
    hours: Option<u64>,
}

#[derive(Deserialize)]
struct AtaAttributes {
    #[serde(default)]
    table: Vec<AtaAttribute>,
}

#[derive(Deserialize)]
struct AtaAttribute {
    id: u32,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: i64,
    #[serde(default)]
    worst: i64,
    #[serde(default)]
    thresh: i64,
    #[serde(default)]
    when_failed: String,
    #[serde(default)]
    raw: Option<RawValue>,
}

#[derive(Deserialize)]
struct RawValue {
    #[serde(default)]
    value: i64,
}

/// Parses smartctl's JSON output (pure).
pub fn parse_smartctl(
    device: &str,
    exit_status: i32,
    json: &[u8],
) -> Result<SmartHealth, PrivilegedError> {
    let parsed: SmartJson = serde_json::from_slice(json).map_err(|e| PrivilegedError::Parse {
        program: "smartctl".to_owned(),
        detail: e.to_string(),
    })?;
    Ok(SmartHealth {
        device: device.to_owned(),
        model: parsed.model_name,
        serial: parsed.serial_number,
        passed: parsed.smart_status.and_then(|s| s.passed),
        temperature_c: parsed.temperature.and_then(|t| t.current),
        power_on_hours: parsed.power_on_time.and_then(|p| p.hours),
        attributes: parsed
            .ata_smart_attributes
            .map(|a| {
                a.table
                    .into_iter()
                    .map(|a| SmartAttribute {
                        id: a.id,
                        name: a.name,
                        value: a.value,
                        worst: a.worst,
                        thresh: a.thresh,
                        when_failed: a.when_failed,
                        raw: a.raw.map_or(0, |r| r.value),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        nvme: parsed.nvme_smart_health_information_log,
        exit_status,
        messages: parsed
            .smartctl
            .map(|m| m.messages.into_iter().map(|m| m.string).collect())
            .unwrap_or_default(),
    })
}
