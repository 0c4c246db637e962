//! Prometheus metrics as the tests read them: one parser of the text format, fed by a
//! `/metrics` page or by an in-process registry (encoded the way the page encodes it).

use std::time::Duration;

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of one scrape.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the text format; comments and lines that are not samples are left out.
    pub fn parse(text: &str) -> Metrics {
        Metrics {
            samples: text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(sample)
                .collect(),
        }
    }

    /// `GET url` (a `/metrics` page); `None` while the server does not answer.
    pub fn scrape(url: &str) -> Option<Metrics> {
        let text = ureq::get(url)
            .timeout(Duration::from_secs(10))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        Some(Metrics::parse(&text))
    }

    /// The samples of an in-process registry.
    pub fn of(registry: &prometheus::Registry) -> Metrics {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("metrics encode as text");
        Metrics::parse(&text)
    }

    /// The series of `name` that carry every one of `labels`.
    pub fn series<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
    }

    /// The value of the one series of `name` with `labels`; `None` when there is none, a panic
    /// when several match (the caller must say which).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut it = self.series(name, labels);
        let first = it.next()?;
        assert!(
            it.next().is_none(),
            "several {name} series carry {labels:?}: name more labels"
        );
        Some(first.value)
    }

    /// `name{site="SITE"}`.
    pub fn site(&self, name: &str, site: &str) -> Option<f64> {
        self.get(name, &[("site", site)])
    }

    /// The sum over every series of `name` with `labels`; `None` when there is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut it = self.series(name, labels).peekable();
        it.peek()?;
        Some(it.map(|s| s.value).sum())
    }
}

/// One sample line, or `None` if it is not one.
fn sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        // label="value" pairs; values may hold escaped quotes, backslashes and newlines.
        let end = loop {
            let (start, c) = chars.next()?;
            if c == '}' {
                break start;
            }
            if c == ',' || c == ' ' {
                continue;
            }
            let eq = body[start..].find('=')? + start;
            let key = body[start..eq].trim().to_string();
            while chars.next()?.0 < eq {}
            let (_, quote) = chars.next()?;
            if quote != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.push((key, value));
        };
        &body[end + 1..]
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}
