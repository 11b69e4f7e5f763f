//! The config file and its `FELHOM_AGENT_*` environment overlay. Input: the JSON, then a NUL
//! byte, then `NAME=value` lines.
#![no_main]
use std::path::Path;

use felhom_config::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (json, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match Config::from_json(json, Path::new("/etc/felhom/agent.json"), env) {
        Ok(config) => {
            let _ = format!("{config:?} {}", config.redacted());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
