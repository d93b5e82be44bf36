//! From parsed records to per-ecosystem data: alias merging (union-find) and the package index.

use std::collections::{BTreeMap, HashMap};

use super::Advisory;
use super::model::{EcoData, Entry};
use super::osv::Record;
use crate::Ecosystem;

/// Group `records` by ecosystem and build each ecosystem's data (digest left empty).
pub(crate) fn build(records: &[Record]) -> BTreeMap<Ecosystem, EcoData> {
    let mut by_ecosystem: BTreeMap<Ecosystem, Vec<&Record>> = BTreeMap::new();
    for record in records {
        for ecosystem in Ecosystem::ALL {
            if record.affected.iter().any(|a| a.ecosystem == ecosystem) {
                by_ecosystem.entry(ecosystem).or_default().push(record);
            }
        }
    }
    by_ecosystem
        .into_iter()
        .map(|(ecosystem, records)| (ecosystem, build_ecosystem(ecosystem, &records)))
        .collect()
}

/// Rank of an id prefix when choosing a merged advisory's primary id (lower wins).
fn id_rank(id: &str) -> u8 {
    const PREFERENCE: [&str; 5] = ["GHSA-", "RUSTSEC-", "PYSEC-", "MAL-", "NSWG-"];
    PREFERENCE
        .iter()
        .position(|prefix| id.starts_with(prefix))
        .map_or(PREFERENCE.len() as u8, |rank| rank as u8)
}

/// Union-find over record indices.
struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    fn new(size: usize) -> Self {
        Groups {
            parent: (0..size).collect(),
        }
    }

    fn find(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            self.parent[node] = self.parent[self.parent[node]];
            node = self.parent[node];
        }
        node
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            // Keep the smaller index as root so grouping is independent of union order.
            let (low, high) = if a < b { (a, b) } else { (b, a) };
            self.parent[high] = low;
        }
    }
}

fn build_ecosystem(ecosystem: Ecosystem, records: &[&Record]) -> EcoData {
    // Records sharing any id or alias are one issue.
    let mut groups = Groups::new(records.len());
    let mut first_with_id: HashMap<&str, usize> = HashMap::with_capacity(records.len() * 2);
    for (index, record) in records.iter().enumerate() {
        let ids =
            std::iter::once(record.id.as_str()).chain(record.aliases.iter().map(String::as_str));
        for id in ids {
            match first_with_id.get(id) {
                Some(&other) => groups.union(index, other),
                None => {
                    first_with_id.insert(id, index);
                }
            }
        }
    }
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for index in 0..records.len() {
        let root = groups.find(index);
        members.entry(root).or_default().push(index);
    }

    let mut merged: Vec<(Advisory, Vec<usize>)> = members
        .into_values()
        .map(|mut group| {
            group.sort_by(|&a, &b| {
                let (a, b) = (records[a], records[b]);
                id_rank(&a.id)
                    .cmp(&id_rank(&b.id))
                    .then_with(|| a.id.cmp(&b.id))
            });
            (merge_group(records, &group), group)
        })
        .collect();
    merged.sort_by(|a, b| a.0.id.cmp(&b.0.id));

    let mut packages: HashMap<String, Vec<Entry>> = HashMap::new();
    let mut advisories = Vec::with_capacity(merged.len());
    for (index, (advisory, group)) in merged.into_iter().enumerate() {
        advisories.push(advisory);
        let mut per_package: BTreeMap<&str, Entry> = BTreeMap::new();
        for &member in &group {
            for affected in records[member]
                .affected
                .iter()
                .filter(|a| a.ecosystem == ecosystem)
            {
                let entry = per_package.entry(&affected.name).or_insert_with(|| Entry {
                    advisory: index as u32,
                    ranges: Vec::new(),
                    versions: Vec::new(),
                });
                for range in &affected.ranges {
                    if !entry.ranges.contains(range) {
                        entry.ranges.push(range.clone());
                    }
                }
                entry.versions.extend(affected.versions.iter().cloned());
            }
        }
        for (name, mut entry) in per_package {
            entry.versions.sort_unstable();
            entry.versions.dedup();
            packages.entry(name.to_owned()).or_default().push(entry);
        }
    }

    EcoData {
        records: records.len(),
        malicious: records.iter().filter(|r| r.malicious).count(),
        newest_modified: records.iter().filter_map(|r| r.modified).max(),
        advisories,
        packages,
        digest: String::new(),
    }
}

/// One advisory from a group of records sorted primary first.
fn merge_group(records: &[&Record], group: &[usize]) -> Advisory {
    let primary = records[group[0]];
    let mut aliases: Vec<String> = group
        .iter()
        .flat_map(|&member| {
            let record = records[member];
            std::iter::once(&record.id).chain(record.aliases.iter())
        })
        .filter(|id| **id != primary.id)
        .cloned()
        .collect();
    aliases.sort_unstable();
    aliases.dedup();
    let summary = if primary.summary.trim().is_empty() {
        group
            .iter()
            .map(|&member| &records[member].summary)
            .find(|summary| !summary.trim().is_empty())
            .cloned()
            .unwrap_or_default()
    } else {
        primary.summary.clone()
    };
    Advisory {
        id: primary.id.clone(),
        aliases,
        summary,
        severity: group.iter().filter_map(|&m| records[m].severity).max(),
        malicious: group.iter().any(|&m| records[m].malicious),
        modified: group.iter().filter_map(|&m| records[m].modified).max(),
    }
}
