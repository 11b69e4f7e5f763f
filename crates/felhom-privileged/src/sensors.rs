//! Sensor readings from `sensors -j`, parsed into typed chips and readings.

use std::collections::BTreeMap;

use crate::PrivilegedError;

/// Kind of a sensor reading, from its subfeature prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorKind {
    /// `temp*`, °C.
    Temperature,
    /// `fan*`, RPM.
    Fan,
    /// `in*`, volts.
    Voltage,
    /// `power*`, watts.
    Power,
    /// `curr*`, amperes.
    Current,
    /// Anything else.
    Other,
}

/// One feature of a chip (e.g. `Package id 0`), with its input and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorReading {
    /// Feature label.
    pub label: String,
    /// What it measures.
    pub kind: SensorKind,
    /// Current value.
    pub input: Option<f64>,
    /// Upper limit.
    pub max: Option<f64>,
    /// Critical limit.
    pub crit: Option<f64>,
}

/// One sensor chip from `sensors -j`.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorChip {
    /// Chip name, e.g. `coretemp-isa-0000`.
    pub name: String,
    /// Adapter description.
    pub adapter: Option<String>,
    /// Its readings, in label order.
    pub readings: Vec<SensorReading>,
}

/// Parses `sensors -j` (pure).
pub fn parse_sensors(json: &[u8]) -> Result<Vec<SensorChip>, PrivilegedError> {
    let parse_err = |detail: String| PrivilegedError::Parse {
        program: "sensors".to_owned(),
        detail,
    };
    let chips: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
        serde_json::from_slice(json).map_err(|e| parse_err(e.to_string()))?;
    let mut out = Vec::new();
    for (name, features) in chips {
        let mut chip = SensorChip {
            name,
            adapter: None,
            readings: Vec::new(),
        };
        for (label, value) in features {
            match value {
                serde_json::Value::String(s) if label == "Adapter" => chip.adapter = Some(s),
                serde_json::Value::Object(subs) => {
                    let mut reading = SensorReading {
                        label,
                        kind: SensorKind::Other,
                        input: None,
                        max: None,
                        crit: None,
                    };
                    for (sub, v) in subs {
                        let Some(v) = v.as_f64() else { continue };
                        let prefix: String = sub
                            .chars()
                            .take_while(|c| c.is_ascii_alphabetic())
                            .collect();
                        reading.kind = match prefix.as_str() {
                            "temp" => SensorKind::Temperature,
                            "fan" => SensorKind::Fan,
                            "in" => SensorKind::Voltage,
                            "power" => SensorKind::Power,
                            "curr" => SensorKind::Current,
                            _ => reading.kind,
                        };
                        if sub.ends_with("_input") || sub.ends_with("_average") {
                            reading.input = reading.input.or(Some(v));
                        } else if sub.ends_with("_max") {
                            reading.max = Some(v);
                        } else if sub.ends_with("_crit") {
                            reading.crit = Some(v);
                        }
                    }
                    chip.readings.push(reading);
                }
                _ => {}
            }
        }
        out.push(chip);
    }
    Ok(out)
}
