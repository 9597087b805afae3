//! UID sets: UIDs -> the compact `1:5,9` sets of IMAP commands, split so that no command
//! line grows past what servers accept.

use std::collections::BTreeSet;

/// Longest UID set put into one command line; longer sets are split over several commands
/// (dovecot refuses lines over 64 KiB, other servers less).
pub const MAX_UID_SET_CHARS: usize = 4000;

/// `uids` as compact IMAP sequence sets (`1:5,7`), sorted and deduplicated, split so that
/// no set is longer than `max_chars` (a single range always fits).
pub fn uid_sets(uids: &[u32], max_chars: usize) -> Vec<String> {
    let sorted: BTreeSet<u32> = uids.iter().copied().collect();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for uid in sorted {
        match ranges.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(uid) => *end = uid,
            _ => ranges.push((uid, uid)),
        }
    }
    let mut sets = Vec::new();
    let mut current = String::new();
    for (start, end) in ranges {
        let part = if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        };
        if !current.is_empty() && current.len() + 1 + part.len() > max_chars {
            sets.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&part);
    }
    if !current.is_empty() {
        sets.push(current);
    }
    sets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert!(uid_sets(&[], 100).is_empty());
        assert_eq!(uid_sets(&[7], 100), vec!["7"]);
        assert_eq!(uid_sets(&[1, 2, 3, 4, 5, 7], 100), vec!["1:5,7"]);
        assert_eq!(uid_sets(&[9, 3, 1, 2, 3, 10, 12], 100), vec!["1:3,9:10,12"]);
        assert_eq!(
            uid_sets(&[u32::MAX - 1, u32::MAX, 1], 100),
            vec![format!("1,{}:{}", u32::MAX - 1, u32::MAX)]
        );
    }

    #[test]
    fn uid_sets_are_split_by_length() {
        let uids: Vec<u32> = (1..=100).map(|i| i * 10).collect();
        let sets = uid_sets(&uids, 20);
        assert!(sets.iter().all(|s| s.len() <= 20), "{sets:?}");
        let back: Vec<u32> = sets
            .iter()
            .flat_map(|s| s.split(','))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(back, uids);
        // A range longer than the limit still goes out whole.
        assert_eq!(uid_sets(&[1000000, 1000001], 3), vec!["1000000:1000001"]);
    }
}
