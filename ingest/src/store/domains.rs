//! The inventory in ClickHouse: the current state of every domain ever listed
//! (`domains`), new versions written to `domain_inventory`, and the policy domains of
//! reports that nobody registered (`unregistered_domains`).

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// One version of one domain's inventory line (a row of `domain_inventory`, or of the
/// `domains` view's first columns).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct StoredDomain {
    pub domain: String,
    pub owner: String,
    pub group_name: String,
    pub parked: u8,
    pub contact: String,
    /// 1: no longer in the domains file.
    pub removed: u8,
    pub synced_at: u32,
}

/// A policy domain of stored reports that is not in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct UnregisteredDomain {
    pub domain: String,
    pub reports: u64,
}

impl Store {
    /// The newest version of every domain ever listed, removed ones included.
    pub async fn inventory(&self) -> Result<Vec<StoredDomain>, StoreError> {
        let sql = format!(
            "SELECT domain, owner, group_name, parked, contact, removed, \
             toUInt32(last_changed) AS synced_at FROM {}.domains ORDER BY domain",
            self.database()
        );
        self.retry("read the inventory", || {
            self.client.query(&sql).fetch_all::<StoredDomain>()
        })
        .await
    }

    /// The inventory's current domains (not removed).
    pub async fn listed_domains(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT domain FROM {}.domains WHERE removed = 0 ORDER BY domain",
            self.database()
        );
        self.retry("read the inventory's domains", || {
            self.client.query(&sql).fetch_all::<String>()
        })
        .await
    }

    /// The policy domains of stored reports not in the inventory, most reports first.
    pub async fn unregistered_domains(&self) -> Result<Vec<UnregisteredDomain>, StoreError> {
        let sql = format!(
            "SELECT domain, reports FROM {}.unregistered_domains ORDER BY reports DESC, domain",
            self.database()
        );
        self.retry("list the unregistered domains", || {
            self.client.query(&sql).fetch_all::<UnregisteredDomain>()
        })
        .await
    }
}
