//! Small structures shared by every graph search: a bounded sorted
//! candidate list and a visited set with O(1) reset.

/// A node with its distance to the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Distance (smaller is closer).
    pub dist: f32,
    /// Internal id.
    pub id: u32,
    /// Whether it has been expanded (or its expansion is pending).
    pub expanded: bool,
}

/// Candidates sorted by (distance, id), at most `cap` long.
#[derive(Clone, Debug, Default)]
pub struct CandidateList {
    items: Vec<Candidate>,
    cap: usize,
}

impl CandidateList {
    /// Empty list with capacity `cap`.
    pub fn new(cap: usize) -> Self {
        CandidateList {
            items: Vec::with_capacity(cap + 1),
            cap,
        }
    }
    /// Clear and set a new capacity.
    pub fn reset(&mut self, cap: usize) {
        self.items.clear();
        self.cap = cap;
    }
    /// Insert unless the list is full and `dist` is no better than the
    /// worst; returns whether inserted. Duplicates must be filtered by the
    /// caller (visited set).
    #[inline]
    pub fn insert(&mut self, dist: f32, id: u32) -> bool {
        if self.items.len() == self.cap {
            let w = self.items[self.cap - 1];
            if (dist, id) >= (w.dist, w.id) {
                return false;
            }
        }
        let pos = self.items.partition_point(|c| (c.dist, c.id) < (dist, id));
        self.items.insert(
            pos,
            Candidate {
                dist,
                id,
                expanded: false,
            },
        );
        self.items.truncate(self.cap);
        true
    }
    /// Position of the closest unexpanded candidate.
    #[inline]
    pub fn first_unexpanded(&self) -> Option<usize> {
        self.items.iter().position(|c| !c.expanded)
    }
    /// Mark position `i` expanded and return it.
    #[inline]
    pub fn take(&mut self, i: usize) -> Candidate {
        self.items[i].expanded = true;
        self.items[i]
    }
    /// Give candidate `id` (already expanded or in flight) a better-known
    /// distance, moving it to its new rank; returns false if `id` is no
    /// longer in the list. Used to replace a PQ estimate with the exact
    /// distance once a node's record has been read.
    pub fn refine(&mut self, id: u32, dist: f32) -> bool {
        let Some(i) = self.items.iter().position(|c| c.id == id) else {
            return false;
        };
        let c = self.items.remove(i);
        let pos = self.items.partition_point(|x| (x.dist, x.id) < (dist, id));
        self.items.insert(pos, Candidate { dist, ..c });
        true
    }
    /// The candidates, closest first.
    pub fn as_slice(&self) -> &[Candidate] {
        &self.items
    }
    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A visited set over ids `0..n` using generation stamps (reset is O(1)).
#[derive(Clone, Debug)]
pub struct VisitedSet {
    stamp: Vec<u32>,
    gen: u32,
}

impl VisitedSet {
    /// For ids below `n`.
    pub fn new(n: usize) -> Self {
        VisitedSet {
            stamp: vec![0; n],
            gen: 1,
        }
    }
    /// Forget everything.
    pub fn clear(&mut self) {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.stamp.fill(0);
            self.gen = 1;
        }
    }
    /// Insert; returns true if it was not already present.
    #[inline]
    pub fn insert(&mut self, id: u32) -> bool {
        let s = &mut self.stamp[id as usize];
        if *s == self.gen {
            false
        } else {
            *s = self.gen;
            true
        }
    }
    /// Whether present.
    #[inline]
    pub fn contains(&self, id: u32) -> bool {
        self.stamp[id as usize] == self.gen
    }
}
