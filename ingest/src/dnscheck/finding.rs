//! Findings: what a DNS check found wrong (or worth knowing) about one record type of
//! one domain, and the per-type status they add up to.

use std::fmt;

/// The record type a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    Dmarc,
    Spf,
    Dkim,
    Mx,
    MtaSts,
    TlsRpt,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Dmarc => "dmarc",
            Area::Spf => "spf",
            Area::Dkim => "dkim",
            Area::Mx => "mx",
            Area::MtaSts => "mta_sts",
            Area::TlsRpt => "tls_rpt",
        }
    }
}

/// How bad a finding is: an error breaks what the record is for (receivers ignore it or
/// it lets anyone pass), a warning weakens it, an info is worth knowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One finding: `code` is stable (for queries and alert rules), `text` says it to the
/// domain's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub area: Area,
    pub severity: Severity,
    pub code: &'static str,
    pub text: String,
}

impl Finding {
    pub fn new(
        area: Area,
        severity: Severity,
        code: &'static str,
        text: impl Into<String>,
    ) -> Self {
        Finding {
            area,
            severity,
            code,
            text: text.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.area.as_str(),
            self.severity.as_str(),
            self.code,
            self.text
        )
    }
}

/// The status of one record type as the dashboards show it: the worst finding, `ok`
/// when checked and nothing was found, `none` when there was nothing to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TypeStatus {
    None,
    Ok,
    Info,
    Warning,
    Error,
}

impl TypeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TypeStatus::None => "none",
            TypeStatus::Ok => "ok",
            TypeStatus::Info => "info",
            TypeStatus::Warning => "warning",
            TypeStatus::Error => "error",
        }
    }

    /// The status of the findings of `areas` (`none` if `checked` is false and nothing
    /// was found).
    pub fn of(findings: &[Finding], areas: &[Area], checked: bool) -> TypeStatus {
        let worst = findings
            .iter()
            .filter(|f| areas.contains(&f.area))
            .map(|f| f.severity)
            .max();
        match worst {
            Some(Severity::Error) => TypeStatus::Error,
            Some(Severity::Warning) => TypeStatus::Warning,
            Some(Severity::Info) => TypeStatus::Info,
            None if checked => TypeStatus::Ok,
            None => TypeStatus::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_status_is_its_worst_finding() {
        let findings = vec![
            Finding::new(Area::Dmarc, Severity::Info, "a", ""),
            Finding::new(Area::Dmarc, Severity::Warning, "b", ""),
            Finding::new(Area::Spf, Severity::Error, "c", ""),
            Finding::new(Area::MtaSts, Severity::Info, "d", ""),
        ];
        assert_eq!(
            TypeStatus::of(&findings, &[Area::Dmarc], true),
            TypeStatus::Warning
        );
        assert_eq!(
            TypeStatus::of(&findings, &[Area::Spf], true),
            TypeStatus::Error
        );
        assert_eq!(
            TypeStatus::of(&findings, &[Area::Dkim], true),
            TypeStatus::Ok
        );
        assert_eq!(
            TypeStatus::of(&findings, &[Area::Dkim], false),
            TypeStatus::None
        );
        assert_eq!(
            TypeStatus::of(&findings, &[Area::Mx, Area::MtaSts], true),
            TypeStatus::Info
        );
    }
}
