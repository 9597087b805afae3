//! Inventory: the domains file of `[domains] file` (CSV, header
//! `domain,owner,group,parked,contact`) -> the domains the team answers for. Pure.
//!
//! In: the file's text. Out: one [`InventoryDomain`] per line, checked (a domain name,
//! `parked` `yes`/`no`, no domain twice), or an error naming the line and the reason. The
//! store writes them to `dmarc.domains` (`dmarc-ingest domains sync`).

use std::collections::{HashMap, HashSet};

use crate::store::domains::StoredDomain;

/// The header the file must start with.
pub const HEADER: &str = "domain,owner,group,parked,contact";

/// Lines a domains file may have (a bound on a file anyone could hand us).
pub const MAX_DOMAINS: usize = 1_000_000;

/// One domain the team answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryDomain {
    /// Lower case, no trailing dot.
    pub domain: String,
    /// The organisation that owns it.
    pub owner: String,
    /// Its group or sector.
    pub group: String,
    /// Sends no mail at all (should publish `p=reject`, `v=spf1 -all`, a null MX).
    pub parked: bool,
    /// Whom to tell (an email address), may be empty.
    pub contact: String,
}

/// Parses a domains file; `what` names it in errors.
pub fn parse(text: &str, what: &str) -> Result<Vec<InventoryDomain>, String> {
    let mut lines = text.lines().enumerate();
    let header = lines
        .by_ref()
        .find(|(_, line)| !line.trim().is_empty())
        .map(|(_, line)| line.trim().trim_start_matches('\u{feff}'))
        .unwrap_or("");
    let columns: Vec<String> = split_csv(header)
        .map_err(|e| format!("{what}: line 1: {e}"))?
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    if columns.join(",") != HEADER {
        return Err(format!(
            "{what}: the first line must be the header {HEADER:?}, not {header:?}"
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (index, line) in lines {
        let at = |reason: String| format!("{what}: line {}: {reason}", index + 1);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let fields = split_csv(line).map_err(at)?;
        if fields.len() != 5 {
            return Err(at(format!("{} fields, want 5 ({HEADER})", fields.len())));
        }
        let domain = fields[0].trim().trim_end_matches('.').to_ascii_lowercase();
        if !is_domain_name(&domain) {
            return Err(at(format!("{:?} is not a domain name", fields[0])));
        }
        let parked = match fields[3].trim().to_ascii_lowercase().as_str() {
            "yes" => true,
            "no" | "" => false,
            other => return Err(at(format!("parked must be yes or no, not {other:?}"))),
        };
        if !seen.insert(domain.clone()) {
            return Err(at(format!("{domain} is listed twice")));
        }
        if out.len() == MAX_DOMAINS {
            return Err(at(format!("more than {MAX_DOMAINS} domains")));
        }
        out.push(InventoryDomain {
            domain,
            owner: fields[1].trim().to_owned(),
            group: fields[2].trim().to_owned(),
            parked,
            contact: fields[4].trim().to_owned(),
        });
    }
    Ok(out)
}

/// The `domain_inventory` rows a sync writes at `now`: a row for each domain of `file`
/// that is new or changed against `stored` (the current state), and a row marking
/// `removed` each stored domain no longer in the file. Nothing when nothing changed.
pub fn changes(stored: &[StoredDomain], file: &[InventoryDomain], now: u32) -> Vec<StoredDomain> {
    let current: HashMap<&str, &StoredDomain> =
        stored.iter().map(|d| (d.domain.as_str(), d)).collect();
    let listed: HashSet<&str> = file.iter().map(|d| d.domain.as_str()).collect();
    let mut rows: Vec<StoredDomain> = file
        .iter()
        .map(|d| StoredDomain {
            domain: d.domain.clone(),
            owner: d.owner.clone(),
            group_name: d.group.clone(),
            parked: u8::from(d.parked),
            contact: d.contact.clone(),
            removed: 0,
            synced_at: now,
        })
        .filter(|row| {
            current.get(row.domain.as_str()).is_none_or(|old| {
                (
                    &old.owner,
                    &old.group_name,
                    old.parked,
                    &old.contact,
                    old.removed,
                ) != (&row.owner, &row.group_name, row.parked, &row.contact, 0)
            })
        })
        .collect();
    rows.extend(
        stored
            .iter()
            .filter(|old| old.removed == 0 && !listed.contains(old.domain.as_str()))
            .map(|old| StoredDomain {
                removed: 1,
                synced_at: now,
                ..old.clone()
            }),
    );
    rows
}

/// Whether `name` is a plausible domain name: labels of letters, digits and hyphens
/// (or `_`), not starting or ending with a hyphen, at least two labels, at most 253
/// characters.
pub fn is_domain_name(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The fields of one CSV line (RFC 4180: commas, fields in double quotes with `""` for
/// a quote inside).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domains_file_is_read_line_by_line() {
        let text = "domain,owner,group,parked,contact\n\
                    Council-A.Example.,Council A,\"Local government, north\",no,dmarc@council-a.example\n\
                    \n\
                    # parked since 2019\n\
                    old-council.example,Council A,Local government,yes,\n";
        let domains = parse(text, "domains.csv").unwrap();
        assert_eq!(domains.len(), 2);
        assert_eq!(domains[0].domain, "council-a.example");
        assert_eq!(domains[0].group, "Local government, north");
        assert!(!domains[0].parked && domains[1].parked);
        assert_eq!(domains[1].contact, "");
    }

    #[test]
    fn a_sync_writes_only_what_changed_and_marks_what_was_removed() {
        let head = "domain,owner,group,parked,contact\n";
        let first = parse(
            &format!("{head}a.example,A,g,no,\nb.example,B,g,yes,\n"),
            "f",
        )
        .unwrap();
        let rows = changes(&[], &first, 100);
        assert_eq!(rows.len(), 2);
        // The same file again: nothing to write.
        assert!(changes(&rows, &first, 200).is_empty());
        // b removed, a changed owner, c added.
        let second = parse(
            &format!("{head}a.example,A2,g,no,\nc.example,C,g,no,\n"),
            "f",
        )
        .unwrap();
        let next = changes(&rows, &second, 300);
        let summary: Vec<(&str, &str, u8)> = next
            .iter()
            .map(|r| (r.domain.as_str(), r.owner.as_str(), r.removed))
            .collect();
        assert_eq!(
            summary,
            [
                ("a.example", "A2", 0),
                ("c.example", "C", 0),
                ("b.example", "B", 1)
            ]
        );
        // A removed domain listed again comes back.
        let removed_b = next
            .iter()
            .find(|r| r.domain == "b.example")
            .unwrap()
            .clone();
        let back = changes(&[removed_b], &first[1..], 400);
        assert_eq!((back[0].domain.as_str(), back[0].removed), ("b.example", 0));
    }

    #[test]
    fn bad_files_are_refused_naming_the_line() {
        let e = parse("domain,owner\nx.example,o\n", "d.csv").unwrap_err();
        assert!(e.contains("header"), "{e}");
        let head = "domain,owner,group,parked,contact\n";
        let e = parse(&format!("{head}a.example,o,g,maybe,\n"), "d.csv").unwrap_err();
        assert!(e.contains("line 2") && e.contains("maybe"), "{e}");
        let e = parse(&format!("{head}not a domain,o,g,no,\n"), "d.csv").unwrap_err();
        assert!(e.contains("not a domain name"), "{e}");
        let e = parse(
            &format!("{head}a.example,o,g,no,\nA.example,o,g,no,\n"),
            "d.csv",
        )
        .unwrap_err();
        assert!(e.contains("line 3") && e.contains("twice"), "{e}");
        let e = parse(&format!("{head}a.example,o,g,no\n"), "d.csv").unwrap_err();
        assert!(e.contains("4 fields"), "{e}");
        let e = parse(&format!("{head}a.example,\"o,g,no,\n"), "d.csv").unwrap_err();
        assert!(e.contains("not closed"), "{e}");
    }
}

/// The domains reports are taken for under `[domains] accept = "inventory"`: the
/// inventory's domains (not removed) and their subdomains (a subdomain with a DMARC
/// record of its own is its reports' policy domain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    domains: std::collections::HashSet<String>,
}

impl Accepted {
    pub fn new(domains: impl IntoIterator<Item = String>) -> Accepted {
        Accepted {
            domains: domains
                .into_iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Whether a report for `policy_domain` is taken.
    pub fn accepts(&self, policy_domain: &str) -> bool {
        let domain = policy_domain.trim_end_matches('.').to_ascii_lowercase();
        let mut name = domain.as_str();
        loop {
            if self.domains.contains(name) {
                return true;
            }
            match name.split_once('.') {
                Some((_, parent)) => name = parent,
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod accepted_tests {
    use super::Accepted;

    #[test]
    fn the_inventory_and_its_subdomains_are_accepted_nothing_else() {
        let accepted = Accepted::new(["Council-A.example".to_owned(), "b.gov.test".to_owned()]);
        assert!(accepted.accepts("council-a.example"));
        assert!(accepted.accepts("COUNCIL-A.EXAMPLE."));
        assert!(accepted.accepts("mail.council-a.example"));
        assert!(!accepted.accepts("example"));
        assert!(!accepted.accepts("evil-council-a.example"));
        assert!(!accepted.accepts("council-a.example.evil.test"));
        assert!(!accepted.accepts("gov.test"));
        assert!(!Accepted::default().accepts("council-a.example"));
    }
}
