//! MariaDB GTID positions, compared as failover needs: which transactions one server has that
//! another lacks.

use std::fmt;
use std::str::FromStr;

/// One MariaDB GTID, `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl FromStr for Gtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a GTID (domain-server-seq)");
        let mut it = s.trim().splitn(3, '-');
        let mut next = || it.next().ok_or_else(bad);
        let domain = next()?.parse().map_err(|_| bad())?;
        let server = next()?.parse().map_err(|_| bad())?;
        let seq = next()?.parse().map_err(|_| bad())?;
        Ok(Gtid {
            domain,
            server,
            seq,
        })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

fn gtid_list(s: &str) -> Result<Vec<Gtid>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::parse)
        .collect()
}

/// The transactions in `local` (a `@@gtid_binlog_state`: the last GTID per domain and server)
/// that `primary`'s binlog state does not cover: for each (domain, server) the local server
/// logged, a higher sequence number than the primary has, or one the primary lacks entirely.
pub fn errant_gtids(local: &str, primary: &str) -> Result<Vec<Gtid>, String> {
    let primary = gtid_list(primary)?;
    Ok(gtid_list(local)?
        .into_iter()
        .filter(|l| {
            !primary
                .iter()
                .any(|p| p.domain == l.domain && p.server == l.server && p.seq >= l.seq)
        })
        .collect())
}

/// What `peer` has that `local` lacks, domain by domain: for each replication domain, the
/// peer's latest GTID unless `local` holds one of the same domain and server at least as far.
/// A higher sequence number from another server is not enough: histories that diverged (an
/// old primary's unreplicated tail, the new primary's writes since) number on past each
/// other. Each side is any number of GTID lists (`@@gtid_binlog_state`, `Gtid_IO_Pos`, ...),
/// taken together; `local` needs its binlog state for the servers it applied events of
/// (`log_slave_updates`, as failover requires anyway).
pub fn newer_domains(peer: &[&str], local: &[&str]) -> Result<Vec<Gtid>, String> {
    let latest = |lists: &[&str]| -> Result<Vec<Gtid>, String> {
        let mut out: Vec<Gtid> = Vec::new();
        for g in lists
            .iter()
            .map(|l| gtid_list(l))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
        {
            match out.iter_mut().find(|o| o.domain == g.domain) {
                Some(o) if o.seq < g.seq => *o = g,
                Some(_) => {}
                None => out.push(g),
            }
        }
        Ok(out)
    };
    let local: Vec<Gtid> = local
        .iter()
        .map(|l| gtid_list(l))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(latest(peer)?
        .into_iter()
        .filter(|p| {
            !local
                .iter()
                .any(|l| l.domain == p.domain && l.server == p.server && l.seq >= p.seq)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtids_parse() {
        assert_eq!(
            "0-1-42".parse::<Gtid>().unwrap(),
            Gtid {
                domain: 0,
                server: 1,
                seq: 42
            }
        );
        assert!("0-1".parse::<Gtid>().is_err());
        assert!("a-1-2".parse::<Gtid>().is_err());
        assert_eq!(gtid_list(" 0-1-5, 1-2-3 ").unwrap().len(), 2);
        assert!(gtid_list("").unwrap().is_empty());
    }

    #[test]
    fn errant_detection() {
        // The old primary (server 1) is behind or equal: nothing errant.
        assert!(errant_gtids("0-1-10", "0-1-10,0-2-14").unwrap().is_empty());
        assert!(errant_gtids("0-1-9", "0-1-10,0-2-14").unwrap().is_empty());
        assert!(errant_gtids("", "0-2-1").unwrap().is_empty());
        // It logged a write the new primary never received.
        let e = errant_gtids("0-1-11", "0-1-10,0-2-14").unwrap();
        assert_eq!(e, vec!["0-1-11".parse().unwrap()]);
        // A server the primary never heard of, in another domain.
        let e = errant_gtids("0-1-10,7-3-2", "0-1-10").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].to_string(), "7-3-2");
        assert!(errant_gtids("junk", "").is_err());
    }

    #[test]
    fn newer_domains_compare_sequence_numbers_per_domain() {
        let n = |peer: &[&str], local: &[&str]| {
            newer_domains(peer, local)
                .unwrap()
                .iter()
                .map(Gtid::to_string)
                .collect::<Vec<_>>()
        };
        // The replica that received more is ahead, whichever server logged the events.
        assert_eq!(n(&["0-1-7836"], &["0-1-3198", "0-1-3198"]), ["0-1-7836"]);
        assert!(n(&["0-1-100"], &["0-1-100"]).is_empty());
        // A new primary's own writes carry on the domain's numbering.
        assert!(n(&["0-1-100"], &["0-1-100,0-2-140"]).is_empty());
        assert_eq!(n(&["0-1-100,0-2-140"], &["0-1-100"]), ["0-2-140"]);
        // Received but not applied counts: the relay log holds it.
        assert!(n(&["0-1-9"], &["0-1-5", "0-1-9"]).is_empty());
        // Diverged: an old primary's unreplicated tail (0-1-101..105) numbers past the new
        // primary's own writes (0-2-101..103), which it never had.
        assert_eq!(n(&["0-1-100,0-2-103"], &["0-1-105"]), ["0-2-103"]);
        // A domain the local server never saw.
        assert_eq!(n(&["0-1-9,1-3-2"], &["0-1-9"]), ["1-3-2"]);
        assert!(n(&[""], &[""]).is_empty());
        assert!(newer_domains(&["x"], &[]).is_err());
    }
}
