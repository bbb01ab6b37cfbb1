//! [`CrashPoint`]: the device as a crash left it, and the images a process
//! crash or a power cut may leave (with [`UnflushedSector`],
//! [`PowerCutImages`] and the choice of which unflushed sectors survive).
//! Re-exported from the [`fault`](super) module, so their paths do not
//! change.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

/// One sector of an unflushed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnflushedSector {
    /// Which write it came from: writes are numbered from 0 in the order
    /// the device received them.
    pub write: u64,
    /// The device sector.
    pub sector: u64,
    /// What the write put there.
    pub data: Vec<u8>,
}

/// The device as it was at a crash: what is on stable storage, and the
/// writes that were still in the volatile cache.
#[derive(Debug, Clone)]
pub struct CrashPoint {
    pub(super) sector_size: usize,
    /// Every completed write: the image a process crash leaves.
    pub(super) completed: Vec<u8>,
    /// For each sector written since the last flush, what stable storage
    /// holds.
    pub(super) durable: BTreeMap<u64, Vec<u8>>,
    /// Unflushed sector writes, oldest first.
    pub(super) unflushed: Vec<UnflushedSector>,
    /// The writes (by number) of a transfer in flight at the crash: in
    /// `unflushed`, and not in `completed`.
    pub(super) in_flight: Vec<u64>,
}

impl CrashPoint {
    /// The device's sector size.
    pub fn sector_size(&self) -> usize {
        self.sector_size
    }

    /// The image a process crash leaves: every completed write, flushed or
    /// not (the operating system or the device still holds them). When the
    /// crash came with a transfer's writes in flight, this is the image
    /// with none of them; [`process_crash_images`](Self::process_crash_images)
    /// gives every image.
    pub fn process_crash_image(&self) -> &[u8] {
        &self.completed
    }

    /// The writes (numbered as in [`UnflushedSector::write`]) of a
    /// transfer that were in flight at the crash: each may or may not have
    /// been done. Empty when the crash came between operations.
    pub fn in_flight(&self) -> &[u64] {
        &self.in_flight
    }

    /// Every image a process crash may leave, at most `limit` of them:
    /// the completed writes, and any subset of the writes in flight
    /// ([`in_flight`](Self::in_flight)), each done whole or not at all.
    /// One image (the [`process_crash_image`](Self::process_crash_image))
    /// when none was in flight. Byte-identical images are given once.
    pub fn process_crash_images(&self, limit: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
        let n = self.in_flight.len().min(63);
        let mut seen = HashSet::new();
        (0..1u64 << n)
            .map(move |mask| {
                let mut image = self.completed.clone();
                for u in &self.unflushed {
                    let k = self.in_flight.iter().position(|&w| w == u.write);
                    if k.is_some_and(|k| k < n && mask >> k & 1 == 1) {
                        self.put(&mut image, u.sector, &u.data);
                    }
                }
                image
            })
            .filter(move |image| {
                let mut h = DefaultHasher::new();
                image.hash(&mut h);
                seen.insert(h.finish())
            })
            .take(limit)
    }

    /// The image a power cut leaves when the cache loses everything: only
    /// flushed and durable writes.
    pub fn durable_image(&self) -> Vec<u8> {
        self.power_cut_image(|_| false)
    }

    /// The sector writes that were in the volatile cache, oldest first.
    pub fn unflushed(&self) -> &[UnflushedSector] {
        &self.unflushed
    }

    /// The image a power cut leaves when exactly the unflushed sector
    /// writes for which `keep` returns true reached stable storage (applied
    /// in order, so the latest kept version of a sector wins).
    pub fn power_cut_image(&self, mut keep: impl FnMut(&UnflushedSector) -> bool) -> Vec<u8> {
        let mut image = self.completed.clone();
        for (&sector, data) in &self.durable {
            self.put(&mut image, sector, data);
        }
        for u in &self.unflushed {
            if keep(u) {
                self.put(&mut image, u.sector, &u.data);
            }
        }
        image
    }

    fn put(&self, image: &mut [u8], sector: u64, data: &[u8]) {
        let start = sector as usize * self.sector_size;
        image[start..start + data.len()].copy_from_slice(data);
    }

