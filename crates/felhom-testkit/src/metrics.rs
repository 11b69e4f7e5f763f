//! A `/metrics` answer parsed by a Prometheus text-format parser (`openmetrics-parser`'s
//! grammar, not string matching), with look-ups by family and labels; and the plain TCP
//! `GET /metrics` the tests and the demo scrape with.

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};

/// A parsed scrape.
#[derive(Debug)]
pub struct Scrape(MetricsExposition<PrometheusType, PrometheusValue>);

/// One series: its labels and its value (a histogram's value is its count).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The family name (`felhom_pve_requests_total`).
    pub family: String,
    /// Label name → value, in the family's order.
    pub labels: Vec<(String, String)>,
    /// A counter's, gauge's or untyped value; a histogram's observation count.
    pub value: f64,
}

impl Series {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Scrape {
    /// Parses a Prometheus text exposition (version 0.0.4); the parser's error otherwise.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        parse_prometheus(text)
            .map(Scrape)
            .map_err(|e| format!("{e:?}"))
    }

    /// Every series of every family.
    pub fn series(&self) -> Vec<Series> {
        let mut out = Vec::new();
        for (name, family) in &self.0.families {
            for sample in family.iter_samples() {
                let labels = sample
                    .get_labelset()
                    .map(|set| {
                        set.iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                let value = match &sample.value {
                    PrometheusValue::Unknown(n) | PrometheusValue::Gauge(n) => n.as_f64(),
                    PrometheusValue::Counter(c) => c.value.as_f64(),
                    PrometheusValue::Histogram(h) => h.count.unwrap_or_default() as f64,
                    PrometheusValue::Summary(s) => s.count.unwrap_or_default() as f64,
                };
                out.push(Series {
                    family: name.clone(),
                    labels,
                    value,
                });
            }
        }
        out
    }

    /// Whether family `name` is declared (even with no series yet).
    pub fn has_family(&self, name: &str) -> bool {
        self.0.families.contains_key(name)
    }

    /// The value of the one series of family `name` whose labels include all of `labels`;
    /// `None` when none does.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series()
            .into_iter()
            .find(|s| s.family == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
    }

    /// The sum over every series of family `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series()
            .into_iter()
            .filter(|s| s.family == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }
}

/// A label value that names one guest or task (a path segment of digits, or a UPID): what a
/// bounded-cardinality label must never hold.
pub fn names_an_instance(value: &str) -> bool {
    value.contains("UPID")
        || value
            .split('/')
            .any(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()))
}

impl Scrape {
    /// Every `family{label="value"}` whose value [names an instance](names_an_instance).
    pub fn instance_labels(&self) -> Vec<String> {
        self.series()
            .into_iter()
            .flat_map(|s| {
                s.labels
                    .iter()
                    .filter(|(_, v)| names_an_instance(v))
                    .map(|(k, v)| format!("{}{{{k}={v:?}}}", s.family))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// `GET /metrics` from `addr` (`IP:PORT`) over a plain TCP connection, within `timeout`: the
/// status line and the body.
pub async fn get(addr: &str, timeout: std::time::Duration) -> Result<(String, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: felhom-agent\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("sending to {addr}: {e}"))?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .await
            .map_err(|e| format!("reading from {addr}: {e}"))?;
        String::from_utf8(out).map_err(|_| format!("{addr}: the answer is not UTF-8"))
    };
    let text = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{addr}: no answer within {timeout:?}"))??;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}: no end of headers in the answer"))?;
    Ok((
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_recognised() {
        assert!(names_an_instance("/nodes/pve/lxc/101/status/current"));
        assert!(names_an_instance(
            "UPID:pve:0001:0002:65000000:vzstart:101:root@pam:"
        ));
        assert!(!names_an_instance(
            "/nodes/{node}/lxc/{vmid}/status/current"
        ));
        assert!(!names_an_instance("0.1.0"));
        let s = Scrape::parse(
            "# TYPE x counter\nx{endpoint=\"/nodes/pve/lxc/7\"} 1\nx{endpoint=\"/nodes/{node}\"} 2\n",
        )
        .unwrap();
        assert_eq!(s.instance_labels(), ["x{endpoint=\"/nodes/pve/lxc/7\"}"]);
        assert_eq!(s.sum("x", &[]), 3.0);
    }
}
