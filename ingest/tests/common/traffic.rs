//! Generated report traffic for the alert and digest tests: one report per domain and
//! day, dated so many days before today (UTC), written as XML files to import.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// One record: a source sending `count` messages with these aligned DKIM / SPF results
/// (DMARC passes when either does).
#[derive(Debug, Clone, Copy)]
pub struct Mail {
    pub ip: &'static str,
    pub count: u64,
    pub dkim: bool,
    pub spf: bool,
}

impl Mail {
    pub fn passing(ip: &'static str, count: u64) -> Mail {
        Mail {
            ip,
            count,
            dkim: true,
            spf: true,
        }
    }

    pub fn failing(ip: &'static str, count: u64) -> Mail {
        Mail {
            ip,
            count,
            dkim: false,
            spf: false,
        }
    }
}

/// Seconds since 1970 of today's midnight (UTC).
pub fn today_midnight() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now - now % 86_400
}

/// Writes the report of `domain` for the day `days_ago` days before today into `dir`.
pub fn write_day(dir: &Path, domain: &str, days_ago: u64, mails: &[Mail]) -> PathBuf {
    let begin = today_midnight() - days_ago * 86_400;
    let result = |pass: bool| if pass { "pass" } else { "fail" };
    let records: String = mails
        .iter()
        .map(|m| {
            format!(
                "<record><row><source_ip>{}</source_ip><count>{}</count><policy_evaluated>\
                 <disposition>none</disposition><dkim>{}</dkim><spf>{}</spf>\
                 </policy_evaluated></row><identifiers><header_from>{domain}</header_from>\
                 </identifiers><auth_results><dkim><domain>{domain}</domain><selector>s1\
                 </selector><result>{}</result></dkim><spf><domain>{domain}</domain>\
                 <result>{}</result></spf></auth_results></record>",
                m.ip,
                m.count,
                result(m.dkim),
                result(m.spf),
                result(m.dkim),
                result(m.spf)
            )
        })
        .collect();
    let xml = format!(
        "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>receiver.example</org_name>\
         <email>r@receiver.example</email><report_id>{domain}-{days_ago}</report_id>\
         <date_range><begin>{begin}</begin><end>{}</end></date_range></report_metadata>\
         <policy_published><domain>{domain}</domain><p>reject</p></policy_published>{records}\
         </feedback>",
        begin + 86_399
    );
    let path = dir.join(format!("{domain}-{days_ago}.xml"));
    std::fs::write(&path, xml).unwrap();
    path
}

/// Writes `domain`'s reports for each day in `days` (days ago), the same mail each day.
pub fn write_days(dir: &Path, domain: &str, days: impl IntoIterator<Item = u64>, mails: &[Mail]) {
    for day in days {
        write_day(dir, domain, day, mails);
    }
}
