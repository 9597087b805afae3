//! Source names in ClickHouse: which source addresses need a name lookup, and the
//! lookups' rows (`source_names`, read through the `records_enriched` view).

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// A source address of `records` (16 bytes, IPv4 mapped into IPv6), its text, and the
/// most frequent passing SPF and DKIM domains of its records (lower case).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct SourceAddress {
    pub source_ip_v6: [u8; 16],
    pub source_ip: String,
    pub spf_pass_domains: Vec<String>,
    pub dkim_pass_domains: Vec<String>,
}

/// One row of `source_names`: one reverse lookup of one address.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct SourceName {
    pub source_ip_v6: [u8; 16],
    /// `confirmed`, `unconfirmed` or `absent`.
    pub ptr_status: String,
    /// The forward-confirmed name ("" otherwise).
    pub ptr: String,
    /// A PTR name that does not point back to the address ("" otherwise).
    pub ptr_unconfirmed: String,
    /// Organisational domain of `ptr`.
    pub ptr_org: String,
    /// When the row was made.
    pub resolved_at: u32,
    /// When to look the address up again.
    pub expires_at: u32,
    /// AS number (0 unknown), AS organisation, country (ISO 3166 alpha-2, "" unknown).
    pub asn: u32,
    pub as_org: String,
    pub country: String,
    /// The known service and its type ("" if none).
    pub service: String,
    pub service_type: String,
    /// Who sends from the address ([`crate::enrich::sender`]).
    pub sender: String,
    /// The services data and databases the row was made with.
    pub naming_version: String,
}

/// Which records' sources to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Every record.
    All,
    /// Records of reports that began on this day (`YYYY-MM-DD`, UTC) or later.
    Day(String),
    /// Records of reports that began in the last this many days.
    RecentDays(u32),
}

impl Since {
    /// The SQL time `records.date_begin` is compared with.
    fn sql(&self) -> Result<String, StoreError> {
        Ok(match self {
            Since::All => "toDateTime(0, 'UTC')".into(),
            Since::Day(day) if super::is_iso_date(day) => {
                format!("toDateTime('{day} 00:00:00', 'UTC')")
            }
            Since::Day(day) => {
                return Err(StoreError::BadReport(format!(
                    "{day:?} is not a date (YYYY-MM-DD, 1970 to 2105)"
                )))
            }
            Since::RecentDays(days) => format!("now() - INTERVAL {days} DAY"),
        })
    }
}

impl Store {
    /// Source addresses of records from `since` on (and, if given, stored from
    /// `stored_since` on, Unix seconds) that have no current row in `source_names` made
    /// with `naming_version` (`queries/sources_to_resolve.sql`): at most `limit`, in
    /// address order, those after `after` (the last of the previous page).
    pub async fn sources_to_resolve(
        &self,
        since: &Since,
        stored_since: Option<u32>,
        naming_version: &str,
        after: Option<[u8; 16]>,
        limit: usize,
    ) -> Result<Vec<SourceAddress>, StoreError> {
        let after = match after {
            None => "1".to_owned(),
            Some(bytes) => {
                let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
                format!("source_ip_v6 > toFixedString(unhex('{hex}'), 16)")
            }
        };
        let sql = self
            .render(self.queries().sources_to_resolve, uuid::Uuid::nil())
            .replace("{since}", &since.sql()?)
            .replace("{after}", &after)
            .replace(
                "{ingested}",
                &stored_since.map_or("1".to_owned(), |t| {
                    format!("ingested_at >= toDateTime({t}, 'UTC')")
                }),
            )
            .replace("{naming_version}", &super::sql_string(naming_version))
            .replace("{limit}", &limit.to_string());
        self.retry("list the sources to resolve", || {
            self.client.query(&sql).fetch_all::<SourceAddress>()
        })
        .await
    }
}
