//! A `/metrics` answer parsed by a Prometheus text-format parser (`openmetrics-parser`'s
//! grammar, not string matching), with look-ups by family and labels.

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