    /// Distinct images a power cut may leave, at most `limit` of them.
    ///
    /// When the unflushed sector writes are few enough (`2^n <= limit`),
    /// this is every subset of them. Otherwise it is, in this order: the
    /// durable image; the process-crash image; for every unflushed write,
    /// the images of a cache that destaged in order up to that write and
    /// then tore it at each sector boundary (from the front, then from the
    /// back); every image missing exactly one sector write; every image
    /// with exactly one; then random subsets (from `seed`) until `limit`
    /// images or many fruitless tries. Images that come out byte-identical
    /// (a sector rewritten with the same bytes) are given once.
    pub fn power_cut_images(&self, limit: usize, seed: u64) -> PowerCutImages<'_> {
        PowerCutImages {
            point: self,
            limit,
            masks: MaskSource::new(self, limit, seed),
            seen: HashSet::new(),
            given: 0,
        }
    }

    /// Which version of each dirty sector a subset leaves, hashed: equal
    /// hashes mean (barring a 64-bit collision) equal images.
    fn subset_hash(&self, mask: &[bool]) -> u64 {
        let mut last: BTreeMap<u64, &[u8]> = BTreeMap::new();
        for (sector, data) in &self.durable {
            last.insert(*sector, data);
        }
        for (u, &kept) in self.unflushed.iter().zip(mask) {
            if kept {
                last.insert(u.sector, &u.data);
            }
        }
        let mut h = DefaultHasher::new();
        for (sector, data) in last {
            sector.hash(&mut h);
            data.hash(&mut h);
        }
        h.finish()
    }
}

/// The images of [`CrashPoint::power_cut_images`].
pub struct PowerCutImages<'a> {
    point: &'a CrashPoint,
    limit: usize,
    masks: MaskSource,
    seen: HashSet<u64>,
    given: usize,
}

impl Iterator for PowerCutImages<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        while self.given < self.limit {
            let mask = self.masks.next(self.point)?;
            if self.seen.insert(self.point.subset_hash(&mask)) {
                self.given += 1;
                let mut i = 0;
                return Some(self.point.power_cut_image(|_| {
                    i += 1;
                    mask[i - 1]
                }));
            }
        }
        None
    }
}

/// Generates subsets of the unflushed sector writes as boolean masks.
enum MaskSource {
    /// Every subset, counting up.
    All { n: usize, next: u64, end: u64 },
    /// Structured subsets first, then random ones.
    Sample {
        structured: std::vec::IntoIter<Vec<bool>>,
        rng: u64,
        tries_left: usize,
    },
}

impl MaskSource {
    fn new(point: &CrashPoint, limit: usize, seed: u64) -> MaskSource {
        let n = point.unflushed.len();
        if n < 63 && (1u64 << n) <= limit as u64 {
            return MaskSource::All {
                n,
                next: 0,
                end: 1 << n,
            };
        }
        let mut s: Vec<Vec<bool>> = vec![vec![false; n], vec![true; n]];
        // In-order destaging up to each write, torn at every boundary.
        let mut i = 0;
        while i < n {
            let w = point.unflushed[i].write;
            let mut j = i;
            while j < n && point.unflushed[j].write == w {
                j += 1;
            }
            for cut in 0..=(j - i) {
                let mut front = vec![false; n];
                front[..i + cut].fill(true);
                s.push(front);
                let mut back = vec![false; n];
                back[..i].fill(true);
                back[j - cut..j].fill(true);
                s.push(back);
            }
            i = j;
        }
        for k in 0..n {
            let mut all_but = vec![true; n];
            all_but[k] = false;
            s.push(all_but);
            let mut only = vec![false; n];
            only[k] = true;
            s.push(only);
        }
        MaskSource::Sample {
            structured: s.into_iter(),
            rng: seed ^ 0x5eed_0fc4_a5a5_u64,
            // Duplicates are skipped by the caller; stop eventually even
            // when few distinct images exist.
            tries_left: limit.saturating_mul(4).max(64),
        }
    }

    fn next(&mut self, point: &CrashPoint) -> Option<Vec<bool>> {
        match self {
            MaskSource::All { n, next, end } => {
                if *next == *end {
                    return None;
                }
                let m = *next;
                *next += 1;
                Some((0..*n).map(|i| m >> i & 1 == 1).collect())
            }
            MaskSource::Sample {
                structured,
                rng,
                tries_left,
            } => {
                if let Some(m) = structured.next() {
                    return Some(m);
                }
                if *tries_left == 0 {
                    return None;
                }
                *tries_left -= 1;
                // Vary the density too, so that nearly-all and nearly-none
                // subsets are drawn as well as half-and-half ones.
                let density = splitmix(rng) % 7 + 1;
                Some(
                    (0..point.unflushed.len())
                        .map(|_| splitmix(rng) % 8 < density)
                        .collect(),
                )
            }
        }
    }
}

/// splitmix64: a few lines of deterministic, seedable randomness, so the
/// library needs no random-number crate for this.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
